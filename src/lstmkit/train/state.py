"""TrainState: everything a stopped run needs to go on as if it had never stopped, and its checkpoint.

What survives a stop, and where it is kept in the run folder (lstmkit.train.checkpoint)::

    model                           model.safetensors
    optimizer, schedule             trainer_state.pt: the optimizer's moments, the plateau's scale
    step, position, window          optimizer steps taken; batches drawn from the task's stream;
                                    TBPTT windows of the current batch already trained on
    best, bad_evals, stopped,       early stopping: the best value of the watched metric, evaluations
    metrics                         since it improved, whether training has ended; the last evaluation
    ranks[r]: rng, carry, log       per rank: every RNG state, the recurrent state carried into the
                                    next window, the train-loss sum and count since the last logged row
    world_size                      how many ranks wrote it

The learning curves themselves are metrics.jsonl: restore cuts them back to the checkpoint's step,
so the rows logged after it (lost work, done again) are not logged twice. trainer_state.pt keeps
the layout STATE_FORMAT describes, so every run folder written since that format resumes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed as ddp
from .config import ConfigError, TrainConfig
from .rng import rank_seed, rng_state, seed_everything, set_rng_state
from .schedule import LRSchedule, improved
from .task import to_device


@dataclass
class TrainState:
    """The state of a run between two optimizer steps; ``save`` and ``restore`` move it through a run folder.

    ``model`` is the unwrapped module (not its DistributedDataParallel wrapper); ``carry``, the
    RNG states and ``loss_sum`` / ``loss_n`` are this rank's own.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    step: int = 0
    position: int = 0
    window: int = 0
    carry: Any = None
    best: Optional[float] = None
    bad_evals: int = 0
    stopped: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    loss_sum: float = 0.0
    loss_n: int = 0
    saved_step: Optional[int] = None  # the step of the run folder's last complete checkpoint (not saved)

    def done(self, steps: int) -> bool:
        return self.step >= steps or self.stopped

    # ..................................................................... the training curve

    def add_loss(self, loss: float) -> None:
        self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1

    def take_mean_loss(self) -> float:
        """This rank's mean training loss since the last call (the row to log), and start a new one."""
        mean = self.loss_sum / self.loss_n
        self.loss_sum, self.loss_n = 0.0, 0
        return mean

    # ..................................................................... early stopping

    def observe(self, metrics: dict[str, float], cfg: TrainConfig) -> Optional[str]:
        """Take an evaluation in: plateau schedule, best value, early stop; the stop message if it stops."""
        self.metrics = metrics
        if not metrics:
            return None
        if cfg.metric not in metrics:
            if cfg.patience or cfg.schedule == "plateau":
                raise ConfigError(f"train.metric={cfg.metric!r} is not among the eval metrics {sorted(metrics)}")
            return None
        value = metrics[cfg.metric]
        self.schedule.observe(value)
        if improved(value, self.best, cfg.mode):
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if cfg.patience and self.bad_evals >= cfg.patience:
            self.stopped = True
            return (f"early stop at step {self.step}: {cfg.metric} has not improved for {self.bad_evals} "
                    f"evaluations (best {self.best:.4g})")
        return None

    # ..................................................................... checkpoint

    def rank_part(self) -> dict[str, Any]:
        """What only this rank knows: its RNG states, its carried state, its part-logged loss mean."""
        return {"rng": rng_state(), "carry": to_device(self.carry, torch.device("cpu")),
                "log": [self.loss_sum, self.loss_n]}

    def to_checkpoint(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """trainer_state.pt's content (the model's hash is added when it is written)."""
        return {
            "format": ckpt.STATE_FORMAT, "step": self.step, "position": self.position, "window": self.window,
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "best": self.best, "bad_evals": self.bad_evals, "stopped": self.stopped, "metrics": self.metrics,
            "ranks": ranks, "world_size": len(ranks),
        }

    def save(self, run_dir: Optional[str], info: ddp.DistInfo = ddp.DistInfo()) -> None:
        """Write the checkpoint (rank 0; every rank must call it, as it gathers the ranks' parts).

        A failed write (disk full, read-only) is a CheckpointError saying which checkpoint is intact.
        """
        ranks = ddp.gather(self.rank_part(), info)
        if run_dir is None or not info.is_main:
            return
        try:
            ckpt.save_checkpoint(run_dir, self.model, self.to_checkpoint(ranks))
        except OSError as e:  # the previous checkpoint is untouched
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            kept = (f"the checkpoint of step {self.saved_step} is intact" if self.saved_step is not None
                    else "no earlier checkpoint exists")
            raise ckpt.CheckpointError(f"could not write the checkpoint of step {self.step} to {run_dir} "
                                       f"({what}); {kept}") from None
        self.saved_step = self.step

    def restore(self, run_dir: str, cfg: TrainConfig, info: ddp.DistInfo = ddp.DistInfo(),
                device: torch.device = torch.device("cpu")) -> None:
        """Continue from run_dir's checkpoint: weights, optimizer, counters, RNG states, carried state.

        Rank 0 reads the folder and hands every rank the state (or the error), and cuts
        metrics.jsonl back to the checkpoint's step (the rows after it will be logged again).
        """
        self.load(read_checkpoint(run_dir, self.model, info), cfg, info, device,
                  where=os.path.join(run_dir, ckpt.STATE))
        if info.is_main:
            ckpt.truncate_metrics(run_dir, self.step)

    def load(self, state: dict[str, Any], cfg: TrainConfig, info: ddp.DistInfo = ddp.DistInfo(),
             device: torch.device = torch.device("cpu"), where: str = ckpt.STATE) -> None:
        """Take a checked trainer_state.pt's content in (the weights are loaded with it by read_checkpoint)."""
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.metrics = {str(k): float(v) for k, v in dict(state.get("metrics") or {}).items()}
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise ckpt.CheckpointError(f"{where} does not fit this run's model and optimizer "
                                       f"({ckpt._first_line(e)}); was it copied from another run?") from None
        self.step, self.position, self.window = state["step"], state["position"], state["window"]
        self.best, self.bad_evals, self.stopped = state["best"], state["bad_evals"], state["stopped"]
        self.saved_step = self.step
        ranks = state["ranks"]
        if len(ranks) != info.world_size and (self.window or any(r["carry"] is not None for r in ranks)):
            raise ckpt.CheckpointError(
                f"the checkpoint was written by {len(ranks)} ranks in the middle of a sequence; "
                f"resume it with {len(ranks)} ranks, not {info.world_size}")
        mine = ranks[info.rank] if info.rank < len(ranks) else None
        if mine is None:  # a rank the writing run did not have: a fresh seed of its own
            seed_everything(rank_seed(cfg.seed, info.rank, self.step), cfg.deterministic)
            return
        try:
            set_rng_state(mine["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise ckpt.CheckpointError(f"{where} holds broken RNG states ({ckpt._first_line(e)})") from None
        self.carry = to_device(mine["carry"], device)
        log = mine.get("log")
        if isinstance(log, list) and len(log) == 2:
            self.loss_sum, self.loss_n = float(log[0]), int(log[1])


def read_checkpoint(run_dir: str, model: nn.Module, info: ddp.DistInfo = ddp.DistInfo()) -> dict[str, Any]:
    """Rank 0 loads the weights into model and reads trainer_state.pt; every rank gets it or the error."""
    state: Any = None
    if info.is_main:
        try:
            state = ckpt.load_checkpoint(run_dir, model, map_location="cpu", repair=True)
            ckpt.check_state(state, os.path.join(run_dir, ckpt.STATE), ckpt.TRAINER_FIELDS)
        except ckpt.CheckpointError as e:
            state = {"error": str(e)}
    state = ddp.broadcast(state, info)
    if "error" in state:
        raise ckpt.CheckpointError(state["error"])
    return state
