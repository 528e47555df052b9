"""The data side of the loop: the task's batches cut into TBPTT windows, from where a TrainState stands.

A TrainState counts ``position`` (batches drawn from the task's stream) and ``window`` (windows
of the current batch trained on). Both are saved with a checkpoint, so a resumed run draws the
batch it stopped in again, from ``global_batch(position - 1)``, and goes on at the next window.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from .state import TrainState
from .task import Task, to_device


def split_reset(batch: Any) -> tuple[Optional[torch.Tensor], Any]:
    """(the batch's "reset" mask or None, the batch without it)."""
    if isinstance(batch, dict) and "reset" in batch:
        return batch["reset"], {k: v for k, v in batch.items() if k != "reset"}
    return None, batch


class Windows:
    """``next(state)``: the window to train on next; draws a new batch when the current one is used up.

    A new batch starts the carried state afresh (None), or, when it holds a "reset" mask, keeps it
    and zeroes the rows where a new sequence starts (Task.reset_state).
    """

    def __init__(self, task: Task, tbptt: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 device: torch.device = torch.device("cpu")) -> None:
        self.task, self.tbptt, self.device = task, tbptt, device
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.stream: Optional[Iterator[Any]] = None
        self.windows: list[Any] = []

    def _stream_from(self, position: int) -> Iterator[Any]:
        return iter(self.task.train_batches(position, batch_size=self.batch_size, rank=self.rank,
                                            world_size=self.world_size))

    def _cut(self, batch: Any) -> list[Any]:
        return self.task.windows(batch, self.tbptt) if self.tbptt else [batch]

    def _start(self, state: TrainState) -> None:
        if state.window > 0:  # resumed inside a batch: draw it again; the carried state is restored
            self.stream = self._stream_from(state.position - 1)
            self.windows = self._cut(split_reset(to_device(next(self.stream), self.device))[1])
        else:
            self.stream = self._stream_from(state.position)

    def _draw(self, state: TrainState) -> Any:
        try:
            batch = next(self.stream)
        except StopIteration:  # a finite stream starts over
            self.stream = self._stream_from(state.position)
            batch = next(self.stream)
        state.position += 1
        return to_device(batch, self.device)

    def next(self, state: TrainState) -> Any:
        if self.stream is None:
            self._start(state)
        if state.window >= len(self.windows):
            reset, batch = split_reset(self._draw(state))
            if reset is None:
                state.carry = None  # a new sequence starts from a zero state
            elif state.carry is not None:
                state.carry = self.task.reset_state(state.carry, reset)
            self.windows, state.window = self._cut(batch), 0
        state.window += 1
        return self.windows[state.window - 1]
