"""LSTMForecaster.fit through the Trainer: epochs of shuffled minibatches over the training windows.

Epoch e visits the N training windows in the e-th permutation drawn from one generator seeded
with FitConfig.seed, in minibatches of batch_size (the last one of an epoch shorter): batch k
is a function of k alone, as the Trainer asks. AdamW, a cosine schedule over every step, and
each ensemble member's gradient clipped on its own, so that a member trains exactly as it would
alone. Nothing is written to disk.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ...train.config import TrainConfig
from ...train.task import Task
from ...train.trainer import Trainer


class WindowEpochs(Task):
    """The Trainer's task for (x, y) windows held in memory; ``build`` makes the ForecastNet."""

    def __init__(self, x: Tensor, y: Tensor, build: Callable[[], nn.Module], batch_size: int, seed: int) -> None:
        self.x, self.y, self.build, self.batch_size = x, y, build, batch_size
        self.batches_per_epoch = math.ceil(len(x) / batch_size)
        self._generator = torch.Generator().manual_seed(seed)
        self._orders: list[Tensor] = []  # the permutation of each epoch drawn so far

    def _order(self, epoch: int) -> Tensor:
        while len(self._orders) <= epoch:
            self._orders.append(torch.randperm(len(self.x), generator=self._generator))
        return self._orders[epoch]

    def build_model(self) -> nn.Module:
        return self.build()

    def global_batch(self, k: int, batch_size: int) -> dict[str, Tensor]:
        epoch, i = divmod(k, self.batches_per_epoch)
        idx = self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        return {"x": self.x[idx], "y": self.y[idx]}

    def windows(self, batch: Any, k: int) -> list[Any]:
        return [batch]  # windows are short and independent: no truncated BPTT

    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any]:
        return model.loss(model(batch["x"]), batch["y"]), None

    def clip_groups(self, model: nn.Module) -> list[list[nn.Parameter]]:
        return [list(member.parameters()) for member in model.members]


def train_windows(x: Tensor, y: Tensor, build: Callable[[], nn.Module], *, epochs: int, lr: float, batch_size: int,
                  weight_decay: float, clip_norm: float, seed: int) -> nn.Module:
    """The trained model (in eval mode) after ``epochs`` passes over the windows (x, y)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    task = WindowEpochs(x, y, build, batch_size, seed)
    cfg = TrainConfig(steps=epochs * task.batches_per_epoch, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, clip_norm=clip_norm, seed=seed, schedule="cosine",
                      checkpoint_every=0, log_every=task.batches_per_epoch, progress="off", plot=False, device="cpu")
    trainer = Trainer(task, cfg)
    trainer.fit()
    return trainer.model.eval()
