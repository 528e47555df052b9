"""Learning curves: metrics.jsonl → learning_curve.png (train loss and every eval metric by step)."""
from __future__ import annotations

import os
import sys
from typing import Optional

from .._io import atomic_path
from .checkpoint import CURVE, read_metrics

MISSING_MATPLOTLIB = "learning-curve plot skipped: matplotlib is not installed (pip install 'lstmkit[plot]')"


def plot_runs(runs: dict[str, str], path: str, metric: str = "loss", title: str = "",
              metric_label: str = "") -> Optional[str]:
    """One figure comparing runs: {label: run_dir} → PNG at path (None, with a message, without matplotlib).

    Left panel: training loss by step; right panel (if any run has evals): eval ``metric``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(MISSING_MATPLOTLIB, file=sys.stderr)
        return None
    data = {label: read_metrics(d) for label, d in runs.items()}
    has_eval = any(r.get("split") == "eval" and metric in r for rows in data.values() for r in rows)
    fig, axes = plt.subplots(1, 2 if has_eval else 1, figsize=(10 if has_eval else 5.5, 3.8), squeeze=False)
    for label, rows in data.items():
        train = [(r["step"], r["loss"]) for r in rows if r.get("split") == "train" and "loss" in r]
        if train:
            axes[0][0].plot(*zip(*train), label=label)
        if has_eval:
            ev = [(r["step"], r[metric]) for r in rows if r.get("split") == "eval" and metric in r]
            if ev:
                axes[0][1].plot(*zip(*ev), marker="o", markersize=3, label=label)
    axes[0][0].set(xlabel="step", ylabel="training loss", title="training loss")
    if all(v > 0 for rows in data.values() for r in rows if r.get("split") == "train" for v in [r.get("loss", 1)]):
        axes[0][0].set_yscale("log")
    if has_eval:
        axes[0][1].set(xlabel="step", ylabel=metric_label or metric, title=f"validation: {metric_label or metric}")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format from the extension
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def plot_run(run_dir: str, metric: str = "loss") -> Optional[str]:
    """learning_curve.png inside run_dir."""
    return plot_runs({os.path.basename(os.path.normpath(run_dir)): run_dir}, os.path.join(run_dir, CURVE), metric)
