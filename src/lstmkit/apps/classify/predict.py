"""Using a trained classifier: logits of every sequence of a data set, and their scores.

    >>> logits = predict(model, data)            # doctest: +SKIP
    >>> metrics, confusion = score(logits, data)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as M
from .data import SequenceData


@torch.no_grad()
def predict(model: nn.Module, data: SequenceData, batch_size: int = 512) -> np.ndarray:
    """Logits (N, C) of every sequence, in batches of similar length (padding trimmed per batch)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    order = np.argsort(data.lengths, kind="stable")
    out: Optional[np.ndarray] = None
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        T = int(data.lengths[idx].max())
        x = torch.from_numpy(np.ascontiguousarray(data.x[idx, :T])).to(dev)
        logits = model(x, torch.from_numpy(data.lengths[idx])).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(data), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    model.train(was_training)
    assert out is not None
    return out


def score(logits: np.ndarray, data: SequenceData) -> tuple[dict[str, float], np.ndarray]:
    """({loss, accuracy, macro_f1, balanced_accuracy}, confusion matrix) of logits on labelled data."""
    C = len(data.classes)
    cm = M.confusion_matrix(data.y, logits.argmax(1), C)
    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(data.y)))
    return {"loss": loss, **M.summary(cm)}, cm
