"""Temporal order, tasks 6a and 6b (Hochreiter & Schmidhuber 1997, Section 5.6, Experiment 6).

Symbols are locally represented (one-hot) over the 8-symbol alphabet {E, B, a, b, c, d, X, Y}.
A sequence starts with E, ends with the trigger symbol B, and is otherwise random symbols from
{a, b, c, d}, except for the relevant positions, which hold X or Y. Length is uniform in
[100, 110]. Positions below are the paper's 1-based ones (E is at position 1).

* 6a: two relevant symbols at t1 ∈ [10, 20] and t2 ∈ [50, 60]; four classes by temporal order:
  X,X → Q; X,Y → R; Y,X → S; Y,Y → U.
* 6b: three relevant symbols at t1 ∈ [10, 20], t2 ∈ [33, 43], t3 ∈ [66, 76]; eight classes:
  XXX → Q, XXY → R, XYX → S, XYY → U, YXX → V, YXY → A, YYX → B, YYY → C.

Error signals only at the sequence end. "The sequence is classified correctly if the final
absolute error of all output units is below 0.3." Our outputs are softmax probabilities, and
the criterion is applied to them literally: max_k |p_k − onehot_k| < 0.3.
Table 9: 6a 1 of 2,560 wrong after 31,390 training sequences; 6b 2 of 2,560 after 571,100.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Batch, LagTask, PaperRow, TaskDefaults, one_hot, randint

SYMBOLS = ("E", "B", "a", "b", "c", "d", "X", "Y")
E, B_, X, Y = 0, 1, 6, 7
DISTRACTORS = (2, 3, 4, 5)
THRESHOLD = 0.3
# 1-based position ranges of the relevant symbols, per variant
POSITIONS = {"6a": ((10, 20), (50, 60)), "6b": ((10, 20), (33, 43), (66, 76))}
REFERENCE = {
    "6a": PaperRow("Hochreiter & Schmidhuber 1997, Table 9", "1 of 2,560 wrong after 31,390 sequences",
                   wrong=1, n_test=2560, train_sequences=31_390),
    "6b": PaperRow("Hochreiter & Schmidhuber 1997, Table 9", "2 of 2,560 wrong after 571,100 sequences",
                   wrong=2, n_test=2560, train_sequences=571_100),
}


class TemporalOrder(LagTask):
    """Classify a sequence by the order of its X / Y symbols (2 → 4 classes, 3 → 8 classes)."""

    input_size, readout, kind = len(SYMBOLS), "last", "classification"

    def __init__(self, variant: str = "6a", min_length: int = 100, max_length: int = 110) -> None:
        if variant not in POSITIONS:
            raise ValueError(f"variant must be '6a' or '6b', got {variant!r}")
        self.variant = variant
        self.name = f"temporal_order_{variant}"
        self.positions = POSITIONS[variant]
        self.min_length, self.max_length = min_length, max_length
        self.output_size = 2 ** len(self.positions)
        self.reference = REFERENCE[variant]
        self.defaults = TaskDefaults(hidden_size=64, lr=3e-3, batch_size=64, forget_bias=3.0, input_bias=-3.0,
                                     max_steps=50_000, eval_every=100)

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        lengths = randint(self.min_length, self.max_length, (n,), generator)
        Tmax = int(lengths.max())
        symbols = torch.tensor(DISTRACTORS)[torch.randint(0, 4, (n, Tmax), generator=generator)]
        rows = torch.arange(n)
        symbols[:, 0] = E
        symbols[rows, lengths - 1] = B_
        label = torch.zeros(n, dtype=torch.long)
        for lo, hi in self.positions:
            pos = randint(lo, hi, (n,), generator) - 1  # 1-based → index
            is_y = torch.randint(0, 2, (n,), generator=generator)
            symbols[rows, pos] = X + is_y
            label = label * 2 + is_y  # first relevant symbol is the most significant bit: XX→0 (Q) … YY→3 (U)
        return Batch(one_hot(symbols, len(SYMBOLS), lengths), lengths, label)

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        p = y.softmax(-1)
        target = torch.nn.functional.one_hot(batch.target, self.output_size).to(p.dtype)
        return ~((p - target).abs().amax(-1) < THRESHOLD)

    def describe(self) -> str:
        return f"temporal order {self.variant}"
