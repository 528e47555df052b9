"""The Trainer: one loop for every lstmkit application, resumable at any step after a kill.

``fit`` reads top to bottom as the steps it takes; each named step lives where it can be tested
alone: TrainState (state.py: what survives a stop, and its checkpoint), Windows (windows.py:
batches cut into TBPTT windows), train_step / evaluate / due (steps.py), RunLog (runlog.py:
metrics.jsonl and the progress display), LRSchedule (schedule.py), the seeds (rng.py).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed as ddp
from .config import TrainConfig, to_dict
from .lock import RunLock, remove_dead_temps
from .progress import Progress
from .rng import rank_seed, seed_everything
from .runlog import RunLog
from .schedule import LRSchedule
from .signals import Interrupted, StopSignals, signal_name
from .state import TrainState
from .steps import due, evaluate, train_step
from .task import Task
from .windows import Windows


@dataclass
class FitResult:
    """What Trainer.fit returns."""

    step: int  # optimizer steps done
    loss: float  # training loss of the last step (this rank)
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    best: Optional[float] = None  # best value of config.metric seen
    stopped_early: bool = False
    seconds: float = 0.0  # wall time of this fit call
    run_dir: Optional[str] = None
    curve: Optional[str] = None  # learning-curve PNG path, if written


class Trainer:
    """Train a Task's model: AdamW, clipping, schedules, TBPTT, evals, early stopping, checkpoints, DDP.

    The application supplies a Task (lstmkit.train.task) with four methods:

    - ``build_model()`` → an nn.Module;
    - ``global_batch(k, batch_size)`` → batch k of the whole job; it depends only on k, so a
      resumed run sees the same data (the position saved in a checkpoint is just that count).
      The default ``train_batches(start, *, batch_size, rank, world_size)`` streams them from
      ``start``, each DDP rank taking its share via ``shard``; override it instead for a stream;
    - ``loss(model, batch, state)`` → ``(mean loss, state to carry)``; ``state`` is None at the
      start of a sequence, else what the previous TBPTT window returned, detached;
    - ``evaluate(model)`` → ``{"loss": ..., "accuracy": ...}`` on validation data.

    Optional: ``should_stop(metrics)`` → False, or True / a reason string to end training after an
    evaluation (e.g. "solved"); ``windows``, ``reset_state``, ``count`` (see lstmkit.train.task).

    With ``tbptt = k`` each batch (batch_first tensors) is cut into windows of k steps; each
    window is one optimizer step, and the state carries across windows with its graph cut. A new
    batch starts from a zero state, unless it is a dict with a ``"reset"`` (B,) bool mask: then the
    state carries over from the previous batch and is zeroed only in rows where reset is True.

    Example:
        >>> import torch, lstmkit as lk
        >>> from lstmkit.train import Task, Trainer, TrainConfig
        >>> class Sum(Task):                      # y = running sum of x
        ...     def build_model(self):
        ...         return torch.nn.ModuleDict({"rnn": lk.LSTM(1, 8, batch_first=True),
        ...                                     "out": torch.nn.Linear(8, 1)})
        ...     def global_batch(self, k, batch_size):
        ...         x = torch.randn(batch_size, 20, 1, generator=torch.Generator().manual_seed(k))
        ...         return {"x": x, "y": x.cumsum(1)}
        ...     def loss(self, model, batch, state):
        ...         h, state = model["rnn"](batch["x"], state)
        ...         return torch.nn.functional.mse_loss(model["out"](h), batch["y"]), state
        >>> result = Trainer(Sum(), TrainConfig(steps=4, batch_size=4, tbptt=10, progress="off")).fit()
        >>> result.step
        4

    Args:
        task: the Task.
        config: TrainConfig (see its docstring for every option).
        run_dir: the run folder (config.json, model.safetensors, trainer_state.pt, metrics.jsonl,
            learning_curve.png); None trains in memory and writes nothing.
        run_config: the mapping written to config.json (default: just ``{"train": config}``);
            lstmkit.train.load_run rebuilds the model from it when it names a registered task.

    ``fit(resume=False)`` trains to config.steps (or early stop) and returns a FitResult; with
    resume=True it continues from the run folder's checkpoint exactly as if never interrupted
    (the checkpoint is a TrainState's: lstmkit.train.state). ``trainer.model`` is the
    (unwrapped) model afterwards.

    With a run_dir, fit holds the folder's lock (lstmkit.train.lock): a second writer is refused
    with a RunLockedError naming this process. SIGINT / SIGTERM end training after the current
    step with a final checkpoint and an Interrupted exception (a KeyboardInterrupt) saying how to
    resume; a second signal stops at once, leaving the last complete checkpoint.
    """

    def __init__(self, task: Task, config: Optional[TrainConfig] = None, run_dir: Optional[str] = None,
                 *, run_config: Optional[dict[str, Any]] = None) -> None:
        self.task = task
        self.cfg = config or TrainConfig()
        self.run_dir = run_dir
        self.run_config = run_config if run_config is not None else {"train": to_dict(self.cfg)}
        self.model: Optional[nn.Module] = None

    # ..................................................................... the loop

    def fit(self, resume: bool = False) -> FitResult:
        lock = None
        if self.run_dir is not None and ddp.env_info().is_main:  # one writer per run folder
            lock = RunLock(self.run_dir).acquire()
            remove_dead_temps(self.run_dir)
        try:
            hint = f"resume with: lstmkit train --resume {self.run_dir}"
            with StopSignals(enabled=self.run_dir is not None, hint=hint) as stop:
                return self._fit(resume, stop)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, resume: bool, stop: StopSignals) -> FitResult:
        c, task, t_start = self.cfg, self.task, time.perf_counter()
        info, device = self._join()  # threads, this process's DDP rank and device
        state = self._new_state(device)  # seeded model, optimizer and schedule at step 0
        if resume:
            state.restore(self._folder_to_resume(), c, info, device)  # weights, counters, RNG, carry; curves cut
        else:
            self._refuse_to_overwrite(info)
            if info.rank:  # dropout masks differ between ranks
                seed_everything(rank_seed(c.seed, info.rank), c.deterministic)
        self._write_config(info, fresh=not resume)
        self.model = state.model
        model = ddp.wrap(state.model, info, device)  # after the restore: DDP starts every rank from rank 0's weights
        windows = Windows(task, c.tbptt, c.batch_size // info.world_size, info.rank, info.world_size, device)
        log = RunLog(self.run_dir, Progress(c.progress, c.steps, state.step, info.is_main), task.seconds_left, info)

        last_loss, saves = math.nan, self.run_dir is not None
        model.train()
        while not state.done(c.steps):
            result = train_step(model, state, task, windows.next(state), c.clip_norm)
            last_loss = result.loss
            log.count(result)
            if due(state.step, c.log_every, c.steps):
                log.train(state, result)
            if due(state.step, c.eval_every, c.steps):
                self._evaluate(state, info, log)
            signalled = self._signal(stop, info)
            if saves and (due(state.step, c.checkpoint_every, c.steps) or state.stopped or signalled):
                state.save(self.run_dir, info)
            if signalled and not state.done(c.steps):
                log.close()
                ddp.barrier(info)
                raise self._interrupted(signalled, state.step)
        log.close()
        ddp.barrier(info)
        return self._finish(state, last_loss, t_start, info)

    # ..................................................................... the named steps

    def _join(self) -> tuple[ddp.DistInfo, torch.device]:
        c = self.cfg
        if c.threads:
            torch.set_num_threads(c.threads)
        info = ddp.setup("cuda" if c.device.startswith("cuda") or (c.device == "auto" and torch.cuda.is_available())
                         else "cpu")
        if c.batch_size % info.world_size:
            raise ValueError(f"train.batch_size={c.batch_size} does not split evenly into {info.world_size} ranks")
        d = c.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(d)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", info.local_rank)
        return info, device

    def _new_state(self, device: torch.device) -> TrainState:
        """The same initial weights on every rank: seeded before the model is built."""
        c = self.cfg
        seed_everything(c.seed, c.deterministic)
        model = self.task.build_model().to(device)
        return TrainState(model, self._optimizer(model), LRSchedule(c))

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c, params = self.cfg, [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)

    def _folder_to_resume(self) -> str:
        if self.run_dir is None:
            raise ckpt.CheckpointError("nothing to resume: the Trainer has no run_dir")
        return self.run_dir

    def _refuse_to_overwrite(self, info: ddp.DistInfo) -> None:
        if ddp.broadcast(self.run_dir is not None and info.is_main and ckpt.has_checkpoint(self.run_dir), info):
            raise ckpt.CheckpointError(
                f"{self.run_dir!r} already holds a checkpoint; resume it (--resume) or choose another run_dir")

    def _write_config(self, info: ddp.DistInfo, fresh: bool) -> None:
        """config.json (on resume it may hold more steps than before); a fresh run also starts metrics.jsonl."""
        if self.run_dir is None or not info.is_main:
            return
        ckpt.save_config(self.run_dir, self.run_config)
        if fresh:
            open(os.path.join(self.run_dir, ckpt.METRICS), "w").close()

    def _evaluate(self, state: TrainState, info: ddp.DistInfo, log: RunLog) -> None:
        """Evaluate, log, and let the metrics end training: early stopping, or the task's own should_stop."""
        metrics = evaluate(self.task, state.model, info)
        log.eval(state.step, metrics)
        why = state.observe(metrics, self.cfg)
        if why:
            log.note(why)
        if not state.stopped and getattr(self.task, "should_stop", None) is not None:
            why = ddp.broadcast(self.task.should_stop(metrics) if info.is_main else None, info)
            if why:
                state.stopped = True
                log.note(f"stopped at step {state.step}: {why if isinstance(why, str) else 'task says done'}")

    def _interrupted(self, signum: int, step: int) -> Interrupted:
        return Interrupted(signum, f"{signal_name(signum)} at step {step}/{self.cfg.steps}: checkpoint written to "
                                   f"{self.run_dir}; resume with: lstmkit train --resume {self.run_dir}")

    @staticmethod
    def _signal(stop: StopSignals, info: ddp.DistInfo) -> Optional[int]:
        """The signal received, if any; every rank stops at the same step (the checkpoint gathers all ranks)."""
        if info.world_size > 1:
            return ddp.max_int(stop.received or 0, info) or None
        return stop.received

    def _finish(self, state: TrainState, loss: float, t_start: float, info: ddp.DistInfo) -> FitResult:
        curve = None
        if self.run_dir is not None and info.is_main and self.cfg.plot:
            from .curves import plot_run

            curve = plot_run(self.run_dir)
        return FitResult(step=state.step, loss=loss, metrics=state.metrics, best=state.best,
                         stopped_early=state.stopped, seconds=time.perf_counter() - t_start, run_dir=self.run_dir,
                         curve=curve)
