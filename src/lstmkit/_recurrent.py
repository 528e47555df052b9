"""Shared plumbing of lk.LSTM and lk.RNN (and, through StackedRecurrentBase, of lk.sLSTM and
lk.mLSTM): parameters, input layouts, validation, dispatch.

What lives here is everything that is not the recurrence itself: torch.nn.RNNBase's parameter
names and initialization, batch_first / unbatched / PackedSequence handling, right-padded
lengths, initial states, and the choice of backend. The recurrences are in lstmkit.kernels.

Shape legend: T steps, B batch, I input_size, H hidden_size, P = proj_size or H,
L num_layers, D = 2 if bidirectional else 1.
"""
from __future__ import annotations

import contextlib
import math
import re
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Optional

import torch
from torch import Tensor, nn

from . import _checks as check
from ._layout import prepare_input, restore_output, restore_trace
from ._torch_compat import graph_capture_backend
from ._tracing import values_hidden
from .kernels import BACKEND_NAMES, RunSpec, select_backend


class StackedRecurrentBase(nn.Module):
    """What every multi-layer recurrent module shares (lk.LSTM, lk.RNN, lk.sLSTM, lk.mLSTM): the
    size checks, torch.nn.RNNBase's per-layer parameter names ("weight_ih_l{k}", "_reverse"
    suffix), their uniform ±1/sqrt(hidden_size) initialization and the [layer][direction] view of
    them that the kernels take. Subclasses say which parameters a layer has (_register_layers)
    and how they make one layer's params (_params_type / _make_layer_params)."""

    _params_type: type = tuple

    def _check_sizes(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                     dropout: float, bidirectional: bool) -> None:
        self.input_size = check.positive_int("input_size", input_size)
        self.hidden_size = check.positive_int("hidden_size", hidden_size)
        self.num_layers = check.positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = check.probability("dropout", dropout)
        self.bidirectional = bool(bidirectional)

    def _register_layers(self, output_size: int, layer_shapes: Callable[[str, int], dict[str, tuple[int, ...]]],
                         device: Any = None, dtype: Any = None) -> None:
        """Register layer_shapes(suffix, layer_input) for every layer and direction (a layer above
        the first reads output_size·D features), then reset_parameters()."""
        factory = {"device": device, "dtype": dtype}
        D = self.num_directions
        self._param_names: list[list[list[str]]] = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else output_size * D
            directions = []
            for direction in range(D):
                shapes = layer_shapes(f"_l{layer}" + ("_reverse" if direction else ""), layer_input)
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                directions.append(list(shapes))
            self._param_names.append(directions)
        # (name, name without its layer suffix) per layer and direction: every forward maps them
        self._param_bases = [[[(n, _base_name(n)) for n in names] for names in layer] for layer in self._param_names]
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """torch.nn.RNNBase's initialization: every parameter uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for w in self.parameters():
                w.uniform_(-bound, bound)

    def _layer_params(self) -> list[list[NamedTuple]]:
        """Parameters as [layer][direction] -> LayerParams, with None for absent ones."""
        bases = getattr(self, "_param_bases", None)  # absent from modules pickled before it existed
        if bases is None:
            bases = [[[(n, _base_name(n)) for n in names] for names in layer] for layer in self._param_names]
        return [[self._make_layer_params({base: getattr(self, n) for n, base in pairs}) for pairs in layer]
                for layer in bases]

    def _make_layer_params(self, named: dict[str, Tensor]) -> NamedTuple:
        """One layer and direction's LayerParams from its parameters keyed by name without suffix."""
        fields = [named.get(f) for f in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
        return self._params_type(*fields[: len(self._params_type._fields)])


class RecurrentBase(StackedRecurrentBase):
    """Base of the multi-layer recurrent modules; subclasses set the cell and its state."""

    _gate_count = 1  # rows of weight_ih per hidden unit: 4 for the LSTM's i, f, g, o
    _state_names: tuple[str, ...] = ("h0",)

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.cell = cell
        self._check_sizes(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
        self.proj_size = proj_size
        self.backend = check.choice("backend", backend, BACKEND_NAMES)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout acts between recurrent layers, so with num_layers=1 it has no effect "
                f"(dropout={self.dropout}, num_layers=1)",
                stacklevel=3,
            )
        G, H, P = self._gate_count, hidden_size, self.state_size

        def layer_shapes(sfx: str, layer_input: int) -> dict[str, tuple[int, ...]]:
            shapes = {f"weight_ih{sfx}": (G * H, layer_input), f"weight_hh{sfx}": (G * H, P)}
            if self.bias:
                shapes.update({f"bias_ih{sfx}": (G * H,), f"bias_hh{sfx}": (G * H,)})
            if proj_size:
                shapes[f"weight_hr{sfx}"] = (proj_size, H)
            shapes.update(self._extra_param_shapes(sfx))
            return shapes

        self._register_layers(P, layer_shapes, device, dtype)

    @property
    def state_size(self) -> int:
        """Size of h: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """torch.nn.RNNBase's view: per layer and direction, its parameters in order."""
        return [[getattr(self, n) for n in names] for layer in self._param_names for names in layer]

    def _extra_param_shapes(self, suffix: str) -> dict[str, tuple[int, ...]]:
        """Parameters beyond torch's for one layer and direction (the LSTM variants add some)."""
        return {}

    def _step_options(self, T: int, B: int, like: Tensor) -> tuple[Optional[list], Optional[list]]:
        """Per-call (layer_opts, input_masks) of the variants, or (None, None) for a plain call."""
        return None, None

    def _state_shapes(self, B: Optional[int]) -> tuple[tuple[int, ...], ...]:
        """Expected shapes of the initial state tensors (h0 and, for the LSTM, c0)."""
        lead = (self.num_layers * self.num_directions,) + ((B,) if B is not None else ())
        sizes = (self.state_size, self.hidden_size)[: len(self._state_names)]
        return tuple(lead + (s,) for s in sizes)

    def _initial_state(self, hx: Any, B: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        weight = self.weight_ih_l0
        shapes = self._state_shapes(B if batched else None)
        if hx is None:
            return tuple(torch.zeros(s[:1] + (B,) + s[-1:], dtype=like.dtype, device=like.device) for s in shapes)
        parts = (hx,) if len(shapes) == 1 and isinstance(hx, Tensor) else hx
        if not isinstance(parts, (tuple, list)) or len(parts) != len(shapes):
            names = " and ".join(self._state_names)
            raise TypeError(f"hx must be {'a tuple (h0, c0)' if len(shapes) == 2 else 'a tensor h0'} ({names}), got {type(hx).__name__}")
        state = []
        for name, t, shape in zip(self._state_names, parts, shapes):
            check.state_tensor(name, t, shape, weight)
            if not values_hidden(t):
                check.finite(name, t)
            state.append(t if batched else t.unsqueeze(1))
        return tuple(state)

    def _variants(self) -> tuple[str, ...]:
        """Names of options beyond torch's in use; backends that lack them are not chosen."""
        return ()

    def _run_spec(self, record: bool, like: Tensor) -> RunSpec:
        """What decides the backend of a call on tensors of like's dtype and device."""
        return RunSpec(
            cell=self.cell, num_layers=self.num_layers, bidirectional=self.bidirectional, bias=self.bias,
            proj_size=self.proj_size, dropout=self.dropout, training=self.training, record=record,
            device_type=like.device.type, dtype=like.dtype, variants=self._variants(),
        )

    def _run(self, input: Any, hx: Any, lengths: Any, record: bool):
        """Validate, bring to time-major padded form, dispatch, and restore the caller's layout."""
        weight = self.weight_ih_l0
        prep = prepare_input(input, self.input_size, self.batch_first, weight, lengths)
        x, batched = prep.x, prep.batched  # (T, B, I)
        T, B = x.shape[0], x.shape[1]
        state = self._initial_state(hx, B, batched, x)
        spec = self._run_spec(record, x)
        backend = select_backend(graph_capture_backend(self.backend, spec), spec)
        layer_opts, input_masks = self._step_options(T, B, x)
        extra = {} if layer_opts is None and input_masks is None else {"layer_opts": layer_opts, "input_masks": input_masks}
        out, state_n, trace = backend.run(spec, x, state, self._layer_params(), prep.lengths, **extra)
        if not batched:
            state_n = tuple(s.squeeze(1) for s in state_n)
        return restore_output(out, prep, self.batch_first), state_n, restore_trace(trace, batched, self.batch_first)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False), ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s


# 'weight_ih_l2_reverse' -> 'weight_ih'
_BASE_NAME = re.compile(r"_l\d+(_reverse)?$")


def _base_name(name: str) -> str:
    return _BASE_NAME.sub("", name)


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """module in eval mode inside the block, then back in the mode it was in (export, streaming)."""
    was_training = module.training
    module.train(False)
    try:
        yield module
    finally:
        module.train(was_training)
