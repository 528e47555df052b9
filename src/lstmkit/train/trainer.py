"""The Trainer: one loop for every lstmkit application, resumable at any step after a kill."""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed as ddp
from .config import ConfigError, TrainConfig, to_dict
from .lock import RunLock, remove_dead_temps
from .signals import Interrupted, StopSignals, signal_name
from .task import Task, detach_state, to_device

STATE_FORMAT = ckpt.STATE_FORMAT


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


class LRSchedule:
    """Learning rate as a function of step: linear warm-up, then constant / cosine / plateau."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.scale = 1.0  # plateau: product of the reductions so far
        self.best: Optional[float] = None
        self.bad = 0

    def lr(self, step: int) -> float:
        """Learning rate for the step after ``step`` steps have been taken."""
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.schedule == "cosine":
            progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
            return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        if c.schedule == "plateau":
            return c.lr * self.scale
        return c.lr

    def observe(self, value: float) -> None:
        """Plateau: cut the rate by plateau_factor after plateau_patience evals without improvement."""
        if self.cfg.schedule != "plateau":
            return
        if _improved(value, self.best, self.cfg.mode):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad >= self.cfg.plateau_patience:
                self.scale *= self.cfg.plateau_factor
                self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.scale, self.best, self.bad = d["scale"], d["best"], d["bad"]


def _improved(value: float, best: Optional[float], mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


# --------------------------------------------------------------------------- seeds and RNG


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with deterministic, also forbid nondeterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Every RNG's state, as types torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on a terminal, plain log lines elsewhere (or nothing); rank 0 only."""

    def __init__(self, mode: str, total: int, initial: int, enabled: bool, desc: str = "train") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode if enabled else "off"
        self.total, self.t0, self.step0 = total, time.perf_counter(), initial
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, step: int, info: dict[str, Any], seconds_left: float = math.inf) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items()}
            if math.isfinite(seconds_left):  # tqdm's own ETA counts steps; a time budget may end sooner
                postfix["budget left"] = f"{int(seconds_left) // 60}:{int(seconds_left) % 60:02d}"
            self.bar.set_postfix(postfix, refresh=False)

    def log(self, step: int, info: dict[str, Any], seconds_left: float = math.inf) -> None:
        """One line; seconds_left caps the ETA when the task stops on a time budget (Task.seconds_left)."""
        if self.mode != "log":
            return
        done = step - self.step0
        elapsed = time.perf_counter() - self.t0
        eta = min(elapsed / done * (self.total - step), seconds_left) if done else float("nan")
        parts = [f"step {step}/{self.total}"] + [
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()]
        if done and eta == eta:
            parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        print("  ".join(parts), file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the Trainer


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
    resume=True it continues from the run folder's checkpoint exactly as if never interrupted.
    ``trainer.model`` is the (unwrapped) model afterwards.

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

    # ..................................................................... set-up

    def _device(self, info: ddp.DistInfo) -> torch.device:
        d = self.cfg.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(d)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", info.local_rank)
        return dev

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c, params = self.cfg, [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)

    def _load(self, model: nn.Module, info: ddp.DistInfo, device: torch.device) -> dict[str, Any]:
        """Rank 0 reads the checkpoint and shares the trainer state (errors reach every rank)."""
        state: Any = None
        if info.is_main:
            try:
                state = ckpt.load_checkpoint(self.run_dir, model, map_location="cpu", repair=True)
                ckpt.check_state(state, os.path.join(self.run_dir, ckpt.STATE), ckpt.TRAINER_FIELDS)
            except ckpt.CheckpointError as e:
                state = {"error": str(e)}
        state = ddp.broadcast(state, info)
        if "error" in state:
            raise ckpt.CheckpointError(state["error"])
        return state

    # ..................................................................... the loop

    def fit(self, resume: bool = False) -> FitResult:
        lock = None
        if self.run_dir is not None and ddp.env_info().is_main:
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
        c, task = self.cfg, self.task
        t_start = time.perf_counter()
        if c.threads:
            torch.set_num_threads(c.threads)
        info = ddp.setup("cuda" if self.cfg.device.startswith("cuda") or
                         (self.cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        device = self._device(info)
        if c.batch_size % info.world_size:
            raise ValueError(f"train.batch_size={c.batch_size} does not split evenly into {info.world_size} ranks")
        local_batch = c.batch_size // info.world_size
        writes = self.run_dir is not None and info.is_main

        # Model, optimizer, schedule: the same initial weights on every rank.
        seed_everything(c.seed, c.deterministic)
        raw = task.build_model()
        state: Optional[dict[str, Any]] = None
        if resume:
            if self.run_dir is None:
                raise ckpt.CheckpointError("nothing to resume: the Trainer has no run_dir")
            state = self._load(raw, info, device)  # rank 0 reads; every rank gets state or error
        elif ddp.broadcast(writes and ckpt.has_checkpoint(self.run_dir), info):
            raise ckpt.CheckpointError(
                f"{self.run_dir!r} already holds a checkpoint; resume it (--resume) or choose another run_dir")
        raw.to(device)
        self.model = raw
        model = ddp.wrap(raw, info, device)
        optimizer = self._optimizer(raw)
        schedule = LRSchedule(c)

        step, position, window, carry = 0, 0, 0, None
        loss_sum, loss_n = 0.0, 0  # training losses since the last logged row
        best, bad_evals, stopped = None, 0, False
        last_metrics: dict[str, float] = {}
        if state is not None:
            try:
                optimizer.load_state_dict(state["optimizer"])
                schedule.load_state_dict(state["schedule"])
                last_metrics = {str(k): float(v) for k, v in dict(state.get("metrics") or {}).items()}
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise ckpt.CheckpointError(
                    f"{os.path.join(self.run_dir, ckpt.STATE)} does not fit this run's model and optimizer "
                    f"({ckpt._first_line(e)}); was it copied from another run?") from None
            step, position, window = state["step"], state["position"], state["window"]
            best, bad_evals, stopped = state["best"], state["bad_evals"], state["stopped"]
            ranks = state["ranks"]
            if len(ranks) != info.world_size and (window or any(r["carry"] is not None for r in ranks)):
                raise ckpt.CheckpointError(
                    f"the checkpoint was written by {len(ranks)} ranks in the middle of a sequence; "
                    f"resume it with {len(ranks)} ranks, not {info.world_size}")
            mine = ranks[info.rank] if info.rank < len(ranks) else None
            if mine is not None:
                try:
                    set_rng_state(mine["rng"])
                except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
                    raise ckpt.CheckpointError(f"{os.path.join(self.run_dir, ckpt.STATE)} holds broken RNG states "
                                               f"({ckpt._first_line(e)})") from None
                carry = to_device(mine["carry"], device)
                log = mine.get("log")
                if isinstance(log, list) and len(log) == 2:
                    loss_sum, loss_n = float(log[0]), int(log[1])
            else:
                seed_everything(c.seed + 1_000_003 * info.rank + step, c.deterministic)
            if writes:
                ckpt.truncate_metrics(self.run_dir, step)
                ckpt.save_config(self.run_dir, self.run_config)  # e.g. with more steps than before
        else:
            if info.rank:  # dropout masks differ between ranks
                seed_everything(c.seed + 1_000_003 * info.rank, c.deterministic)
            if writes:
                os.makedirs(self.run_dir, exist_ok=True)
                ckpt.save_config(self.run_dir, self.run_config)
                open(os.path.join(self.run_dir, ckpt.METRICS), "w").close()

        saved = [step if state is not None else None]  # the step of the folder's last complete checkpoint

        def checkpoint() -> None:
            per_rank = ddp.gather({"rng": rng_state(), "carry": to_device(carry, torch.device("cpu")),
                                   "log": [loss_sum, loss_n]}, info)  # a logged mean spanning the checkpoint
            if writes:
                try:
                    ckpt.save_checkpoint(self.run_dir, raw, {
                        "format": STATE_FORMAT, "step": step, "position": position, "window": window,
                        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "best": best, "bad_evals": bad_evals, "stopped": stopped, "metrics": last_metrics,
                        "ranks": per_rank, "world_size": info.world_size,
                    })
                except OSError as e:  # disk full, quota, read-only: the previous checkpoint is untouched
                    what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
                    kept = (f"the checkpoint of step {saved[0]} is intact" if saved[0] is not None
                            else "no earlier checkpoint exists")
                    raise ckpt.CheckpointError(f"could not write the checkpoint of step {step} to {self.run_dir} "
                                               f"({what}); {kept}") from None
                saved[0] = step

        def evaluate() -> dict[str, float]:
            metrics: Any = None
            if info.is_main:
                raw.eval()
                with torch.no_grad():
                    metrics = {k: float(v) for k, v in (task.evaluate(raw) or {}).items()}
                raw.train()
            return ddp.broadcast(metrics, info)

        progress = Progress(c.progress, c.steps, step, info.is_main)
        if step >= c.steps or stopped:
            progress.close()
            ddp.barrier(info)
            return self._finish(step, float("nan"), last_metrics, best, stopped, t_start, writes)

        # Data: resume inside the batch the checkpoint was taken in.
        def stream_from(pos: int):
            return iter(task.train_batches(pos, batch_size=local_batch, rank=info.rank, world_size=info.world_size))

        windows: list[Any] = []
        if window > 0:
            stream = stream_from(position - 1)
            windows = self._windows(to_device(next(stream), device))
        else:
            stream = stream_from(position)

        model.train()
        items, t_log = 0, time.perf_counter()
        last_loss = float("nan")
        while step < c.steps and not stopped:
            # Next window: a new batch when the current one is used up.
            if window >= len(windows):
                try:
                    batch = next(stream)
                except StopIteration:
                    stream = stream_from(position)
                    batch = next(stream)
                position += 1
                batch = to_device(batch, device)
                if isinstance(batch, dict) and "reset" in batch:
                    if carry is not None:
                        carry = task.reset_state(carry, batch["reset"])
                    batch = {k: v for k, v in batch.items() if k != "reset"}
                else:
                    carry = None  # a new sequence starts from a zero state
                windows, window = self._windows(batch), 0
            w = windows[window]
            window += 1

            # One optimizer step on this window; the carried state's graph is cut here.
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, carry = task.loss(model, w, detach_state(carry))
            carry = detach_state(carry)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = (torch.nn.utils.clip_grad_norm_(raw.parameters(), c.clip_norm) if c.clip_norm > 0
                         else None)
            optimizer.step()
            step += 1
            last_loss = float(loss.detach())
            loss_sum, loss_n, items = loss_sum + last_loss, loss_n + 1, items + task.count(w)

            if step % c.log_every == 0 or step == c.steps:
                now = time.perf_counter()
                mean_loss = ddp.mean(loss_sum / loss_n, info)
                rate = items * info.world_size / max(now - t_log, 1e-9)
                row = {"step": step, "split": "train", "loss": mean_loss, "lr": lr, "items_per_s": rate}
                if grad_norm is not None:
                    row["grad_norm"] = float(grad_norm)
                if writes:
                    ckpt.append_metrics(self.run_dir, [row])
                shown = {"loss": mean_loss, "lr": lr, "items/s": round(rate)}
                left = task.seconds_left()
                progress.update(step, shown, left)
                progress.log(step, shown, left)
                loss_sum, loss_n, items, t_log = 0.0, 0, 0, now

            if (c.eval_every and step % c.eval_every == 0) or step == c.steps:
                last_metrics = evaluate()
                if last_metrics:
                    if writes:
                        ckpt.append_metrics(self.run_dir, [{"step": step, "split": "eval", **last_metrics}])
                    progress.write(f"eval @ {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in last_metrics.items()))
                    if c.metric in last_metrics:
                        value = last_metrics[c.metric]
                        schedule.observe(value)
                        if _improved(value, best, c.mode):
                            best, bad_evals = value, 0
                        else:
                            bad_evals += 1
                            if c.patience and bad_evals >= c.patience:
                                stopped = True
                                progress.write(f"early stop at step {step}: {c.metric} has not improved "
                                               f"for {bad_evals} evaluations (best {best:.4g})")
                    elif c.patience or c.schedule == "plateau":
                        raise ConfigError(f"train.metric={c.metric!r} is not among the eval metrics "
                                          f"{sorted(last_metrics)}")
                if not stopped and getattr(task, "should_stop", None) is not None:
                    why = ddp.broadcast(task.should_stop(last_metrics) if info.is_main else None, info)
                    if why:
                        stopped = True
                        progress.write(f"stopped at step {step}: {why if isinstance(why, str) else 'task says done'}")

            signalled = stop.received
            if info.world_size > 1:  # every rank stops at the same step (the checkpoint gathers all ranks)
                signalled = ddp.max_int(signalled or 0, info) or None
            if self.run_dir is not None and (
                    (c.checkpoint_every and step % c.checkpoint_every == 0) or step == c.steps or stopped
                    or signalled):
                checkpoint()
            if signalled and step < c.steps and not stopped:
                progress.close()
                ddp.barrier(info)
                raise Interrupted(signalled, f"{signal_name(signalled)} at step {step}/{c.steps}: checkpoint written "
                                             f"to {self.run_dir}; resume with: lstmkit train --resume {self.run_dir}")
        progress.close()
        ddp.barrier(info)
        return self._finish(step, last_loss, last_metrics, best, stopped, t_start, writes)

    def _windows(self, batch: Any) -> list[Any]:
        return self.task.windows(batch, self.cfg.tbptt) if self.cfg.tbptt else [batch]

    def _finish(self, step, loss, metrics, best, stopped, t_start, writes) -> FitResult:
        curve = None
        if writes and self.cfg.plot:
            from .curves import plot_run

            curve = plot_run(self.run_dir)
        return FitResult(step=step, loss=loss, metrics=metrics, best=best, stopped_early=stopped,
                         seconds=time.perf_counter() - t_start, run_dir=self.run_dir, curve=curve)
