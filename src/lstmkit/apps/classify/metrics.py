"""Classification metrics: confusion matrix, accuracy, per-class precision / recall / F1, a PNG.

Conventions: ``confusion[i, j]`` counts sequences of true class i predicted as class j.
A class that is never predicted (or never present) has precision (recall) 0 by convention,
as in scikit-learn's ``zero_division=0``; macro F1 averages over the classes present in y_true.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows true class, columns predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support (C,) from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0).astype(np.float64), cm.sum(1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def summary(cm: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1 (over classes present) and balanced_accuracy (mean recall over present)."""
    pc, total = per_class(cm), cm.sum()
    present = pc["support"] > 0
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "macro_f1": float(pc["f1"][present].mean()) if present.any() else 0.0,
        "balanced_accuracy": float(pc["recall"][present].mean()) if present.any() else 0.0,
    }


def format_report(cm: np.ndarray, classes: Sequence[str]) -> str:
    """Per-class precision / recall / F1 / support, the summary, then the confusion matrix, as text."""
    pc, s = per_class(cm), summary(cm)
    w = max([len(str(c)) for c in classes] + [5])
    lines = [f"{'class':<{w}}  precision  recall     f1  support"]
    for k, name in enumerate(classes):
        lines.append(f"{str(name):<{w}}  {pc['precision'][k]:9.3f}  {pc['recall'][k]:6.3f}  {pc['f1'][k]:5.3f}"
                     f"  {pc['support'][k]:7d}")
    lines.append(f"accuracy {s['accuracy']:.4f}  macro F1 {s['macro_f1']:.4f}  "
                 f"balanced accuracy {s['balanced_accuracy']:.4f}  ({int(cm.sum())} sequences)")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    cw = max(len(str(int(cm.max()))) if cm.size else 1, 3)
    short = [str(c)[:cw] for c in classes]
    lines.append(" " * w + "  " + " ".join(f"{c:>{cw}}" for c in short))
    for k, name in enumerate(classes):
        lines.append(f"{str(name):<{w}}  " + " ".join(f"{v:>{cw}d}" for v in cm[k]))
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str, title: str = "") -> Optional[str]:
    """Write the confusion matrix as a PNG (counts in each cell, colour by row-normalized rate).

    Returns path, or None (with a message on stderr) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("confusion-matrix plot skipped: matplotlib is not installed (pip install 'lstmkit[plot]')",
              file=sys.stderr)
        return None
    C = len(classes)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # row-normalized: recall on the diagonal
    size = max(4.0, 0.55 * C + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(C):
        for j in range(C):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(C), [str(c) for c in classes], rotation=45 if C > 4 else 0, ha="right" if C > 4 else "center")
    ax.set_yticks(range(C), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = summary(cm)["accuracy"]
    ax.set_title((title + "  " if title else "") + f"accuracy {acc:.2%}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
