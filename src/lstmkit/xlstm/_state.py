"""Initial states of lk.sLSTM and lk.mLSTM (their input layouts are lstmkit._layout's, shared
with lk.LSTM).

Shape legend: B batch, L layers, D directions.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from .. import _checks as check
from .._tracing import values_hidden


def initial_state(hx: Any, names: Sequence[str], shapes: Sequence[tuple[int, ...]], batched: bool, weight: Tensor,
                  defaults: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """hx as a tuple of tensors, each shaped as in shapes (the batch dimension, index 1, absent
    for unbatched input); the defaults (batched shapes) when hx is None."""
    if hx is None:
        return tuple(defaults)
    if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
        raise TypeError(f"hx must be a tuple of {len(names)} tensors ({', '.join(names)}), got {type(hx).__name__}"
                        + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else ""))
    state = []
    for name, t, shape in zip(names, hx, shapes):
        expected = shape if batched else shape[:1] + shape[2:]
        check.state_tensor(name, t, tuple(expected), weight)
        if not values_hidden(t):
            check.finite(name, t)
        state.append(t if batched else t.unsqueeze(1))
    return tuple(state)
