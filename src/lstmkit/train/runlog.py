"""What a run reports: rows for metrics.jsonl (rank 0 with a run folder) and the progress display."""
from __future__ import annotations

import time
from typing import Optional

from . import checkpoint as ckpt
from . import distributed as ddp
from .progress import Progress
from .state import TrainState
from .steps import StepResult


class RunLog:
    """``train(state, result)`` after a logging step, ``eval(step, metrics)``, ``note(text)``, ``close()``.

    The train row is the mean loss since the last row over every rank (state.take_mean_loss),
    the learning rate, the gradient norm and items per second.
    """

    def __init__(self, run_dir: Optional[str], progress: Progress, seconds_left, info: ddp.DistInfo) -> None:
        self.run_dir, self.progress, self.seconds_left, self.info = run_dir, progress, seconds_left, info
        self.items, self.t_last = 0, time.perf_counter()

    def count(self, result: StepResult) -> None:
        self.items += result.items

    def train(self, state: TrainState, result: StepResult) -> None:
        now = time.perf_counter()
        mean_loss = ddp.mean(state.take_mean_loss(), self.info)
        rate = self.items * self.info.world_size / max(now - self.t_last, 1e-9)
        row = {"step": state.step, "split": "train", "loss": mean_loss, "lr": result.lr, "items_per_s": rate}
        if result.grad_norm is not None:
            row["grad_norm"] = result.grad_norm
        self._write(row)
        shown = {"loss": mean_loss, "lr": result.lr, "items/s": round(rate)}
        left = self.seconds_left()
        self.progress.update(state.step, shown, left)
        self.progress.log(state.step, shown, left)
        self.items, self.t_last = 0, now

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        self._write({"step": step, "split": "eval", **metrics})
        self.note(f"eval @ {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def note(self, text: str) -> None:
        self.progress.write(text)

    def close(self) -> None:
        self.progress.close()

    def _write(self, row: dict) -> None:
        if self.run_dir is not None and self.info.is_main:
            ckpt.append_metrics(self.run_dir, [row])
