"""Kernels: the computations behind lk.LSTM / lk.RNN, one module per backend.

Importing this package registers every backend that can run here.
"""
from . import fused, native, reference  # noqa: F401  (registration)
from .backend import BACKEND_NAMES, Backend, RunSpec, available_backends, register_backend, select_backend
from .types import LSTMGates, LSTMLayerParams, RNNLayerParams, RNNStates

__all__ = [
    "BACKEND_NAMES", "Backend", "RunSpec", "available_backends", "register_backend", "select_backend",
    "LSTMGates", "LSTMLayerParams", "RNNLayerParams", "RNNStates",
]
