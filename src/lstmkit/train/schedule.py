"""The learning rate by step: linear warm-up, then constant, cosine, or cut on a plateau."""
from __future__ import annotations

import math
from typing import Any, Optional

from .config import TrainConfig


def improved(value: float, best: Optional[float], mode: str) -> bool:
    """Whether value beats best ("min": lower is better, "max": higher); anything beats None."""
    return best is None or (value < best if mode == "min" else value > best)


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
        if improved(value, self.best, self.cfg.mode):
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
