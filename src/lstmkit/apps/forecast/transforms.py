"""Preprocessing fitted on the training part only, and its exact inverse for forecast paths.

Forward, each step optional, in this order:
    y ──log──▶ y' ──minus a + b·t (training part's least-squares line, t = row)──▶ u
      ──lag-s difference──▶ d ──lag-1 difference──▶ e ──standardise (training mean, std)──▶ z
Covariates are only standardised (their own training mean and std). Differencing drops the
first ``s + diff`` steps; the covariates' rows are dropped with them so z and Xz stay aligned.

Inverse, for the steps n+1 … n+H after a history of n values:
    e = z·std + mean;  d_{n+k} = d_{n+k-1} + e_{n+k};  u_{n+k} = d_{n+k} + u_{n+k-s} (the history,
    or an earlier forecast step once k > s);  y' = u + a + b·(n+k-1);  y = exp(y').
Applied to whole sample paths (N, H), so intervals come out in the original units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .data import DataError


@dataclass
class Preprocessor:
    log: bool = False
    detrend: bool = False  # subtract a straight line fitted to the training part
    seasonal_diff: int = 0  # lag s of the seasonal difference; 0: none
    diff: int = 0  # 0 or 1 first differences
    scale: bool = True
    # fitted statistics (training part only)
    mean: float = 0.0
    std: float = 1.0
    trend: tuple = (0.0, 0.0)  # (a, b): intercept and slope per row
    x_mean: Optional[np.ndarray] = None
    x_std: Optional[np.ndarray] = None
    fitted: bool = False

    def __post_init__(self) -> None:
        if self.diff not in (0, 1):
            raise ValueError(f"diff must be 0 or 1, got {self.diff}")
        if self.seasonal_diff < 0 or self.seasonal_diff == 1:
            raise ValueError(f"seasonal_diff must be 0 (off) or a lag >= 2, got {self.seasonal_diff}")

    @property
    def lost(self) -> int:
        """Leading steps that differencing consumes."""
        return self.seasonal_diff + self.diff

    def _level(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.log:
            if np.any(y <= 0):
                raise DataError(f"log transform needs positive values; the series has minimum {y.min():g}")
            y = np.log(y)
        return y

    def _e(self, y: np.ndarray) -> np.ndarray:
        y = self._level(y)
        if self.detrend:
            a, b = self.trend
            y = y - (a + b * np.arange(len(y)))
        if self.seasonal_diff:
            y = y[self.seasonal_diff:] - y[: -self.seasonal_diff]
        if self.diff:
            y = y[1:] - y[:-1]
        return y

    def fit(self, y: np.ndarray, X: Optional[np.ndarray] = None) -> "Preprocessor":
        """Learn the trend and scaling from the training part (y, X) only."""
        if self.detrend:
            yl = self._level(y)
            b, a = np.polyfit(np.arange(len(yl)), yl, 1)
            self.trend = (float(a), float(b))
        e = self._e(y)
        if len(e) < 2:
            raise DataError(f"{len(y)} training values leave {len(e)} after differencing (lag "
                            f"{self.seasonal_diff} + {self.diff}); need more data or less differencing")
        self.mean, self.std = (float(e.mean()), float(e.std()) or 1.0) if self.scale else (0.0, 1.0)
        if X is not None:
            X = np.asarray(X, dtype=np.float64)
            self.x_mean = X.mean(0) if self.scale else np.zeros(X.shape[1])
            sd = X.std(0) if self.scale else np.ones(X.shape[1])
            self.x_std = np.where(sd > 0, sd, 1.0)
        self.fitted = True
        return self

    def transform(self, y: np.ndarray, X: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(z (T - lost,), Xz (T - lost, C) or None) with the fitted statistics."""
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform before fit")
        z = (self._e(y) - self.mean) / self.std
        Xz = None
        if X is not None:
            if self.x_mean is None:
                raise ValueError("the preprocessor was fitted without covariates")
            Xz = ((np.asarray(X, dtype=np.float64) - self.x_mean) / self.x_std)[self.lost:]
        return z, Xz

    def inverse(self, z: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Forecast paths z (N, H) (or (H,)) → original units, continuing ``history`` (n,)."""
        z = np.asarray(z, dtype=np.float64)
        squeeze = z.ndim == 1
        z = np.atleast_2d(z)
        N, H = z.shape
        h = np.asarray(history, dtype=np.float64)
        h = np.log(h) if self.log else h
        a, b = self.trend if self.detrend else (0.0, 0.0)
        h = h - (a + b * np.arange(len(h)))
        e = z * self.std + self.mean
        if self.seasonal_diff:
            s = self.seasonal_diff
            d_hist = h[s:] - h[:-s]
        else:
            d_hist = h
        if self.diff:
            d = d_hist[-1] + np.cumsum(e, axis=1)
        else:
            d = e
        if self.seasonal_diff:
            s = self.seasonal_diff
            out = np.empty((N, H))
            for k in range(H):  # y'_{n+k} = d_{n+k} + y'_{n+k-s}
                prev = out[:, k - s] if k >= s else np.full(N, h[len(h) - s + k])
                out[:, k] = d[:, k] + prev
        else:
            out = d
        out = out + (a + b * np.arange(len(h), len(h) + H))
        out = np.exp(out) if self.log else out
        return out[0] if squeeze else out

    def to_array(self) -> np.ndarray:
        """The fitted statistics as one vector [mean, std, a, b, x_mean..., x_std...] (stored with the model)."""
        xm = np.zeros(0) if self.x_mean is None else self.x_mean
        xs = np.zeros(0) if self.x_std is None else self.x_std
        return np.concatenate([[self.mean, self.std, *self.trend], xm, xs])

    def load_array(self, v: np.ndarray) -> "Preprocessor":
        v = np.asarray(v, dtype=np.float64)
        c = (len(v) - 4) // 2
        self.mean, self.std, self.trend = float(v[0]), float(v[1]), (float(v[2]), float(v[3]))
        self.x_mean, self.x_std = (v[4:4 + c].copy(), v[4 + c:].copy()) if c else (None, None)
        self.fitted = True
        return self
