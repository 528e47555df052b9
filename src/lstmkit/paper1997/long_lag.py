"""Noise-free long time lag, task 2a (Hochreiter & Schmidhuber 1997, Section 5.2, Experiment 2).

p + 1 locally represented symbols a_1 … a_{p-1}, a_p = x, a_{p+1} = y. There are exactly two
sequences, each drawn with probability 0.5::

    (y, a_1, a_2, …, a_{p-1}, y)        (x, a_1, a_2, …, a_{p-1}, x)

The net sees one symbol per step and must predict the next, with an error signal at every step.
Every step but the last is predictable from the current symbol alone; the last one only by
remembering the first across p steps ("lag p"). The paper's success criterion: the maximal
absolute error of all output units stays below 0.25 at every step (our output units are the
softmax probabilities), tested on both sequences (they are the whole input space).
Table 2 (p = 100): LSTM 100 % of trials successful after 5,040 sequences on average; RTRL and
BPTT 0 %, the neural sequence chunker 33 %.

Two settings decide whether the LSTM learns the last step at all (measured at p = 100, 32
cells; the results file's notes give the numbers):

* The loss weighs the final step as much as all p - 1 deterministic steps together. Averaged
  over the p steps, the one informative step is 1 % of the loss; the deterministic steps are
  learned within ~100 updates in a way that wipes the first symbol out of the cells (the
  final step's loss gradient at the cell state after step 1 falls from 0.19 to 1e-5 and
  stays there), and the final step's small share never rebuilds that path. With the mean,
  even p = 20 stays at chance.
* The input gates start biased shut (σ(-2) ≈ 0.12), the paper's cure for state drift (Section
  5.4). At lk.LSTM's default (i ≈ 0.5) with the forget gate near 1, every cell integrates the
  gate's bias-driven input over the p steps and ends at |c| ≈ 7 (up to 25): tanh' ≈ 0.1 and
  the first symbol's trace is squashed away; even a loss on the final step alone then fails
  for some seeds. Shut this far, the gate still lets the first symbol in (its gradient opens
  it for x and y).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Batch, LagTask, PaperRow, TaskDefaults, one_hot

MAX_ERROR = 0.25  # "the maximal absolute error of all output units is always below 0.25"


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
                                     input_bias=-2.0, max_steps=20_000, eval_every=25)

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

    def step_losses(self, y: Tensor, batch: Batch) -> Tensor:
        """(B, p) cross-entropy of each step's prediction. y: (B, p, p + 1) logits."""
        return F.cross_entropy(y.transpose(1, 2), batch.target, reduction="none")

    def loss(self, y: Tensor, batch: Batch) -> Tensor:
        """The deterministic steps' mean plus the final step's: the one step that needs the
        lag weighs as much as the other p - 1 together (see the module docstring)."""
        ce = self.step_losses(y, batch)
        return ce[:, :-1].mean() + ce[:, -1].mean()

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        target = F.one_hot(batch.target, self.output_size).to(y.dtype)
        error = (y.softmax(-1) - target).abs().amax(-1)  # (B, p): worst output unit per step
        return (error >= MAX_ERROR).any(-1)

    def evaluate(self, y: Tensor, batch: Batch) -> dict:
        """As LagTask's, plus final_loss: the last step's cross-entropy (chance: ln 2 ≈ 0.693)."""
        metrics = super().evaluate(y, batch)
        metrics["final_loss"] = float(self.step_losses(y, batch)[:, -1].mean())
        return metrics

    def solved(self, metrics) -> bool:
        return metrics["wrong"] == 0

    def describe(self) -> str:
        return f"long lag 2a p={self.p}"
