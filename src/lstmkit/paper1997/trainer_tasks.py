"""The long-lag tasks as named tasks of ``lstmkit train`` (registered on import).

    task = "adding"        # or multiplication, temporal_order_6a, temporal_order_6b, reber, long_lag, copy
    model = "rnn"          # the plain RNN beside the LSTM
    length = 500           # T (or the lag p); 0 keeps the paper's default
    [train]
    steps = 5000

``lstmkit tasks`` is the quicker road (it also scores the test set and prints the paper's row);
this one gives the Trainer's run folders, resume and schedules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..train.registry import register_task
from . import TASKS, make_task
from .runner import PaperTask


@dataclass
class PaperTaskConfig:
    """Options of a long-lag task under ``lstmkit train``."""

    model: str = "lstm"  # "lstm" | "rnn"
    length: int = 0  # T or the lag p; 0 → the paper's default (ignored by tasks of fixed length)
    hidden_size: int = 0  # 0 → the task's default
    data_seed: int = 0
    eval_size: int = 0  # sequences per check; 0 → the task's default (with its stop rule)
    backend: str = "auto"
    forget_bias: Optional[float] = None  # None → the task's default
    input_bias: Optional[float] = None
    chrono: Optional[int] = None  # T_max of the chrono initialization; 0 turns it off


def _factory(name: str):
    def make(cfg: PaperTaskConfig) -> PaperTask:
        fixed = TASKS[name][1] is None
        task = make_task(name, None if (fixed or not cfg.length) else cfg.length)
        return PaperTask(task, cfg.model, cfg.hidden_size or task.defaults.hidden_size, cfg.data_seed,
                         eval_size=cfg.eval_size or task.defaults.eval_size, backend=cfg.backend,
                         forget_bias=cfg.forget_bias, input_bias=cfg.input_bias, chrono=cfg.chrono)
    return make


for _name in TASKS:
    register_task(_name, PaperTaskConfig, help=f"Hochreiter & Schmidhuber (1997) long-lag task {_name!r}")(_factory(_name))
