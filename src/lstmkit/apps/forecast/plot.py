"""Forecast plot: the history, the forecast with its prediction interval, and the actuals if known."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..._io import atomic_path
from .data import Series
from .forecaster import Forecast


def plot_forecast(path: str, history: Series, forecast: Forecast, actual: Optional[np.ndarray] = None,
                  baselines: Optional[dict[str, np.ndarray]] = None, title: str = "", last: int = 0) -> str:
    """Write a PNG to ``path`` and return it; ``last`` > 0 shows only the last values of history."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ValueError("plotting needs matplotlib: pip install 'lstmkit[plot]'") from None
    n = len(history)
    lo = max(0, n - last) if last else 0
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(history.index[lo:], history.y[lo:], color="0.2", lw=1.2, label="history")
    fi = forecast.index
    if forecast.lower is not None:
        ax.fill_between(fi, forecast.lower, forecast.upper, color="tab:blue", alpha=0.2,
                        label=f"{round(100 * forecast.level)} % interval")
    mk = "o" if len(fi) <= 3 else None  # a forecast of a step or two would be invisible as a line
    if forecast.lower is not None and mk:
        ax.errorbar(fi, forecast.mean, yerr=[forecast.mean - forecast.lower, forecast.upper - forecast.mean],
                    fmt="none", ecolor="tab:blue", alpha=0.5, capsize=4)
    ax.plot(fi, forecast.mean, color="tab:blue", lw=1.6, marker=mk, label="LSTM forecast")
    for (name, b), style, bm in zip((baselines or {}).items(), (":", "--", "-."), ("s", "^", "v")):
        ax.plot(fi, b, ls=style, lw=1, color="0.5", marker=bm if mk else None, ms=4, label=name)
    if actual is not None and len(actual):
        ax.plot(fi[:len(actual)], actual, color="tab:red", lw=1.2, marker="D" if mk else ".", ms=5 if mk else 3,
                label="actual")
    ax.axvline(history.index[-1], color="0.7", lw=0.8)
    ax.set_title(title or f"{history.target}: {len(forecast.mean)}-step forecast")
    ax.set_ylabel(history.target)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=os.path.splitext(path)[1] or ".png") as tmp:  # no half PNG if stopped
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
