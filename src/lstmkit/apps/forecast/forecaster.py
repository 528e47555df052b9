"""LSTMForecaster: fit on a history, predict a horizon with intervals, backtest from rolling origins.

    >>> import lstmkit.apps.forecast as fc
    >>> s = fc.load_dataset("airline")
    >>> f = fc.LSTMForecaster(fc.ForecasterConfig(horizon=36, lookback=24, log=True, seasonal_diff=12))
    >>> f.fit(s.head(108)).predict(36).mean.shape                # doctest: +SKIP
    (36,)
    >>> print(f.backtest(s, start=108, horizon=36).table())        # doctest: +SKIP

Windows (shapes: L lookback, C = 1 + covariates, S = horizon or 1, K = 1 or C): from the
transformed training series A (T, C) = [z, Xz], every t with L <= t <= T - S gives an input
A[t-L:t] (L, C) and a target z[t:t+S] (S, 1) ("direct", one output per horizon step) or
A[t] (1, C) ("recursive": one step of every channel, fed back to reach longer horizons).
Nothing after the training part enters a window or a statistic of the scaler.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch

from . import metrics as M
from ..lstm_config import LSTMConfig
from .data import DataError, Series
from .fitting import train_windows
from .model import LOSSES, ForecastNet
from .transforms import Preprocessor


@dataclass
class ForecasterConfig:
    """What the forecaster is; every field is also an option of ``lstmkit train --task forecast``.

    Args (defaults in brackets):
        horizon [12]: steps the model forecasts ("direct": its output size; "recursive": default
            for predict).
        lookback [24]: input window length L.
        strategy ["direct"]: "direct" (S = horizon outputs at once) | "recursive" (one step, fed back).
        loss ["gaussian"]: "gaussian" (NLL; intervals by sampling) | "quantile" (pinball loss at
            (1-level)/2, 0.5, (1+level)/2) | "mse" (point forecast, no interval).
        level [0.9]: nominal coverage of the prediction interval.
        hidden_size [32], num_layers [1], dropout [0.0]: the LSTM; ensemble [1]: members (seeds).
        log [False], detrend [False], seasonal_diff [0] (a lag, e.g. 12), diff [0] (0 or 1), scale [True]:
            preprocessing, fitted on the training part only (see transforms.py).
        samples [400]: sample paths for Gaussian intervals.
        backend ["auto"]: lk.LSTM backend.
        lstm [LSTMConfig()]: the ``[lstm]`` section, lk.LSTM's variants for every member.
    """

    horizon: int = 12
    lookback: int = 24
    strategy: str = "direct"
    loss: str = "gaussian"
    level: float = 0.9
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    ensemble: int = 1
    log: bool = False
    detrend: bool = False
    seasonal_diff: int = 0
    diff: int = 0
    scale: bool = True
    samples: int = 400
    backend: str = "auto"
    lstm: LSTMConfig = field(default_factory=LSTMConfig)

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.lookback < 1 or self.ensemble < 1 or self.hidden_size < 1:
            raise ValueError(f"horizon, lookback, ensemble and hidden_size must be >= 1; got {self.horizon}, "
                             f"{self.lookback}, {self.ensemble}, {self.hidden_size}")
        if self.strategy not in ("direct", "recursive"):
            raise ValueError(f"strategy must be 'direct' or 'recursive', got {self.strategy!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        self.lstm.check_hidden_size(self.hidden_size, "forecast")

    @property
    def quantiles(self) -> tuple[float, float, float]:
        a = (1 - self.level) / 2
        return (round(a, 6), 0.5, round(1 - a, 6))


@dataclass
class FitConfig:
    """How LSTMForecaster.fit trains, through the Trainer (``lstmkit train --task forecast`` uses [train] instead).

    epochs passes over the training windows in shuffled minibatches; AdamW with a cosine
    schedule over every step; clip_norm applies to each ensemble member's gradient on its own.
    """

    epochs: int = 300
    lr: float = 5e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    seed: int = 0


@dataclass
class Forecast:
    """A forecast: point values and interval bounds in the series' units, on the future index."""

    index: object
    mean: np.ndarray  # (H,)
    lower: Optional[np.ndarray] = None  # (H,)
    upper: Optional[np.ndarray] = None
    level: float = 0.9
    raw: Optional["Forecast"] = field(default=None, repr=False)  # before conformal widening, if any

    def to_frame(self):
        import pandas as pd

        d = {"forecast": self.mean}
        if self.lower is not None:
            d.update(lower=self.lower, upper=self.upper)
        return pd.DataFrame(d, index=self.index)


def channels(z: np.ndarray, Xz: Optional[np.ndarray]) -> np.ndarray:
    """A (T, C) = [z, Xz]."""
    return z[:, None] if Xz is None else np.concatenate([z[:, None], Xz], axis=1)


def make_windows(A: np.ndarray, lookback: int, out_steps: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, L, C) and targets (N, S, K) from the transformed training channels A (T, C)."""
    T, C = A.shape
    starts = range(lookback, T - out_steps + 1)
    if len(starts) < 1:
        raise DataError(f"{T} transformed training steps cannot make one window of lookback {lookback} + "
                        f"{out_steps} target step(s); shorten lookback/horizon or give more data")
    x = np.stack([A[t - lookback:t] for t in starts])  # (N, L, C)
    if strategy == "direct":
        y = np.stack([A[t:t + out_steps, :1] for t in starts])  # (N, S, 1)
    else:
        y = np.stack([A[t:t + 1] for t in starts])  # (N, 1, C)
    return x.astype(np.float32), y.astype(np.float32)


class LSTMForecaster:
    """fit(series) → predict(horizon) → Forecast; backtest(series, start, horizon) → BacktestResult."""

    def __init__(self, config: Optional[ForecasterConfig] = None, fit_config: Optional[FitConfig] = None,
                 **kwargs) -> None:
        fit_keys = {k: kwargs.pop(k) for k in list(kwargs) if k in FitConfig.__dataclass_fields__}
        self.config = config or ForecasterConfig(**kwargs)
        if config is not None and kwargs:
            raise TypeError(f"pass options either in config or as keywords, not both: {sorted(kwargs)}")
        self.fit_config = fit_config or FitConfig(**fit_keys)
        self.model: Optional[ForecastNet] = None
        self.pre: Optional[Preprocessor] = None
        self.history: Optional[Series] = None
        self.fit_seconds = 0.0

    # ------------------------------------------------------------------ building blocks
    def out_shape(self, n_channels: int) -> tuple[int, int]:
        c = self.config
        return (c.horizon, 1) if c.strategy == "direct" else (1, n_channels)

    def build_model(self, n_channels: int) -> ForecastNet:
        c = self.config
        S, K = self.out_shape(n_channels)
        return ForecastNet(n_channels, S, K, hidden_size=c.hidden_size, num_layers=c.num_layers, loss=c.loss,
                           quantiles=c.quantiles, members=c.ensemble, dropout=c.dropout, backend=c.backend,
                           **c.lstm.kwargs())

    def prepare(self, train: Series) -> tuple[np.ndarray, np.ndarray]:
        """Fit the preprocessor on ``train`` alone and return its windows (x, y)."""
        c = self.config
        self.pre = Preprocessor(log=c.log, detrend=c.detrend, seasonal_diff=c.seasonal_diff, diff=c.diff,
                                scale=c.scale)
        self.pre.fit(train.y, train.X)
        z, Xz = self.pre.transform(train.y, train.X)
        return make_windows(channels(z, Xz), c.lookback, self.out_shape(1 + (0 if Xz is None else Xz.shape[1]))[0],
                            c.strategy)

    def attach(self, model: ForecastNet, pre: Preprocessor, history: Series) -> "LSTMForecaster":
        """Use an already trained model (e.g. from a run folder)."""
        self.model, self.pre, self.history = model.eval(), pre, history
        return self

    # ------------------------------------------------------------------ fit
    def fit(self, series: Union[Series, np.ndarray], X: Optional[np.ndarray] = None) -> "LSTMForecaster":
        """Train on the whole of ``series`` (a Series, or an array y with optional covariates X)."""
        s = series if isinstance(series, Series) else Series(series, X)
        fc = self.fit_config
        t0 = time.perf_counter()
        x, y = self.prepare(s)
        scaler = torch.from_numpy(self.pre.to_array())

        def build() -> ForecastNet:
            model = self.build_model(x.shape[2])
            model.scaler.copy_(scaler)
            return model

        model = train_windows(torch.from_numpy(x), torch.from_numpy(y), build, epochs=fc.epochs, lr=fc.lr,
                              batch_size=fc.batch_size, weight_decay=fc.weight_decay, clip_norm=fc.clip_norm,
                              seed=fc.seed)
        self.model, self.history = model.eval(), s
        self.fit_seconds = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, horizon: Optional[int] = None, history: Optional[Series] = None, *, seed: int = 0) -> Forecast:
        """Forecast ``horizon`` steps after the end of ``history`` (default: the data fitted on).

        A different ``history`` lets a fitted model forecast from a later origin without refitting
        (the scaler keeps the statistics of the data it was fitted on).
        """
        if self.model is None or self.pre is None:
            raise RuntimeError("LSTMForecaster.predict before fit")
        c = self.config
        h = history if history is not None else self.history
        H = horizon or c.horizon
        if c.strategy == "direct" and H > c.horizon:
            raise ValueError(f"a direct model forecasts at most its horizon {c.horizon} steps; asked for {H}")
        if (h.X is None) != (self.pre.x_mean is None):
            raise ValueError("history must have the same covariates as the data the model was fitted on")
        z, Xz = self.pre.transform(h.y, h.X)
        A = channels(z, Xz)
        if len(A) < c.lookback:
            raise DataError(f"history leaves {len(A)} transformed steps; the model needs lookback {c.lookback}")
        window = torch.from_numpy(A[-c.lookback:].astype(np.float32))[None]  # (1, L, C)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if c.strategy == "direct":
                point, lo, hi, paths = self._direct(window, H, gen)
            else:
                point, lo, hi, paths = self._recursive(window, H, gen)
        mean = self.pre.inverse(point, h.y)
        lower = upper = None
        if paths is not None:
            ys = self.pre.inverse(paths, h.y)  # (N, H)
            q = c.quantiles
            lower, upper = np.quantile(ys, q[0], axis=0), np.quantile(ys, q[2], axis=0)
        elif lo is not None:
            # quantile paths inverted level by level: exact without first differences while
            # H <= seasonal lag; otherwise it adds quantiles up (comonotone), erring wide.
            lower, upper = self.pre.inverse(lo, h.y), self.pre.inverse(hi, h.y)
        return Forecast(h.future_index(H), mean, lower, upper, c.level)

    def _direct(self, window, H, gen):
        out = self.model(window)
        mu = out["mu"][:, 0, :H, 0]  # (M, H)
        point = mu.mean(0).numpy().astype(np.float64)
        if "sigma" in out:
            sigma = out["sigma"][:, 0, :H, 0]
            n = self.config.samples
            member = torch.arange(n) % mu.shape[0]
            eps = torch.randn(n, H, generator=gen)
            return point, None, None, (mu[member] + sigma[member] * eps).numpy().astype(np.float64)
        if "q" in out:
            q = out["q"][:, 0, :H, 0].mean(0)  # (H, Q)
            return point, q[:, 0].numpy().astype(np.float64), q[:, -1].numpy().astype(np.float64), None
        return point, None, None, None

    def _recursive(self, window, H, gen):
        M = len(self.model.members)
        # the point path: feed back the ensemble mean
        w = window.clone()
        point, lo, hi = [], [], []
        for _ in range(H):
            out = self.model(w)
            step = out["mu"].mean(0)[:, 0]  # (1, C)
            point.append(float(step[0, 0]))
            if "q" in out:
                q = out["q"].mean(0)[0, 0, 0]  # (Q,) target channel
                lo.append(float(q[0]))
                hi.append(float(q[-1]))
            w = torch.cat([w[:, 1:], step[:, None]], 1)
        point = np.array(point)
        if self.model.loss_kind != "gaussian":
            return point, (np.array(lo) if lo else None), (np.array(hi) if hi else None), None
        # sample paths: each path follows one member and feeds back its own draws
        n = self.config.samples
        member = torch.arange(n) % M
        w = window.expand(n, -1, -1).clone()
        paths = []
        for _ in range(H):
            out = self.model(w)
            mu = out["mu"][member, torch.arange(n), 0]  # (n, C)
            sigma = out["sigma"][member, torch.arange(n), 0]
            draw = mu + sigma * torch.randn(mu.shape, generator=gen)
            paths.append(draw[:, 0])
            w = torch.cat([w[:, 1:], draw[:, None]], 1)
        return point, None, None, torch.stack(paths, 1).numpy().astype(np.float64)

    # ------------------------------------------------------------------ backtest
    def backtest(self, series: Series, *, start: Optional[int] = None, horizon: Optional[int] = None,
                 stride: Optional[int] = None, refit: bool = False, conformal: bool = False,
                 fit: bool = True) -> "BacktestResult":
        """Rolling-origin evaluation: forecasts from origins start, start+stride, … (each ≤ T - horizon).

        The model (and its scaler) is fitted on series[:start] once, or on series[:origin] at
        every origin with ``refit=True``; each forecast sees only the values before its origin.
        Baselines are computed from the same history at every origin.

        fit [True]: False keeps the model already fitted (or attached from a run folder): only
        honest when ``start`` is at or after the end of the data it was trained on.
        conformal [False]: widen or narrow each interval by a factor learned from the earlier
        origins whose actuals are all known by this origin (split-conformal on the scores
        |y - mean| / half-width, with the (n+1) finite-sample correction); the first origins,
        with nothing to learn from, keep the model's interval.
        """
        H = horizon or self.config.horizon
        T = len(series)
        start = start if start is not None else T - H
        stride = stride or H
        if not 0 < start <= T - H:
            raise ValueError(f"backtest start must be in [1, {T - H}] for {T} values and horizon {H}; got {start}")
        origins = list(range(start, T - H + 1, stride))
        folds = []
        t0 = time.perf_counter()
        for k, o in enumerate(origins):
            hist = series.head(o)
            if refit or (k == 0 and fit):
                self.fit(hist)
            fc = self.predict(H, hist)
            if conformal and fc.lower is not None:
                fc = conformal_widen(fc, [f for f in folds if f["origin"] + H <= o], series.y, H)
            actual = series.y[o:o + H]
            row = {"origin": o, "forecast": fc, "raw": fc.raw or fc,
                   "model": M.score(actual, fc.mean, hist.y, series.season, fc.lower, fc.upper)}
            for name, f in M.baselines(hist.y, H, series.season).items():
                row[name] = M.score(actual, f, hist.y, series.season)
            folds.append(row)
        return BacktestResult(folds, H, series, time.perf_counter() - t0)


def conformal_widen(fc: Forecast, past: list, y: np.ndarray, H: int) -> Forecast:
    """Scale fc's interval half-widths by the level-quantile of past folds' |y - mean| / half-width.

    The quantile is the ceil((n + 1)·level)-th smallest of the n past scores (capped at the largest).
    """
    scores = []
    for f in past:
        p = f["raw"]
        act = y[f["origin"]:f["origin"] + H]
        lo_w, hi_w = p.mean - p.lower, p.upper - p.mean
        half = np.where(act >= p.mean, hi_w, lo_w)
        scores.append(np.abs(act - p.mean) / np.maximum(half, 1e-12))
    if not scores:
        return fc
    r = np.concatenate(scores)
    k = min(len(r), int(np.ceil((len(r) + 1) * fc.level)))
    factor = float(np.sort(r)[k - 1])
    return Forecast(fc.index, fc.mean, fc.mean - factor * (fc.mean - fc.lower), fc.mean + factor * (fc.upper - fc.mean),
                    fc.level, raw=fc)  # raw: the model's own interval, scored at later origins


@dataclass
class BacktestResult:
    folds: list  # per origin: {"origin", "forecast", "model": metrics, "<baseline>": metrics}
    horizon: int
    series: Series
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Metric means over the origins, per method (the model first, then the baselines)."""
        methods = [k for k in self.folds[0] if k not in ("origin", "forecast", "raw")]
        out = {}
        for m in methods:
            keys = self.folds[0][m].keys()
            out["LSTM" if m == "model" else m] = {k: float(np.nanmean([f[m][k] for f in self.folds])) for k in keys}
        return out

    def table(self, title: Optional[str] = None) -> str:
        s = self.series
        title = title or (f"{s.target}: {len(self.folds)} origin(s) from {self.folds[0]['origin']}, horizon "
                          f"{self.horizon}, season {s.season}  (means over origins; {self.seconds:.1f} s)")
        return M.format_table(self.summary(), title)
