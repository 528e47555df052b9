"""What lk.sLSTM and lk.mLSTM share beyond lstmkit._recurrent.StackedRecurrentBase: heads, the
forget gate's kind, and a repr that lists the options off their defaults."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .. import _checks as check
from .. import _layout as input_layout
from .._recurrent import StackedRecurrentBase
from ..kernels.stack import run_stack
from . import _state
from .slstm_reference import FORGET_GATES


class XLSTMBase(StackedRecurrentBase):
    """Checks and stores torch.nn.LSTM's size options plus num_heads (must divide hidden_size)
    and forget_gate; subclasses then register their layers (StackedRecurrentBase._register_layers)."""

    _repr_defaults: tuple[tuple[str, object], ...] = (
        ("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False),
        ("num_heads", 1), ("forget_gate", "sigmoid"))

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 dropout: float, bidirectional: bool, num_heads: int, forget_gate: str) -> None:
        super().__init__()
        self._check_sizes(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self.num_heads = check.positive_int("num_heads", num_heads)
        if hidden_size % num_heads:
            raise ValueError(f"num_heads must divide hidden_size={hidden_size}, got num_heads={num_heads}")
        self.forget_gate = check.choice("forget_gate", forget_gate, FORGET_GATES)

    _state_names: tuple[str, ...] = ()
    _result_type: type = tuple  # (output, state, gates) with return_gates=True

    def _state_shapes(self, B: int) -> Sequence[tuple[int, ...]]:
        """Batched shapes of the initial state tensors, each (L·D, B, ·)."""
        raise NotImplementedError

    def _check_state(self, state: tuple[Tensor, ...], x: Tensor) -> None:
        """Value checks of a given initial state beyond shape and finiteness (none by default)."""

    def _layer_fn(self, x: Tensor) -> Callable[..., Any]:
        """The per-layer, per-direction function run_stack calls for this input."""
        raise NotImplementedError

    def _stack_forward(self, input: Any, hx: Any, lengths: Any, return_gates: bool) -> Any:
        """Layout in, initial state, every layer and direction, layout out: the forward of both cells."""
        weight = self.weight_ih_l0
        prep = input_layout.prepare_input(input, self.input_size, self.batch_first, weight, lengths)
        x = prep.x  # (T, B, I)
        shapes = self._state_shapes(x.shape[1])
        zeros = [torch.zeros(s, dtype=x.dtype, device=x.device) for s in shapes]
        state = _state.initial_state(hx, self._state_names, shapes, prep.batched, weight, zeros)
        if hx is not None:
            self._check_state(state, x)
        out, state_n, trace = run_stack(self._layer_fn(x), x, state, self._layer_params(), prep.lengths, self.dropout,
                                        self.training, return_gates)
        out = input_layout.restore_output(out, prep, self.batch_first)
        if not prep.batched:
            state_n = tuple(s.squeeze(1) for s in state_n)
        if return_gates:
            return self._result_type(out, state_n, input_layout.restore_trace(trace, prep.batched, self.batch_first))
        return out, state_n

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in self._repr_defaults:
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s
