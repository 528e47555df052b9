"""Sequence classification on variable-length sequences (registers ``lstmkit train --task classify``).

    >>> from lstmkit.apps.classify import SequenceClassifier
    >>> import torch
    >>> model = SequenceClassifier(12, 9, hidden_size=32, bidirectional=True, pooling="attention")
    >>> model(torch.randn(2, 15, 12), torch.tensor([15, 9])).shape
    torch.Size([2, 9])

Pieces: data (built-in sets, CSV / NPZ files), model (lk.LSTM + length-aware pooling), metrics
(accuracy, per-class F1, confusion matrix text and PNG), task (the Trainer task "classify").
"""
from .data import BUILTIN, DataError, SequenceData, load_csv, load_data, load_npz
from .metrics import confusion_matrix, format_report, per_class, plot_confusion, summary
from .model import POOLINGS, AttentionPool, SequenceClassifier, pool_last, pool_max, pool_mean
from .predict import predict, score
from .task import ClassifyConfig, ClassifyTask

__all__ = [
    "BUILTIN", "POOLINGS", "AttentionPool", "ClassifyConfig", "ClassifyTask", "DataError", "SequenceClassifier",
    "SequenceData", "confusion_matrix", "format_report", "load_csv", "load_data", "load_npz", "per_class",
    "plot_confusion", "pool_last", "pool_max", "pool_mean", "predict", "score", "summary",
]
