"""Forecast accuracy and the baselines every forecast is printed beside.

Notation: y (h,) actual values, f (h,) point forecast, lo / hi (h,) interval bounds,
train (n,) the history the forecast was made from, m the seasonal period.

    MAE   = mean |y - f|                       RMSE  = sqrt(mean (y - f)²)
    MAPE  = 100 · mean |y - f| / |y|           sMAPE = 100 · mean 2|y - f| / (|y| + |f|)
    MASE  = MAE / mean_t |train_t - train_{t-m}|   (in-sample seasonal-naive MAE; m = 1: naive)
    coverage = 100 · mean [lo ≤ y ≤ hi]

Baselines (from the history only):
    naive           f_{n+k} = y_n                                   (random walk)
    seasonal naive  f_{n+k} = y_{n+k-m·ceil(k/m)}                   (last season repeated)
    drift           f_{n+k} = y_n + k · (y_n - y_1) / (n - 1)       (line through first and last)

    >>> import numpy as np
    >>> round(mape(np.array([100., 200.]), np.array([110., 180.])), 6)
    10.0
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


def _pair(y, f) -> tuple[np.ndarray, np.ndarray]:
    y, f = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(f, dtype=np.float64).reshape(-1)
    if y.shape != f.shape:
        raise ValueError(f"actuals and forecast differ in length: {y.shape[0]} vs {f.shape[0]}")
    if y.size == 0:
        raise ValueError("no values to score")
    return y, f


def mae(y, f) -> float:
    y, f = _pair(y, f)
    return float(np.mean(np.abs(y - f)))


def rmse(y, f) -> float:
    y, f = _pair(y, f)
    return float(np.sqrt(np.mean((y - f) ** 2)))


def mape(y, f) -> float:
    """Mean absolute percentage error in %; NaN if an actual is 0 (undefined there)."""
    y, f = _pair(y, f)
    if np.any(y == 0):
        return math.nan
    return float(100 * np.mean(np.abs((y - f) / y)))


def smape(y, f) -> float:
    """Symmetric MAPE in % (0..200); a step where actual and forecast are both 0 scores 0."""
    y, f = _pair(y, f)
    den = np.abs(y) + np.abs(f)
    ratio = np.divide(2 * np.abs(y - f), den, out=np.zeros_like(den), where=den > 0)
    return float(100 * np.mean(ratio))


def mase(y, f, train, m: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the (seasonal, lag m) naive forecast on ``train``."""
    y, f = _pair(y, f)
    train = np.asarray(train, dtype=np.float64).reshape(-1)
    m = m if len(train) > m else 1
    if len(train) <= m:
        return math.nan
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    return float(np.mean(np.abs(y - f)) / scale) if scale > 0 else math.nan


def coverage(y, lo, hi) -> float:
    """Percentage of actuals inside [lo, hi]."""
    y, lo = _pair(y, lo)
    _, hi = _pair(y, hi)
    return float(100 * np.mean((lo <= y) & (y <= hi)))


def score(y, f, train, m: int = 1, lo=None, hi=None) -> dict[str, float]:
    """Every metric for one forecast; "coverage" only when an interval is given."""
    out = {"MAE": mae(y, f), "RMSE": rmse(y, f), "MAPE": mape(y, f), "sMAPE": smape(y, f),
           "MASE": mase(y, f, train, m)}
    if lo is not None and hi is not None:
        out["coverage"] = coverage(y, lo, hi)
    return out


# --------------------------------------------------------------------------- baselines


def naive(train, horizon: int) -> np.ndarray:
    train = np.asarray(train, dtype=np.float64)
    return np.full(horizon, train[-1])


def seasonal_naive(train, horizon: int, m: int) -> np.ndarray:
    train = np.asarray(train, dtype=np.float64)
    if m <= 1 or len(train) < m:
        return naive(train, horizon)
    k = np.arange(horizon)
    return train[len(train) - m + (k % m)]


def drift(train, horizon: int) -> np.ndarray:
    train = np.asarray(train, dtype=np.float64)
    slope = (train[-1] - train[0]) / (len(train) - 1) if len(train) > 1 else 0.0
    return train[-1] + slope * np.arange(1, horizon + 1)


def baselines(train, horizon: int, m: int = 1) -> dict[str, np.ndarray]:
    """The three baselines' forecasts, by name (seasonal naive only when m > 1)."""
    out = {"naive": naive(train, horizon)}
    if m > 1:
        out["seasonal naive"] = seasonal_naive(train, horizon, m)
    out["drift"] = drift(train, horizon)
    return out


def format_table(rows: dict[str, dict[str, float]], title: Optional[str] = None) -> str:
    """A plain-text table: one row per method, one column per metric."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    width = max([len(k) for k in rows] + [8])
    lines = [title] if title else []
    lines.append(f"{'':<{width}}  " + "  ".join(f"{c:>9}" for c in cols))
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{'':>9}" if v is None else f"{v:>9.4g}" if not math.isnan(v) else f"{'nan':>9}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
