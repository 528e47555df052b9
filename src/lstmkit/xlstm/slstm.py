"""lk.sLSTM: the xLSTM paper's scalar-memory cell with torch.nn.LSTM's contract."""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .. import _checks as check
from .._tracing import values_hidden
from . import slstm_fused
from ._base import XLSTMBase
from .slstm_reference import SLSTMGates, SLSTMLayerParams, slstm_layer

BACKENDS = ("auto", "reference", "fused")
STATE_NAMES = ("h0", "c0", "n0", "m0")


class sLSTMResult(NamedTuple):
    """What ``sLSTM(..., return_gates=True)`` returns; unpacks as (output, (h_n, c_n, n_n, m_n), gates)."""

    output: Union[Tensor, PackedSequence]
    state: tuple[Tensor, Tensor, Tensor, Tensor]
    gates: SLSTMGates


class sLSTM(XLSTMBase):
    r"""Multi-layer sLSTM (Beck et al. 2024): exponential gating, normalizer, stabilizer, heads.

    Each layer, each direction, each step t computes (gate order i, f, z, o)::

        ĩ, f̃, z̃, õ = W_ih x_t + b_ih + R(h_{t-1}) + b_hh
        log f_t = log σ(f̃)  (forget_gate="sigmoid")  or  f̃  (forget_gate="exp")
        m_t = max(log f_t + m_{t-1}, ĩ)
        i'_t = exp(ĩ − m_t),  f'_t = exp(log f_t + m_{t-1} − m_t),  z_t = tanh(z̃),  o_t = σ(õ)
        c_t = f'_t c_{t-1} + i'_t z_t,   n_t = f'_t n_{t-1} + i'_t,   h_t = o_t ⊙ c_t / n_t

    R is head-wise ("memory mixing" within a head only): with NH heads of dh = H / NH units,
    unit u's pre-activations see only h_{t-1}[head(u)·dh : head(u)·dh + dh]. Where n_{t-1} = 0
    (an empty memory: the default initial state) m_{t-1} is taken as −∞, so the first step has
    m = ĩ, i' = 1, n = 1 — the official implementation's rule, here per element; h is the same
    as without it, and it keeps 0/0 from ever happening (lstmkit.xlstm.slstm_reference).

    Args:
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
            (between layers, in training), bidirectional=False, device=None, dtype=None: as
            torch.nn.LSTM.
        num_heads (int, default 1): must divide hidden_size.
        forget_gate ("sigmoid" | "exp", default "sigmoid").
        forget_bias (float or None, default 1.0): bias_ih's forget rows start at this value
            (bias_hh's at 0); with forget_gate="exp" it is log f itself. None keeps the uniform
            initialization.
        backend ("auto" | "reference" | "fused"): "reference" is a readable loop with autograd
            (any device); "fused" lstmkit's C++ CPU kernel with a hand-written backward;
            "auto" takes fused where it can run (CPU, float32/float64), else reference.

    Parameters (per layer k, "_reverse" suffix for the backward direction), as torch.nn.LSTM's
    with num_heads=1; rows in gate order i, f, z, o:
        weight_ih_l{k} (4H, I_k); weight_hh_l{k} (4H, dh) — row r of gate block g is unit
        u = r − g·H and holds its weights from its own head's dh units of h_{t-1} (with one head
        (4H, H), torch's shape); bias_ih_l{k}, bias_hh_l{k} (4H,).

    Forward: ``slstm(input, hx=None, *, lengths=None, return_gates=False)``.
        input (T, B, I), (B, T, I) with batch_first, or (T, I) unbatched.
        hx: (h0, c0, n0, m0), each (L·D, B, H) ((L·D, H) unbatched); zeros when None. n0 ≥ 0.
        lengths: (B,) lengths of right-padded sequences: outputs past a length are 0, the final
            state is each sequence's own last step, the reverse direction starts there.
        A PackedSequence input works too (its lengths are used) and gives a PackedSequence output.
        Returns (output, (h_n, c_n, n_n, m_n)), or with return_gates=True an sLSTMResult whose
        gates (SLSTMGates: i, f, z, o, c, n, m, h) are (L, D, T, B, H).

    Example:
        >>> import lstmkit as lk, torch
        >>> out, (h, c, n, m) = lk.sLSTM(3, 8, num_heads=2)(torch.randn(5, 2, 3))
        >>> out.shape, n.shape
        (torch.Size([5, 2, 8]), torch.Size([1, 2, 8]))
    """

    _params_type = SLSTMLayerParams
    _state_names = STATE_NAMES
    _result_type = sLSTMResult
    _repr_defaults = XLSTMBase._repr_defaults + (("forget_bias", 1.0), ("backend", "auto"))

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        num_heads: int = 1,
        forget_gate: str = "sigmoid",
        forget_bias: Optional[float] = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, num_heads,
                         forget_gate)
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float))
                                        or not math.isfinite(forget_bias)):
            raise ValueError(f"forget_bias must be a finite number or None, got {forget_bias!r}")
        self.forget_bias = forget_bias
        self.backend = check.choice("backend", backend, BACKENDS)
        H, dh = hidden_size, self.head_size

        def layer_shapes(sfx: str, layer_input: int) -> dict[str, tuple[int, ...]]:
            shapes = {f"weight_ih{sfx}": (4 * H, layer_input), f"weight_hh{sfx}": (4 * H, dh)}
            if self.bias:
                shapes.update({f"bias_ih{sfx}": (4 * H,), f"bias_hh{sfx}": (4 * H,)})
            return shapes

        self._register_layers(H, layer_shapes, device, dtype)

    def reset_parameters(self) -> None:
        """Uniform in ±1/sqrt(hidden_size) as torch.nn.LSTM, then the forget-gate bias."""
        super().reset_parameters()
        H = self.hidden_size
        if self.bias and self.forget_bias is not None:
            with torch.no_grad():
                for name, w in self.named_parameters():
                    if name.startswith("bias_ih"):
                        w[H:2 * H].fill_(self.forget_bias)
                    elif name.startswith("bias_hh"):
                        w[H:2 * H].zero_()

    def _resolve_backend(self, x: Tensor) -> str:
        if self.backend == "reference":
            return "reference"
        reason = slstm_fused.unsupported(x)
        if self.backend == "fused" and reason is not None:
            raise ValueError(f"backend 'fused' cannot run this call: {reason}; use backend='auto'")
        return "reference" if reason is not None else "fused"

    def _state_shapes(self, B: int) -> list[tuple[int, ...]]:
        return [(self.num_layers * self.num_directions, B, self.hidden_size)] * 4

    def _check_state(self, state: tuple[Tensor, ...], x: Tensor) -> None:
        if not values_hidden(x) and bool((state[2] < 0).any()):
            raise ValueError("n0 (the normalizer state) must be >= 0, got negative values")

    def _layer_fn(self, x: Tensor):
        layer = slstm_fused.fused_slstm_layer if self._resolve_backend(x) == "fused" else slstm_layer
        return functools.partial(layer, forget_gate=self.forget_gate)

    def forward(self, input, hx=None, *, lengths=None, return_gates: bool = False):
        return self._stack_forward(input, hx, lengths, return_gates)
