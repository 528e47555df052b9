"""The steps of Trainer.fit that touch the model, each a function of what it reads and changes.

    train_step(model, state, task, window, clip_norm)   one optimizer step on one window
    evaluate(task, model, info)                         the task's metrics, shared with every rank
    due(step, every, last)                              whether a periodic action falls on this step
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from . import distributed as ddp
from .state import TrainState
from .task import Task, detach_state


@dataclass
class StepResult:
    loss: float  # this rank's loss on the window
    lr: float  # the learning rate the step used
    grad_norm: Optional[float]  # the gradient norm before clipping (None when clipping is off)
    items: int  # items in the window (Task.count), for the throughput figure


def due(step: int, every: int, last: int) -> bool:
    """Every ``every`` steps (0: never) and always at the last step."""
    return (every > 0 and step % every == 0) or step == last


def clip_gradients(task: Task, model: nn.Module, max_norm: float) -> Optional[float]:
    """Clip each of the task's clip groups to max_norm; the norm of all gradients before clipping."""
    if max_norm <= 0:
        return None
    norms = [float(torch.nn.utils.clip_grad_norm_(group, max_norm)) for group in task.clip_groups(model)]
    return norms[0] if len(norms) == 1 else math.sqrt(sum(n * n for n in norms))


def train_step(model: nn.Module, state: TrainState, task: Task, window: Any, clip_norm: float) -> StepResult:
    """One optimizer step on window; the carried state's graph is cut on the way in and out.

    model is what runs the forward (a DistributedDataParallel wrapper under DDP); state.model
    the module it wraps.
    """
    lr = state.schedule.lr(state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    loss, carry = task.loss(model, window, detach_state(state.carry))
    state.carry = detach_state(carry)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_gradients(task, state.model, clip_norm)
    state.optimizer.step()
    state.step += 1
    value = float(loss.detach())
    state.add_loss(value)
    return StepResult(value, lr, grad_norm, task.count(window))


def evaluate(task: Task, model: nn.Module, info: ddp.DistInfo = ddp.DistInfo()) -> dict[str, float]:
    """Rank 0 runs task.evaluate in eval mode without gradients; every rank gets its metrics."""
    metrics: Any = None
    if info.is_main:
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in (task.evaluate(model) or {}).items()}
        model.train()
    return ddp.broadcast(metrics, info)
