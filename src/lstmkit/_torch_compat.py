"""What code written for torch.nn.LSTM / nn.RNN reaches for besides forward, on lk.LSTM / lk.RNN.

Why lk.LSTM is not a subclass of torch.nn.LSTM (so ``isinstance(m, nn.LSTM)`` is False):

- torch.compile's Dynamo refuses every ``isinstance(m, (nn.RNN, nn.GRU, nn.LSTM))`` module
  ("Dynamo does not support RNN, GRU, or LSTM", unless ``torch._dynamo.config.allow_rnn``): a
  subclass would make ``torch.compile(model, fullgraph=True)`` fail on any model holding one.
- Code that dispatches on ``nn.LSTM`` assumes torch's parameters and equations (four gate
  blocks, no peephole, no LayerNorm): torch.ao's structured pruning splits ``weight_hh_l{k}``
  into four blocks, its FX quantization rebuilds the module as torch's quantizable LSTM from
  the plain equations. A coupled lk.LSTM has three blocks; a peephole or LayerNorm one computes
  something else. isinstance would let such code run and be silently wrong.
- The type test that matters most does not look at isinstance anyway: quantize_dynamic picks
  modules by exact type (``type(m) in qconfig_spec``), so a subclass would still be skipped
  (lstmkit handles quantize_dynamic itself: see _torch_quantize).

What type-dispatching code should do: test ``isinstance(m, (nn.LSTM, lk.LSTM))`` (likewise
``(nn.RNN, lk.RNN)``, ``(nn.LSTMCell, lk.LSTMCell)``). Loops that initialise weights by name
(``weight_ih``, ``weight_hh``, ``bias_``) then work unchanged: the names are torch's.

This module also decides which backend runs while a graph is being recorded by a tool that only
understands torch's own operators (graph_capture_backend).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .kernels import RunSpec, select_backend

# torch.nn.RNNBase's mode for each lstmkit cell (what cuDNN and torch.nn code key on).
_MODES = {"lstm": "LSTM", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}
# Gate blocks per hidden unit in torch's layout for each mode.
_TORCH_GATES = {"LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}
_TORCH_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


# --------------------------------------------------------------------------- graph capture


def _onnx_export_flag() -> Callable[[], bool]:
    """A cheap test for "torch.onnx.export is running" (either exporter).

    torch.onnx.is_in_onnx_export() imports two modules on every call (~4 us); this runs in
    every forward, one-step decoding included, so the two flags are read directly when their
    modules are where torch 2.x keeps them, and through the public function otherwise.
    """
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:
        return torch.onnx.is_in_onnx_export
    return lambda: bool(GLOBALS.in_onnx_export or _flags._is_onnx_exporting)


_onnx_flag: Optional[Callable[[], bool]] = None


def onnx_exporting() -> bool:
    """True inside torch.onnx.export (TorchScript-based or dynamo=True)."""
    global _onnx_flag
    if "torch.onnx" not in sys.modules:  # never imported: no export can be running
        return False
    if _onnx_flag is None:
        _onnx_flag = _onnx_export_flag()
    return _onnx_flag()


def recording_torch_graph() -> bool:
    """True while torch.jit.trace or torch.onnx.export records the forward as torch operators."""
    return torch.jit.is_tracing() or onnx_exporting()


def graph_capture_backend(requested: str, spec: RunSpec) -> str:
    """The backend to run spec on: ``requested``, unless a graph of torch operators is recorded.

    torch.jit.trace and both torch.onnx exporters see only what runs through torch operators:
    lstmkit's fused kernel is invisible to the TorchScript tracer (its caches make two traces
    differ) and unknown to the ONNX exporters. While they record, "auto" and "fused" run on
    torch's own kernel (one ``aten::lstm`` node, which both exporters turn into ONNX's LSTM
    operator and which keeps the sequence length free in a trace) when it can run the call, else
    on the reference loop (plain torch ops, unrolled over the traced length). An explicit
    "native" or "reference" is kept.
    """
    if requested in ("native", "reference") or torch.compiler.is_dynamo_compiling():
        return requested  # Dynamo (torch.compile, strict export) traces lstmkit's operators themselves
    if not recording_torch_graph():
        return requested
    try:
        return select_backend("native", spec).name
    except ValueError:  # variants or recorded gates: torch's kernel cannot compute them
        return "reference"


# --------------------------------------------------------------------------- torch.jit.script


class NotScriptable:
    """torch.jit.script refuses lstmkit's modules with one message saying what to use instead."""

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on the module and on every submodule before compiling.
        name = f"lk.{type(self).__name__}"
        raise TypeError(
            f"torch.jit.script cannot compile {name}: its forward takes keyword-only options "
            "(lengths=, return_gates=) and chooses a backend in Python, which TorchScript does not "
            f"support. Use torch.compile(model) or torch.export.export(model, args) instead "
            f"(torch.jit.trace(model, example_inputs) records a TorchScript graph of {name}'s "
            "plain call; lstmkit.export_onnx writes ONNX)."
        )


# --------------------------------------------------------------------------- torch.nn.RNNBase's surface


class RNNBaseCompat(NotScriptable):
    """torch.nn.RNNBase's public and widely read attributes, for lk.LSTM and lk.RNN.

    The host class provides ``cell``, ``_param_names`` ([layer][direction] -> names),
    ``_gate_count`` and torch's constructor attributes.
    """

    @property
    def mode(self) -> str:
        """torch.nn.RNNBase's mode: "LSTM", "RNN_TANH" or "RNN_RELU"."""
        return _MODES[self.cell]

    @property
    def _all_weights(self) -> list[list[str]]:
        """Parameter names per layer and direction, in order (torch.nn.RNNBase's _all_weights)."""
        return [list(names) for layer in self._param_names for names in layer]

    @property
    def _flat_weights_names(self) -> list[str]:
        """Every parameter name in torch's order: per layer, per direction, w_ih, w_hh, [b_ih,
        b_hh], [w_hr], then lstmkit's variant parameters (peephole, LayerNorm) of that direction."""
        return [n for names in self._all_weights for n in names]

    @property
    def _flat_weights(self) -> list[Optional[Tensor]]:
        """The tensors named by _flat_weights_names, read now.

        torch.nn.RNNBase keeps this list as state and refreshes it in _apply and __setattr__;
        here it is read from the module on every access, so it is right after .to(), .double(),
        load_state_dict and weights replaced by assignment (as weight-drop wrappers do).
        """
        return [getattr(self, n, None) for n in self._flat_weights_names]

    # torch.nn.RNNBase's validation helpers, which subclasses of torch's modules call from their
    # own forward; same signatures and results, lstmkit's ValueError in place of RuntimeError.

    def check_input(self, input: Tensor, batch_sizes: Optional[Tensor]) -> None:
        expected_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_dim:
            raise ValueError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise ValueError(f"input's last dimension must be input_size={self.input_size}, got {input.size(-1)}")

    def get_expected_hidden_size(self, input: Tensor, batch_sizes: Optional[Tensor]) -> tuple[int, int, int]:
        if batch_sizes is not None:
            batch = int(batch_sizes[0])
        else:
            batch = input.size(0) if self.batch_first else input.size(1)
        return (self.num_layers * self.num_directions, batch, self.proj_size or self.hidden_size)

    def get_expected_cell_size(self, input: Tensor, batch_sizes: Optional[Tensor]) -> tuple[int, int, int]:
        L, batch, _ = self.get_expected_hidden_size(input, batch_sizes)
        return (L, batch, self.hidden_size)

    def check_hidden_size(self, hx: Tensor, expected_hidden_size: tuple[int, ...],
                          msg: str = "Expected hidden size {}, got {}") -> None:
        if hx.size() != expected_hidden_size:
            raise ValueError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: Any, batch_sizes: Optional[Tensor]) -> None:
        self.check_input(input, batch_sizes)
        if self.mode == "LSTM":
            self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes), "Expected hidden[0] size {}, got {}")
            self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes), "Expected hidden[1] size {}, got {}")
        else:
            self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx: Any, permutation: Optional[Tensor]) -> Any:
        """The state reordered along the batch dimension (PackedSequence's sorting)."""
        if permutation is None:
            return hx
        if self.mode == "LSTM":
            return hx[0].index_select(1, permutation), hx[1].index_select(1, permutation)
        return hx.index_select(1, permutation)

    def _init_flat_weights(self) -> None:
        """torch.nn.RNNBase rebuilds its cached weight list here; _flat_weights has no cache."""

    def _torch_layout(self) -> bool:
        """Parameters exactly as torch.nn.RNNBase lays them out (no variant parameters or shapes)."""
        return self._gate_count == _TORCH_GATES[self.mode] and all(
            n.rsplit("_l", 1)[0] in _TORCH_PARAMS for n in self._flat_weights_names
        )

    def flatten_parameters(self) -> None:
        """torch.nn.RNNBase.flatten_parameters: one contiguous cuDNN weight buffer.

        On CUDA, cuDNN copies the weights into one buffer on every call unless they already
        share one; this moves the parameters into such a buffer once (the same torch call as
        torch.nn.LSTM's), and the native backend then hands cuDNN those parameters. Everywhere
        else it does nothing, as torch.nn.LSTM's does: CPU kernels (oneDNN, lstmkit's fused
        kernel) read the weights where they are, and configurations cuDNN does not run (lstmkit's
        variants) have nothing to pack.
        """
        weights = self._flat_weights
        if not self._torch_layout() or not all(isinstance(w, Tensor) for w in weights):
            return
        first = weights[0]
        if not all(w.dtype == first.dtype and w.is_cuda and torch.backends.cudnn.is_acceptable(w) for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights):  # shared weights cannot be packed
            return
        from torch.backends.cudnn import rnn

        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                num_weights = (4 if self.bias else 2) + (1 if self.proj_size else 0)
                torch._cudnn_rnn_flatten_weight(
                    weights, num_weights, self.input_size, rnn.get_cudnn_mode(self.mode), self.hidden_size,
                    self.proj_size, self.num_layers, self.batch_first, bool(self.bidirectional),
                )
