"""The contract between the Trainer and an application, plus helpers for batches and carried state.

A Task supplies four things (see Trainer's docstring for an example):

- ``build_model() -> nn.Module``
- ``global_batch(k, batch_size) -> batch``: batch k of the whole job, a function of k and the
  task's own settings only, so that a resumed run sees the same data. The default
  ``train_batches(start, *, batch_size, rank, world_size)`` streams batches from position
  ``start`` (batches already consumed), each rank taking its 1/world_size share (``shard``);
  a task may override train_batches instead.
- ``loss(model, batch, state) -> (loss, state)``: mean loss over the batch, and the recurrent
  state to carry into the next TBPTT window (or None if nothing is carried).
- ``evaluate(model) -> dict[str, float]``: validation metrics (called in eval mode, no grad).

Optional hooks, with defaults here: ``should_stop(metrics)`` (end training after an
evaluation: True or a reason string), ``windows(batch, k)`` (split into TBPTT windows),
``reset_state(state, mask)`` (zero carried rows that start a new sequence), ``count(batch)``
(items for the throughput figure), ``clip_groups(model)`` (parameter groups whose gradient
norms are clipped separately).

Batches are any nesting of dicts / lists / tuples of tensors. A batch that is a dict with a
``"reset"`` entry, a (B,) bool tensor, *continues* the previous batch's sequences: the carried
state is kept for rows where reset is False and zeroed where it is True (a new document starts).
Without it, each new batch starts from a zero state.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn


class Task:
    """Base class with the optional hooks' defaults; subclasses implement the four methods."""

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def global_batch(self, k: int, batch_size: int) -> Any:
        """Batch k of the whole job (all ranks together), a function of k alone so resume finds it."""
        raise NotImplementedError

    def train_batches(self, start: int, *, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterable[Any]:
        """Batches start, start + 1, … of global_batch, each cut to this rank's share.

        Override global_batch (the usual case) or this method (a stream that is not indexable).
        """
        k = start
        while True:
            yield shard(self.global_batch(k, batch_size * world_size), rank, world_size)
            k += 1

    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {}

    def should_stop(self, metrics: dict[str, float]) -> Any:
        """After an evaluation: False to go on, True or a reason string to end training."""
        return False

    def seconds_left(self) -> float:
        """Wall seconds until should_stop ends training on its own (a time budget), or inf.

        The progress display's ETA is the smaller of this and the step-count estimate.
        """
        return math.inf

    def windows(self, batch: Any, k: int) -> list[Any]:
        return split_time(batch, k)

    def reset_state(self, state: Any, mask: Tensor) -> Any:
        return reset_rows(state, mask)

    def count(self, batch: Any) -> int:
        return batch_size_of(batch)

    def clip_groups(self, model: nn.Module) -> list[list[nn.Parameter]]:
        """Parameter groups clipped to train.clip_norm each; one group, the whole model, by default.

        An ensemble trained in one model returns one group per member, so that each member
        trains exactly as it would alone.
        """
        return [list(model.parameters())]


# --------------------------------------------------------------------------- helpers


def tree_map(fn: Callable[[Tensor], Any], obj: Any) -> Any:
    """Apply fn to every tensor in a nest of dicts / lists / tuples (NamedTuples kept)."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(tree_map(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(tree_map(fn, v) for v in obj)
    return obj


def detach_state(state: Any) -> Any:
    """Cut the graph at a TBPTT window boundary: values cross, gradients do not."""
    return tree_map(lambda t: t.detach(), state)


def reset_rows(state: Any, mask: Tensor) -> Any:
    """Zero the carried state of batch rows where mask (B,) is True.

    Batch dimension follows torch's recurrent modules: dim 1 of (L·D, B, H) states, dim 0 of
    (B, H) cell states.
    """
    keep = (~mask.bool()).to

    def zero(t: Tensor) -> Tensor:
        if t.dim() == 3:
            return t * keep(t.dtype).view(1, -1, 1)
        if t.dim() == 2:
            return t * keep(t.dtype).view(-1, 1)
        raise ValueError(f"reset_rows: expected state tensors of 2 or 3 dims, got shape {tuple(t.shape)}; "
                         "override Task.reset_state for this model")

    return tree_map(zero, state)


def split_time(batch: Any, k: int) -> list[Any]:
    """Split a batch_first batch into TBPTT windows of k steps along dim 1.

    Tensors with at least 2 dims are split; others (labels, the "reset" mask) go with the first
    window only if they are a "reset" mask, and with every window otherwise.
    """
    lengths = set()
    tree_map(lambda t: lengths.add(t.shape[1]) if t.dim() >= 2 else None, batch)
    if len(lengths) != 1:
        raise ValueError(f"split_time: tensors of 2+ dims must share dim 1 (time), got sizes {sorted(lengths)}; "
                         "override Task.windows for this batch layout")
    T = lengths.pop()
    out = []
    for w, s in enumerate(range(0, T, k)):
        window = tree_map(lambda t: t[:, s : s + k] if t.dim() >= 2 else t, batch)
        if w > 0 and isinstance(window, dict) and "reset" in window:
            window = {kk: v for kk, v in window.items() if kk != "reset"}
        out.append(window)
    return out


def shard(batch: Any, rank: int, world_size: int) -> Any:
    """Rank's contiguous 1/world_size of every tensor's dim 0 (the DistributedSampler share)."""
    if world_size == 1:
        return batch

    def part(t: Tensor) -> Tensor:
        if t.dim() == 0:
            return t
        if t.shape[0] % world_size:
            raise ValueError(f"shard: batch of {t.shape[0]} rows does not split into {world_size} ranks")
        n = t.shape[0] // world_size
        return t[rank * n : (rank + 1) * n]

    return tree_map(part, batch)


def batch_size_of(batch: Any) -> int:
    sizes: list[int] = []
    tree_map(lambda t: sizes.append(t.shape[0]) if t.dim() else None, batch)
    return sizes[0] if sizes else 1


def to_device(batch: Any, device: torch.device) -> Any:
    return tree_map(lambda t: t.to(device, non_blocking=True), batch)
