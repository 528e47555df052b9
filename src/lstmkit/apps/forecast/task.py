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
from ...viz import GateStates, collect_states
from ..explore import ExplorerRequest, explorable, parse_window
from . import metrics as M
from .data import Series, resolve
from .forecaster import ForecasterConfig, LSTMForecaster, channels, make_windows
from .transforms import Preprocessor


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
    return ForecasterConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ForecasterConfig)})


@explorable("forecast")
class ForecastTask(Task):
    explorer_reads = "series"  # the gate explorer aligns the gates with the series' rows

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

    def gate_states(self, model: nn.Module, request: ExplorerRequest) -> GateStates:
        """The gate explorer's hook: one member's LSTM over a window of the run's series, transformed
        exactly as in training (the scaler statistics stored in the model)."""
        member = request.member
        if not 1 <= member <= len(model.members):
            raise ValueError(f"--member must be in [1, {len(model.members)}] (the run's ensemble), got {member}")
        c = self.cfg
        pre = Preprocessor(log=c.log, detrend=c.detrend, seasonal_diff=c.seasonal_diff, diff=c.diff, scale=c.scale)
        pre.load_array(model.scaler.numpy())
        series = self.series
        z, Xz = pre.transform(series.y, series.X)
        A = channels(z, Xz)  # (T - lost, C): row k is series row k + lost
        lost, T = pre.lost, len(series)
        start, end = parse_window(request.window, T)
        if start < lost:
            if request.window:
                raise ValueError(f"--window must start at row {lost} or later: differencing uses the first {lost} rows")
            start = lost
        if end - start < 2:
            raise ValueError(f"--window {start}:{end} holds {end - start} step(s); give at least 2")
        x = torch.from_numpy(A[start - lost:end - lost].astype(np.float32))  # (T', C)
        labels = [_label(series.index[k]) for k in range(start, end)]
        title = request.title or f"{series.target}: rows {start}–{end - 1}"
        return collect_states(model.members[member - 1].lstm, x, labels, series=series.y[start:end], title=title)


def _label(t: Any) -> str:
    return str(t.date()) if hasattr(t, "date") and getattr(t, "hour", 0) == 0 else str(t)


@register_task("forecast", ForecastTaskConfig,
               help="forecast a CSV column (or airline/stocks/sunspots) beside naive, seasonal-naive and drift")
def make_forecast(cfg: ForecastTaskConfig) -> ForecastTask:
    return ForecastTask(cfg)
