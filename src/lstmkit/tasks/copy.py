"""The copy task of Arjovsky, Shah & Bengio (2016), "Unitary Evolution Recurrent Neural
Networks", Section 4.1.

Ten categories a_0 … a_9, one-hot. An input has T + 20 steps: 10 symbols drawn uniformly, with
replacement, from a_1 … a_8 (the sequence to remember); T − 1 blanks a_0; the delimiter a_9;
10 more blanks. The target is T + 10 blanks followed by the 10 remembered symbols in order.
Loss: cross-entropy averaged over all T + 20 steps. A memoryless strategy (blanks, then a
uniform guess over 8 symbols) scores 10·ln 8 / (T + 20) nats — 0.173 at T = 100 — the
baseline the paper plots.
We also count a sequence wrong if any of its 10 recalled symbols is wrong (arg-max).
"""
from __future__ import annotations


import torch
from torch import Tensor

from .base import LN8, Batch, LagTask, PaperRow, TaskDefaults, one_hot

N_SYMBOLS, RECALL = 10, 10
BLANK, DELIMITER = 0, 9


def baseline(T: int) -> float:
    """Cross-entropy (nats per step) of the memoryless strategy: 10·ln 8 / (T + 20)."""
    return RECALL * LN8 / (T + 2 * RECALL)


class CopyTask(LagTask):
    """Recall 10 symbols after a delay of T steps."""

    name = "copy"
    input_size = output_size = N_SYMBOLS
    readout, kind = "every", "classification"
    n_test = 2560

    def __init__(self, length: int = 100, solved_fraction: float = 0.1) -> None:
        self.T = int(length)
        if self.T < 1:
            raise ValueError(f"the delay T must be positive, got {length}")
        self.solved_fraction = solved_fraction
        self.reference = PaperRow(
            "Arjovsky et al. 2016, Section 4.1", f"memoryless baseline {baseline(self.T):.3f} nats",
            rnn="plain RNN stays at the baseline",
        )
        self.defaults = TaskDefaults(hidden_size=128, lr=2e-3, batch_size=64, max_steps=50_000, eval_every=200)

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        T = self.T
        memory = torch.randint(1, 9, (n, RECALL), generator=generator)  # a_1 … a_8
        blanks = torch.full((n, T - 1), BLANK)
        inputs = torch.cat([memory, blanks, torch.full((n, 1), DELIMITER), torch.full((n, RECALL), BLANK)], 1)
        target = torch.cat([torch.full((n, T + RECALL), BLANK), memory], 1)  # (n, T + 20)
        lengths = torch.full((n,), T + 2 * RECALL)
        return Batch(one_hot(inputs, N_SYMBOLS), lengths, target)

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        return (y[:, -RECALL:].argmax(-1) != batch.target[:, -RECALL:]).any(-1)

    def evaluate(self, y: Tensor, batch: Batch) -> dict:
        metrics = super().evaluate(y, batch)
        metrics["baseline"] = baseline(self.T)
        metrics["loss_vs_baseline"] = metrics["loss"] / baseline(self.T)
        return metrics

    def solved(self, metrics) -> bool:
        """Cross-entropy below solved_fraction (default a tenth) of the memoryless baseline."""
        return metrics["loss"] < self.solved_fraction * baseline(self.T)

    def describe(self) -> str:
        return f"copy T={self.T}"
