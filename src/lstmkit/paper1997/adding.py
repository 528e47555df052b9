"""The adding and multiplication problems (Hochreiter & Schmidhuber 1997, Sections 5.4 and 5.5).

Adding problem (Experiment 4, Section 5.4), as the paper defines it:

* Each step is a pair (value, marker). Values are uniform in [-1, 1]; markers are 1.0, 0.0 or -1.0.
* Length is an integer uniform in [T, T + T/10].
* Exactly two pairs are marked with 1.0: one of the first ten pairs (its value is X1), then one
  of the first T/2 − 1 *still unmarked* pairs (X2) — i.e. a position in [0, T/2) other than X1's.
* All other markers are 0, except the first and the final pair, whose markers are -1 (unless
  marked). "X1 is set to zero in the rare case where the first pair of the sequence got
  marked"; the second mark can also land on the first pair, and we zero it the same way (the
  first pair's value is the one the paper removes).
* Target at the sequence end only: 0.5 + (X1 + X2) / 4.0, the sum scaled into [0, 1].
* A sequence is processed correctly if the absolute error at its end is below 0.04; the paper
  counts wrong ones among 2,560 test sequences (Table 7: T = 100 / 500 / 1000 → 1 / 0 / 1 wrong
  after 74,000 / 209,000 / 853,000 training sequences; minimal lags 50 / 250 / 500).

Multiplication problem (Experiment 5, Section 5.5): the same sequences except that values are
uniform in [0, 1], the target is X1 · X2, and a marked first pair gets value 1.0 (so the
product is X2). Table 8 (T = 100): 139 of 2,560 wrong (> 0.04) after 482,000 sequences
(stopping at n_seq = 140), 14 of 2,560 after 1,273,000 (n_seq = 13).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import Batch, LagTask, PaperRow, TaskDefaults, randint

ADDING_REFERENCE = {
    100: PaperRow("Hochreiter & Schmidhuber 1997, Table 7", "1 of 2,560 wrong after 74,000 sequences",
                  wrong=1, n_test=2560, train_sequences=74_000),
    500: PaperRow("Hochreiter & Schmidhuber 1997, Table 7", "0 of 2,560 wrong after 209,000 sequences",
                  wrong=0, n_test=2560, train_sequences=209_000),
    1000: PaperRow("Hochreiter & Schmidhuber 1997, Table 7", "1 of 2,560 wrong after 853,000 sequences",
                   wrong=1, n_test=2560, train_sequences=853_000),
}
MULTIPLICATION_REFERENCE = PaperRow(
    "Hochreiter & Schmidhuber 1997, Table 8", "139 of 2,560 wrong after 482,000 sequences (14 after 1,273,000)",
    wrong=139, n_test=2560, train_sequences=482_000,
)
TOLERANCE = 0.04  # "processed correctly if the absolute error at the sequence end is below 0.04"


def marked_pairs(n: int, T: int, low: float, generator: torch.Generator, first_value: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs of n adding/multiplication sequences of minimal length T.

    Returns x (n, Tmax, 2) right-padded, lengths (n,), X1 (n,), X2 (n,) — the marked values
    actually stored in the sequence (after the first-pair rule).
    """
    if T < 10 or T % 2:  # the first mark is drawn from the first 10 steps, which must exist
        raise ValueError(f"T must be an even integer >= 10 (the first mark lies among the first 10 steps, "
                         f"the second among the first T/2), got {T}")
    lengths = randint(T, T + T // 10, (n,), generator)
    Tmax = int(lengths.max())
    values = torch.rand(n, Tmax, generator=generator) * (1.0 - low) + low  # uniform in [low, 1]
    first = randint(0, 9, (n,), generator)
    # the second mark: uniform over the T/2 - 1 positions in [0, T/2) other than `first`
    second = randint(0, T // 2 - 2, (n,), generator)
    second = second + (second >= first).long()
    rows = torch.arange(n)
    markers = torch.zeros(n, Tmax)
    markers[:, 0] = -1.0
    markers[rows, lengths - 1] = -1.0
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    values[:, 0] = torch.where(markers[:, 0] == 1.0, torch.full((n,), first_value), values[:, 0])
    steps = torch.arange(Tmax).unsqueeze(0)  # (1, Tmax)
    pad = steps >= lengths.unsqueeze(1)
    values, markers = values.masked_fill(pad, 0.0), markers.masked_fill(pad, 0.0)
    x = torch.stack([values, markers], dim=-1)  # (n, Tmax, 2)
    return x, lengths, values[rows, first], values[rows, second]


class AddingProblem(LagTask):
    """Experiment 4: output 0.5 + (X1 + X2)/4 at the end of a sequence of minimal length T."""

    input_size, output_size, readout, kind = 2, 1, "last", "regression"

    def __init__(self, length: int = 100, curriculum: Optional[tuple[int, ...]] = None) -> None:
        self.T = int(length)
        self.name = "adding"
        self.reference = ADDING_REFERENCE.get(self.T, PaperRow("Hochreiter & Schmidhuber 1997, Table 7", f"no row for T={self.T}"))
        # Input gates start nearly shut (σ(-3) ≈ 0.05): the paper's cure for state drift
        # (Section 5.4). Without it our LSTM sat on the mean-prediction plateau for 2,000+ steps
        # at T = 100; with it, it left the plateau within 600. Longer lags get a larger forget
        # bias: the error from the end reaches a mark ~T steps back scaled by σ(b)^T, which for
        # T = 525 is 0.03 at b = 5 and 0.6 at b = 7; with b = 7 (lr 3e-3) T = 500 left the
        # plateau after ~750 steps (one seed); b = 5 (lr 2e-3) was still on it at step 400,
        # where that run was stopped.
        # The paper has 0 wrong of 2,560 at T = 500 (1 at T = 1000): at a constant rate our runs
        # stopped with 12 wrong, so long lags decay the rate (cosine over max_steps) and stop only
        # at a check of 2,560 validation sequences all within 0.03 (stopping at the first check
        # with none at 0.04 or more left 1 of the 2,560 test sequences wrong).
        long = self.T > 200
        self.defaults = TaskDefaults(hidden_size=64, lr=3e-3, batch_size=64,
                                     forget_bias=7.0 if long else 3.0, input_bias=-3.0,
                                     max_steps=self.T * 12 if long else 50_000, eval_every=200 if long else 100,
                                     schedule="cosine" if long else "constant",
                                     eval_size=2560 if long else 512, stop_wrong=0.0 if long else 0.002,
                                     stop_max_error=0.03 if long else None)
        # T = 1000 trains first at T = 100, 200, 400 (a departure from the paper, which trained
        # at T = 1000 throughout): straight at T = 1000 our LSTM was still at the mean after
        # 8,800 steps (563,200 sequences); trained at T = 100 alone it failed at T = 1000 (error
        # up to 1.7: the cells drift over the extra steps) and, moved straight to T = 1000, took
        # 300+ steps there to fall even to half the mean's loss; through 200 and 400 the step to
        # 1000 is small (the error at T = 1000 after T = 200 was already down to 0.53).
        self.curriculum = tuple(int(n) for n in curriculum) if curriculum is not None else (
            (100, 200, 400) if self.T >= 1000 else ())
        if any(not 10 <= n < self.T for n in self.curriculum) or list(self.curriculum) != sorted(self.curriculum):
            raise ValueError(f"curriculum lengths must rise and lie in [10, T = {self.T}), got {self.curriculum}")

    def at_length(self, length: int) -> "AddingProblem":
        return type(self)(length, curriculum=())

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        x, lengths, x1, x2 = marked_pairs(n, self.T, -1.0, generator, first_value=0.0)
        return Batch(x, lengths, 0.5 + (x1 + x2) / 4.0)

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        return ~((y.squeeze(-1) - batch.target).abs() < TOLERANCE)

    def evaluate(self, y: Tensor, batch: Batch) -> dict:
        """As LagTask's, plus max_error: the largest absolute error on the set (tolerance 0.04)."""
        metrics = super().evaluate(y, batch)
        metrics["max_error"] = float((y.squeeze(-1) - batch.target).abs().max())
        return metrics

    def describe(self) -> str:
        return f"adding T={self.T}"


class MultiplicationProblem(AddingProblem):
    """Experiment 5: values in [0, 1], output X1 · X2 at the sequence end."""

    def __init__(self, length: int = 100) -> None:
        super().__init__(length)
        self.name = "multiplication"
        self.reference = MULTIPLICATION_REFERENCE if self.T == 100 else PaperRow(
            "Hochreiter & Schmidhuber 1997, Table 8", f"no row for T={self.T}")

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        x, lengths, x1, x2 = marked_pairs(n, self.T, 0.0, generator, first_value=1.0)
        return Batch(x, lengths, x1 * x2)

    def solved(self, metrics) -> bool:
        # the paper itself stops with 139 / 2,560 wrong; we ask for no more than that
        return metrics["wrong"] <= MULTIPLICATION_REFERENCE.wrong * metrics["n"] / 2560

    def describe(self) -> str:
        return f"multiplication T={self.T}"
