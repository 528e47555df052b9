"""The long-time-lag experiments of Hochreiter & Schmidhuber (1997), plus the copy task of
Arjovsky et al. (2016), with a plain RNN beside the LSTM.

    >>> from lstmkit.paper1997 import make_task
    >>> task = make_task("adding", length=100)
    >>> import torch; batch = task.sample(4, torch.Generator().manual_seed(0))
    >>> batch.x.shape[-1], batch.target.shape
    (2, torch.Size([4]))

Tasks (name → paper section): adding (5.4), multiplication (5.5), temporal_order_6a /
temporal_order_6b (5.6), reber (5.1), long_lag (5.2, task 2a), copy (Arjovsky et al. 4.1).
run_task() trains one with the Trainer and scores it with the paper's own criterion;
gradient_flow() measures ‖dL/dh_t‖ and ‖dL/dc_t‖ against the lag.

Where we differ from the paper (and why): our LSTM is lk.LSTM, which has the forget gate of
Gers et al. (2000) — started near 1 by a forget bias of 3-5, close to the 1997 cell's constant
error carousel — and full backpropagation through time instead of the paper's truncated
gradient; training is Adam(W) on mini-batches with gradient clipping, not online SGD, so
"training sequences" counts mini-batch members. Input gates start biased shut, the paper's cure
for state drift (Section 5.4), on the adding, multiplication, Reber and 2a tasks. Task 2a's loss weighs its
one informative step, the last, as much as all deterministic steps together (averaged over the p
steps it drowned, see long_lag); adding at T = 500 and 1000 decays the learning rate and stops
only with a margin under the paper's tolerance, and at T = 1000 trains first at T = 100, 200 and
400 (a curriculum; the paper trained at T = 1000 throughout). Generators, test-set sizes and success criteria follow the paper,
with two training-data departures, each stated in its module and in the results table: embedded
Reber trains on fresh strings every batch (the paper: a fixed set of 256), and the copy task
trains on delays mixed over 1 … T (tested at T). The copy task's LSTM starts from the chrono
initialization of Tallec & Ollivier (2018).
"""
from __future__ import annotations

from typing import Optional

from .adding import AddingProblem, MultiplicationProblem
from .base import Batch, LagTask, PaperRow, TaskDefaults
from .copy import CopyTask
from .long_lag import NoiseFreeLongLag
from .reber import EmbeddedReber
from .temporal_order import TemporalOrder

# name → (factory(length) → LagTask, default length or None when the task has no length)
TASKS = {
    "adding": (lambda n: AddingProblem(n), 100),
    "multiplication": (lambda n: MultiplicationProblem(n), 100),
    "temporal_order_6a": (lambda n: TemporalOrder("6a"), None),
    "temporal_order_6b": (lambda n: TemporalOrder("6b"), None),
    "reber": (lambda n: EmbeddedReber(), None),
    "long_lag": (lambda n: NoiseFreeLongLag(n), 100),
    "copy": (lambda n: CopyTask(n), 100),
}
ALIASES = {"6a": "temporal_order_6a", "6b": "temporal_order_6b", "temporal_order": "temporal_order_6a",
           "2a": "long_lag", "embedded_reber": "reber", "add": "adding"}
# submodules the Trainer's registry imports to find `lstmkit train` tasks
TASK_MODULES = ("trainer_tasks",)


def make_task(name: str, length: Optional[int] = None) -> LagTask:
    """The task called name (see TASKS, ALIASES); length is T (or the lag p) where it applies."""
    key = ALIASES.get(name.replace("-", "_"), name.replace("-", "_"))
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    factory, default = TASKS[key]
    if length is not None and default is None:
        raise ValueError(f"task {key!r} has a fixed length (it follows the paper); do not pass --length")
    return factory(length if length is not None else default)


__all__ = ["TASKS", "make_task", "Batch", "LagTask", "PaperRow", "TaskDefaults", "AddingProblem",
           "MultiplicationProblem", "TemporalOrder", "EmbeddedReber", "NoiseFreeLongLag", "CopyTask"]
