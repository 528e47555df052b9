"""What a backend is, and how one is chosen for a forward call.

A backend runs a whole network (all layers and directions) for one RunSpec. It says which
specs it cannot run and why, so that "auto" can pick the fastest one that can, and an
explicit request for one that cannot fails with a reason instead of a wrong answer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

CELLS = ("lstm", "rnn_tanh", "rnn_relu")


@dataclass(frozen=True)
class RunSpec:
    """Everything about a forward call that decides which backend may run it."""

    cell: str  # one of CELLS
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    dropout: float
    training: bool
    record: bool  # every step's gates / states are wanted
    device_type: str  # "cpu", "cuda", ...
    dtype: torch.dtype
    variants: tuple[str, ...] = ()  # names of options beyond torch.nn.LSTM in use


class Backend(ABC):
    name: str = ""

    @abstractmethod
    def unsupported(self, spec: RunSpec) -> Optional[str]:
        """None when this backend can run spec, else a short reason."""

    @abstractmethod
    def run(
        self,
        spec: RunSpec,
        x: Tensor,  # (T, B, I) time-major
        state: tuple[Tensor, ...],  # (h0,) or (h0, c0), each (L*D, B, ·)
        params: Sequence[Sequence[NamedTuple]],  # [layer][direction] -> *LayerParams
        lengths: Optional[Tensor],  # (B,) int64 on CPU, or None
        layer_opts: Optional[Sequence[Sequence[NamedTuple]]] = None,  # [layer][direction] -> LSTMStepOptions
        input_masks: Optional[Sequence[Optional[Tensor]]] = None,  # [layer] -> (B, I_k) or None
    ) -> tuple[Tensor, tuple[Tensor, ...], Optional[NamedTuple]]:
        """Returns out (T, B, D·P), final state tuple (L*D, B, ·), stacked trace or None.

        layer_opts and input_masks come only with specs whose variants the backend supports.
        """


_BACKENDS: dict[str, Backend] = {}
# Preference of "auto", fastest first, per device type; any other device uses "default".
# meta (shapes only) runs the fused kernel's operators, whose fake kernels give the shapes.
_AUTO_ORDER = {
    "cpu": ("fused", "native", "reference"),
    "meta": ("fused", "reference"),
    "default": ("native", "reference"),
}
BACKEND_NAMES = ("auto", "reference", "native", "fused")


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def select_backend(requested: str, spec: RunSpec) -> Backend:
    """The backend to run spec: the requested one, or for "auto" the fastest that supports it."""
    if requested == "auto":
        order = _AUTO_ORDER.get(spec.device_type, _AUTO_ORDER["default"])
        for name in order:
            backend = _BACKENDS.get(name)
            if backend is not None and backend.unsupported(spec) is None:
                return backend
        raise RuntimeError(f"no backend supports this configuration: {spec}")
    backend = _BACKENDS.get(requested)
    if backend is None:
        raise ValueError(
            f"backend {requested!r} is not available here; available: {', '.join(available_backends())}"
        )
    reason = backend.unsupported(spec)
    if reason is not None:
        raise ValueError(f"backend {requested!r} cannot run this configuration: {reason}; use backend='auto'")
    return backend
