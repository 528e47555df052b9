"""The "forecast" task of ``lstmkit train``: a CSV (or shipped dataset), a target, a horizon.

    lstmkit train --task forecast --data airline --horizon 36 --strategy recursive --lookback 24 \\
        --log true --seasonal_diff 12 --hidden_size 16 --ensemble 3 --train.steps 900 --train.lr 0.005
    lstmkit train --task forecast --data prices.csv --target close --date day --horizon 5

The last ``holdout`` values (default: one horizon) are held out: the preprocessor and every
training window use only the values before them; ``evaluate`` forecasts the held-out part from
its origin and reports the model's metrics beside the naive, seasonal-naive and drift baselines.
The scaler's statistics are stored in the model (buffer ``scaler``), so ``lstmkit forecast RUN``
forecasts a newer CSV with the statistics the model was trained with.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...train.registry import register_task
from ...train.task import Task
from . import metrics as M
from .data import Series, resolve
from .forecaster import ForecasterConfig, LSTMForecaster, channels, make_windows


@dataclass
class ForecastTaskConfig(ForecasterConfig):
    """ForecasterConfig's options plus where the data comes from."""

    data: str = "airline"  # a CSV path, or a shipped dataset: airline, stocks, sunspots
    target: str = ""  # the column to forecast (shipped datasets have a default)
    date: str = ""  # the date column of a CSV ("" : rows are equally spaced positions)
    covariates: tuple[str, ...] = ()  # more columns fed to the model (CLI: --covariates a,b)
    fill: str = "error"  # missing values: "error" | "interpolate" | "ffill" | "drop"
    season: int = 0  # seasonal period for seasonal naive / MASE; 0: from the date frequency
    holdout: int = 0  # trailing values kept out of training for evaluation; 0: one horizon


def forecaster_config(cfg: ForecasterConfig) -> ForecasterConfig:
    names = {f.name for f in dataclasses.fields(ForecasterConfig)}
    return ForecasterConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


class ForecastTask(Task):
    def __init__(self, cfg: ForecastTaskConfig) -> None:
        self.cfg = cfg
        self.series: Series = resolve(cfg.data, cfg.target or None, date=cfg.date or None,
                                      covariates=cfg.covariates, fill=cfg.fill, season=cfg.season)
        self.holdout = cfg.holdout or cfg.horizon
        if self.holdout >= len(self.series):
            raise ValueError(f"holdout {self.holdout} leaves no training data in {len(self.series)} values")
        self.n_train = len(self.series) - self.holdout
        self.train_series = self.series.head(self.n_train)
        self.forecaster = LSTMForecaster(forecaster_config(cfg))
        x, y = self.forecaster.prepare(self.train_series)  # scaler fitted on the training part only
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    @property
    def n_channels(self) -> int:
        return self.x.shape[2]

    def build_model(self) -> nn.Module:
        model = self.forecaster.build_model(self.n_channels)
        model.scaler.copy_(torch.from_numpy(self.forecaster.pre.to_array()))
        return model

    def global_batch(self, k: int, batch_size: int) -> dict[str, Tensor]:
        """Windows drawn with a generator seeded by k (resumable)."""
        g = torch.Generator().manual_seed(1_000_003 + k)
        idx = torch.randint(len(self.x), (batch_size,), generator=g)
        return {"x": self.x[idx], "y": self.y[idx]}

    def windows(self, batch: Any, k: int) -> list[Any]:
        return [batch]  # windows are short and independent: no truncated BPTT

    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any]:
        return model.loss(model(batch["x"]), batch["y"]), None

    def holdout_windows(self) -> tuple[Tensor, Tensor]:
        """Windows whose targets start in the held-out part (scaled with training statistics)."""
        c, pre = self.cfg, self.forecaster.pre
        z, Xz = pre.transform(self.series.y, self.series.X)
        S = c.horizon if c.strategy == "direct" else 1
        x, y = make_windows(channels(z, Xz), c.lookback, S, c.strategy)
        first = self.n_train - pre.lost - c.lookback  # window index whose target starts at n_train
        return torch.from_numpy(x[max(first, 0):]), torch.from_numpy(y[max(first, 0):])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out loss, and the forecast from the training end scored beside the baselines."""
        dev = next(model.parameters()).device
        xh, yh = self.holdout_windows()
        out: dict[str, float] = {}
        if len(xh):
            out["loss"] = float(model.loss(model(xh.to(dev)), yh.to(dev))) / len(model.members)
        cpu = model.to("cpu") if dev.type != "cpu" else model
        H = min(self.holdout, self.cfg.horizon) if self.cfg.strategy == "direct" else self.holdout
        f = LSTMForecaster(forecaster_config(self.cfg)).attach(cpu, self.forecaster.pre, self.train_series)
        fc = f.predict(H)
        if dev.type != "cpu":
            model.to(dev)
        actual = self.series.y[self.n_train:self.n_train + H]
        m = self.series.season
        out.update(M.score(actual, fc.mean, self.train_series.y, m, fc.lower, fc.upper))
        for name, b in M.baselines(self.train_series.y, H, m).items():
            out[f"{name.replace(' ', '_')}_MAPE"] = M.mape(actual, b)
            out[f"{name.replace(' ', '_')}_MASE"] = M.mase(actual, b, self.train_series.y, m)
        return {k: v for k, v in out.items() if not np.isnan(v)}


@register_task("forecast", ForecastTaskConfig,
               help="forecast a CSV column (or airline/stocks/sunspots) beside naive, seasonal-naive and drift")
def make_forecast(cfg: ForecastTaskConfig) -> ForecastTask:
    return ForecastTask(cfg)
