"""Noise-free long time lag, task 2a (Hochreiter & Schmidhuber 1997, Section 5.2, Experiment 2).

p + 1 locally represented symbols a_1 … a_{p-1}, a_p = x, a_{p+1} = y. There are exactly two
sequences, each drawn with probability 0.5::

    (y, a_1, a_2, …, a_{p-1}, y)        (x, a_1, a_2, …, a_{p-1}, x)

The net sees one symbol per step and must predict the next. Every step is predictable once the
first symbol is known; the last one only by remembering the first across p steps ("lag p").
We count a sequence wrong if the arg-max output misses its successor at any step, and test on
both sequences (they are the whole input space).
Table 2 (p = 100): LSTM 100 % of trials successful after 5,040 sequences on average; RTRL and
BPTT 0 %, the neural sequence chunker 33 %.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Batch, LagTask, PaperRow, TaskDefaults, one_hot


class NoiseFreeLongLag(LagTask):
    """Task 2a with lag p (default 100, the paper's Table 2 row)."""

    readout, kind = "every", "classification"
    n_test = 2

    def __init__(self, length: int = 100) -> None:
        self.p = int(length)
        if self.p < 2:
            raise ValueError(f"the lag p must be at least 2, got {length}")
        self.name = "long_lag"
        self.input_size = self.output_size = self.p + 1
        self.reference = PaperRow(
            "Hochreiter & Schmidhuber 1997, Table 2",
            "100 % of trials after 5,040 sequences" if self.p == 100 else f"no row for p={self.p}",
            train_sequences=5_040 if self.p == 100 else None, success_rate=1.0 if self.p == 100 else None,
            rnn="BPTT 0 %, RTRL 0 % (p = 100)",
        )
        # The first symbol must survive p - 1 steps in the cell before any error reaches it:
        # σ(3)^99 ≈ 0.006 but σ(5)^99 ≈ 0.5, so long lags start with a larger forget bias.
        self.defaults = TaskDefaults(hidden_size=32, lr=1e-2, batch_size=32, forget_bias=5.0 if self.p >= 50 else 3.0,
                                     max_steps=20_000, eval_every=25)

    def sequences(self, first: Tensor) -> Tensor:
        """(n,) bools (True → y) → (n, p + 1) symbol indices."""
        n = first.shape[0]
        head = torch.where(first, self.p, self.p - 1)  # y is index p, x is index p - 1
        middle = torch.arange(self.p - 1).expand(n, -1)  # a_1 … a_{p-1}
        return torch.cat([head[:, None], middle, head[:, None]], dim=1)

    def _batch(self, first: Tensor) -> Batch:
        seq = self.sequences(first)
        lengths = torch.full((first.shape[0],), self.p)
        return Batch(one_hot(seq[:, :-1], self.p + 1), lengths, seq[:, 1:].clone())

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        return self._batch(torch.rand(n, generator=generator) < 0.5)

    def test_set(self, seed: int) -> Batch:
        return self._batch(torch.tensor([False, True]))

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        return (y.argmax(-1) != batch.target).any(-1)

    def solved(self, metrics) -> bool:
        return metrics["wrong"] == 0

    def describe(self) -> str:
        return f"long lag 2a p={self.p}"
