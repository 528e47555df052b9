"""What a long-time-lag task is: a seeded generator, a loss, the paper's own success criterion.

Shape legend: B = batch (sequences), T = steps of the longest sequence in the batch,
I = input features (task.input_size), O = model outputs (task.output_size).

Every batch is right-padded: ``x`` (B, T, I) with zeros past each sequence's ``lengths``.
Two readouts exist:

* ``"last"``: one prediction per sequence, read at its own last step (adding, multiplication,
  temporal order). The model is causal and unidirectional, so the output at step
  ``lengths - 1`` does not depend on the padding after it.
* ``"every"``: a prediction at every step (next-symbol prediction for Reber and 2a, the
  output stream of the copy task); steps past a sequence's length carry target ``IGNORE``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100  # target of padded steps; torch's cross_entropy ignore_index


class Batch(NamedTuple):
    """A right-padded batch of sequences and its targets (a NamedTuple, so the Trainer's
    tree_map moves and splits it like any nest of tensors).

    x: (B, T, I) float inputs.  lengths: (B,) int64, each in [1, T].
    target: (B,) float for regression, (B,) int64 class for "last" classification,
        (B, T) int64 per-step class (IGNORE on padding) for "every".
    legal: optional (B, T, O) bool, the set of correct answers per step where more than one
        symbol may come next (embedded Reber); None when target alone decides.
    """

    x: Tensor
    lengths: Tensor
    target: Tensor
    legal: Optional[Tensor] = None

    @property
    def size(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class PaperRow:
    """A published figure to put our row beside."""

    source: str  # "Hochreiter & Schmidhuber 1997, Table 7"
    result: str  # human-readable, e.g. "1 of 2,560 wrong"
    wrong: Optional[int] = None  # wrong test sequences, when the paper counts them
    n_test: Optional[int] = None
    train_sequences: Optional[int] = None  # training sequences until the stopping criterion
    success_rate: Optional[float] = None  # fraction of successful trials, when reported
    rnn: Optional[str] = None  # what the paper reports for plain recurrent nets


@dataclass(frozen=True)
class TaskDefaults:
    """Default model and optimisation settings for a task (our choices, not the paper's).

    The paper trained tiny nets (a few memory-cell blocks) with online SGD for 10^4-10^6
    sequences; we use mini-batches and Adam with global-norm clipping.
    """

    hidden_size: int = 64
    # Initial forget-gate bias of the LSTM. The 1997 cell had no forget gate (its memory was
    # the constant error carousel, f ≡ 1); a bias of b starts f at σ(b), so the error carried
    # back over a lag of n steps starts scaled by σ(b)^n: 0.73^50 ≈ 1e-7 for lk.LSTM's default
    # b = 1, 0.95^50 ≈ 0.08 for b = 3. Long lags get a larger b.
    forget_bias: float = 3.0
    # Initial input-gate bias of the LSTM, or None for lk.LSTM's own initialization. Section
    # 5.4 ("State drift versus initial bias"): biasing the input gates towards zero at the
    # start keeps the cells from integrating every input and drifting before anything is
    # learned; the paper uses negative input-gate biases for exactly this.
    input_bias: Optional[float] = None
    # None, or T_max for the chrono initialization of Tallec & Ollivier (2018): per-unit forget
    # biases ln U[1, T_max - 1] and input biases their negatives (replaces the two above).
    chrono: Optional[int] = None
    lr: float = 3e-3
    # "constant", or "cosine": the rate falls to 0 over max_steps (the Trainer's schedule); the
    # decay buys the precision that 0 wrong of 2,560 asks for at long lags
    schedule: str = "constant"
    # linear warm-up of the learning rate over this many steps (a high lr from step 0 can
    # throw a long-lag net off its plateau in the wrong direction)
    warmup_steps: int = 0
    batch_size: int = 64
    clip: float = 1.0
    weight_decay: float = 0.0  # decoupled (AdamW); 0 means plain Adam
    max_steps: int = 20_000
    time_budget: float = 600.0  # seconds, wall clock; training stops at whichever comes first
    eval_every: int = 200  # optimizer steps between checks of the stopping criterion
    eval_size: int = 512  # sequences in each intermediate check (the final test uses n_test)
    # stop at the first check with at most this fraction of the check's sequences wrong (tasks
    # that count wrong sequences); 0 with eval_size 2,560 asks the test's own standard
    stop_wrong: float = 0.002
    # regression tasks: also ask every check sequence's absolute error to stay below this (a margin
    # under the paper's tolerance, so that unseen test sequences pass too); None: no margin
    stop_max_error: Optional[float] = None


class LagTask:
    """A long-time-lag problem. Subclasses set the attributes below and implement sample()."""

    name: str = ""
    input_size: int = 0
    output_size: int = 0
    readout: str = "last"  # "last" | "every"
    kind: str = "classification"  # "regression" | "classification"
    n_test: int = 2560  # the paper's test-set size for Tables 7-9
    reference: PaperRow = PaperRow("", "")
    defaults: TaskDefaults = TaskDefaults()
    # Shorter versions of the task to train on first, shortest first (a curriculum; the runner
    # moves on from each once a check at that length has at most 1 % wrong); () → none.
    curriculum: tuple[int, ...] = ()

    def at_length(self, length: int) -> "LagTask":
        """The same task at another length, without a curriculum (tasks that have one)."""
        raise NotImplementedError(f"task {self.name!r} has no curriculum")

    # --- data --------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """n fresh sequences drawn with ``generator`` (same seed → same batch)."""
        raise NotImplementedError

    def train_batch(self, k: int, batch_size: int, seed: int) -> Batch:
        """Training batch number k of a run with this seed: a function of (seed, k) only, so a
        resumed run sees the same data. Tasks with a fixed training set override."""
        return self.sample(batch_size, batch_generator(seed, k))

    def test_set(self, seed: int) -> Batch:
        """The held-out test set of the paper's size, from its own seed."""
        return self.sample(self.n_test, torch.Generator().manual_seed(seed))

    # --- loss and criterion ------------------------------------------------------------
    def loss(self, y: Tensor, batch: Batch) -> Tensor:
        """Training loss. y: (B, O) for "last", (B, T, O) for "every"."""
        if self.kind == "regression":
            return F.mse_loss(y.squeeze(-1), batch.target)
        if self.readout == "last":
            return F.cross_entropy(y, batch.target)
        return F.cross_entropy(y.reshape(-1, y.shape[-1]), batch.target.reshape(-1), ignore_index=IGNORE)

    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        """(B,) bool: the sequences the paper's criterion counts as wrong."""
        raise NotImplementedError

    def evaluate(self, y: Tensor, batch: Batch) -> dict[str, Any]:
        """The paper's numbers for model outputs y on batch: wrong count, size, loss."""
        wrong = self.wrong(y, batch)
        return {"wrong": int(wrong.sum()), "n": batch.size, "loss": float(self.loss(y, batch))}

    def solved(self, metrics: dict[str, Any]) -> bool:
        """Whether an evaluation meets the issue's target (default: at most 1 % wrong)."""
        return metrics["wrong"] <= 0.01 * metrics["n"]

    def describe(self) -> str:
        return self.name


# --- shared helpers -----------------------------------------------------------------------
def batch_generator(seed: int, k: int) -> torch.Generator:
    """A generator for batch k of run seed; distinct from every test-set seed (those are < 2^31)."""
    return torch.Generator().manual_seed((int(seed) + 1) * 2**32 + int(k))


def randint(low: int, high: int, size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Integers uniform in [low, high] (both ends included, as the paper states ranges)."""
    return torch.randint(low, high + 1, size, generator=generator)


def one_hot(symbols: Tensor, n: int, lengths: Optional[Tensor] = None) -> Tensor:
    """(B, T) int64 → (B, T, n) float local representation; zero rows past each length."""
    x = F.one_hot(symbols.clamp(min=0), n).float()
    if lengths is not None:
        steps = torch.arange(symbols.shape[1]).unsqueeze(0)  # (1, T)
        x = x * (steps < lengths.unsqueeze(1)).unsqueeze(-1)
    return x


LN8 = math.log(8.0)
