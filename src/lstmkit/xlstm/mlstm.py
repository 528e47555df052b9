"""lk.mLSTM: the xLSTM paper's matrix-memory cell as a multi-layer module (lk.LSTM's contract)."""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .. import _checks as check
from ._base import XLSTMBase
from .mlstm_forms import FORMS, run_form
from .slstm_reference import log_forget

STATE_NAMES = ("C0", "n0", "m0")


class MLSTMLayerParams(NamedTuple):
    w_ih: Tensor  # (4H + 2NH, I) rows q, k, v, o (H each), ĩ (NH), f̃ (NH)
    b_ih: Optional[Tensor]  # (4H + 2NH,) or None


class MLSTMGates(NamedTuple):
    """Every step's gates and states of mLSTM: the values the computation used.

    Per head (NH values per step): i and f are the stabilized gates i'_t = exp(ĩ_t − m_t) and
    f'_t = exp(log f_t + m_{t-1} − m_t), m the stabilizer, n = |n_tᵀ q_t| the normalizer as it
    enters the denominator max(|n_tᵀ q_t|, exp(−m_t)) + ε. Per unit (H values): o the output
    gate σ(õ_t) and h the output. From a layer each is (T, B, ·); from lk.mLSTM stacked to
    (L, D, T, B, ·) ((L, D, B, T, ·) with batch_first, (L, D, T, ·) unbatched). Steps past a
    sequence's length hold zeros. All three forms record the same values.
    """

    i: Tensor
    f: Tensor
    o: Tensor
    n: Tensor
    m: Tensor
    h: Tensor

    def layer(self, k: int, direction: int = 0) -> "MLSTMGates":
        """The gates of layer k (0-based) and one direction, from a stacked (L, D, ...) result."""
        return MLSTMGates(*(v[k, direction] for v in self))


class mLSTMResult(NamedTuple):
    """What ``mLSTM(..., return_gates=True)`` returns; unpacks as (output, (C_n, n_n, m_n), gates)."""

    output: Union[Tensor, PackedSequence]
    state: tuple[Tensor, Tensor, Tensor]
    gates: MLSTMGates


def _reverse_within_lengths(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Each sequence's first `length` steps in reverse order (padding stays in place): (T, B, ·)."""
    T = x.shape[0]
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(T).unsqueeze(1)  # (T, 1)
    L = lengths.unsqueeze(0)  # (1, B)
    idx = torch.where(steps < L, L - 1 - steps, steps).to(x.device)  # (T, B); an involution
    return x.gather(0, idx.unsqueeze(-1).expand_as(x))


def mlstm_layer(x: Tensor, C0: Tensor, n0: Tensor, m0: Tensor, p: MLSTMLayerParams, lengths: Optional[Tensor] = None,
                reverse: bool = False, record: bool = False, *, num_heads: int, forget_gate: str = "sigmoid",
                form: str = "chunkwise", chunk_size: int = 64
                ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor], Optional[MLSTMGates]]:
    """One mLSTM layer in one direction. x (T, B, I); C0 (B, NH, d, d), n0 (B, NH, d), m0 (B, NH).

    Steps past a sequence's length are made no-ops (ĩ = −∞, log f = 0: the state passes through
    unchanged), so every form ends on each sequence's own last step; their outputs are zeroed.
    The reverse direction runs each sequence reversed within its length.
    Returns out (T, B, H), (C_n, n_n, m_n), and MLSTMGates (each (T, B, ·)) with record=True.
    """
    if reverse:
        x = _reverse_within_lengths(x, lengths)
    T, B, _ = x.shape
    NH = num_heads
    H = (p.w_ih.shape[0] - 2 * NH) // 4
    d = H // NH
    proj = F.linear(x, p.w_ih, p.b_ih)  # (T, B, 4H + 2NH)
    q, k, v, o_pre = proj[..., :4 * H].reshape(T, B, 4, NH, d).permute(2, 1, 3, 0, 4).unbind(0)  # each (B, NH, T, d)
    k = k / math.sqrt(d)
    i_pre, f_pre = proj[..., 4 * H:].reshape(T, B, 2, NH).permute(2, 1, 3, 0).unbind(0)  # each (B, NH, T)
    log_f = log_forget(f_pre, forget_gate)
    active = None
    if lengths is not None:
        active = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(x.device)  # (B, T)
        a = active.unsqueeze(1)  # (B, 1, T)
        i_pre = torch.where(a, i_pre, torch.full_like(i_pre, float("-inf")))
        log_f = torch.where(a, log_f, torch.zeros_like(log_f))
    h_tilde, (C, n, m), *steps = run_form(form, q, k, v, i_pre, log_f, (C0, n0, m0), chunk_size, record)
    o = torch.sigmoid(o_pre)  # (B, NH, T, d)
    h = (o * h_tilde).permute(2, 0, 1, 3).reshape(T, B, H)  # (T, B, H)
    trace = None
    if record:
        per_head = [v.permute(2, 0, 1) for v in steps[0]]  # i, f, m, |nq|: (B, NH, T) -> (T, B, NH)
        o_units = o.permute(2, 0, 1, 3).reshape(T, B, H)
        trace = MLSTMGates(per_head[0], per_head[1], o_units, per_head[3], per_head[2], h)
    if active is not None:
        live = active.T.unsqueeze(-1)  # (T, B, 1)
        h = torch.where(live, h, torch.zeros_like(h))
        if trace is not None:
            trace = MLSTMGates(*(torch.where(live, v, torch.zeros_like(v)) for v in trace))
    if reverse:
        h = _reverse_within_lengths(h, lengths)
        if trace is not None:
            trace = MLSTMGates(*(_reverse_within_lengths(v, lengths) for v in trace))
    return h, (C, n, m), trace


class mLSTM(XLSTMBase):
    r"""Multi-layer mLSTM (Beck et al. 2024): matrix memory, covariance update, no recurrence in h.

    Each layer and direction, per head (d = H / NH units), per step t::

        q_t, k_t, v_t = W_q x_t + b_q, (W_k x_t + b_k)/√d, W_v x_t + b_v      (per head: d each)
        ĩ_t, f̃_t = w_i x_t + b_i, w_f x_t + b_f                               (one scalar per head)
        o_t = σ(W_o x_t + b_o)
        log f_t = log σ(f̃_t)  (forget_gate="sigmoid")  or  f̃_t  (forget_gate="exp")
        m_t = max(log f_t + m_{t-1}, ĩ_t);  i'_t = exp(ĩ_t − m_t);  f'_t = exp(log f_t + m_{t-1} − m_t)
        C_t = f'_t C_{t-1} + i'_t v_t k_tᵀ,   n_t = f'_t n_{t-1} + i'_t k_t
        h_t = o_t ⊙ C_t q_t / (max(|n_tᵀ q_t|, exp(−m_t)) + ε)

    computed in one of three forms (lstmkit.xlstm.mlstm_forms, which also says where and why it
    deviates from the paper: ε = 1e-6, and an empty memory's m is −∞):
    "chunkwise" (default: the parallel form over chunks of ``chunk_size`` steps, the state
    carried between chunks; linear in T), "parallel" (quadratic in T), "recurrent" (a loop).

    Args:
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
            (between layers), bidirectional=False, device=None, dtype=None.
        num_heads (int, default 1): must divide hidden_size.
        forget_gate ("sigmoid" | "exp", default "sigmoid").
        form ("chunkwise" | "parallel" | "recurrent"), chunk_size (int, default 64).

    Parameters (per layer k, "_reverse" for the backward direction): weight_ih_l{k}
        (4H + 2NH, I_k) with rows q, k, v, o (H each) then ĩ and f̃ (NH each), bias_ih_l{k}
        (4H + 2NH,). Initialization: uniform ±1/√H, forget-gate biases 3 … 6 across heads (a
        long memory at the start, as the official code), input-gate biases 0.

    Forward: ``mlstm(input, hx=None, *, lengths=None, return_gates=False)`` -> (output, (C_n, n_n, m_n)).
        input (T, B, I), (B, T, I) with batch_first, or (T, I) unbatched; output (·, ·, D·H).
        hx: (C0, n0, m0) shaped (L·D, B, NH, d, d), (L·D, B, NH, d), (L·D, B, NH) (no B when
        unbatched); zeros when None. Passing the returned state to the next call continues the
        sequence exactly (unidirectional).
        lengths: as lk.LSTM: outputs past a length are 0, the final state is each sequence's
        own last step, the reverse direction starts there.
        A PackedSequence input works too (its lengths are used) and gives a PackedSequence output.
        return_gates=True returns an mLSTMResult whose gates (MLSTMGates: i, f, n, m per head;
        o, h per unit) are (L, D, T, B, ·): the values the computation used, the same from every form.

    Example:
        >>> import lstmkit as lk, torch
        >>> out, (C, n, m) = lk.mLSTM(3, 8, num_heads=2)(torch.randn(5, 2, 3))
        >>> out.shape, C.shape
        (torch.Size([5, 2, 8]), torch.Size([1, 2, 2, 4, 4]))
    """

    _repr_defaults = XLSTMBase._repr_defaults + (("form", "chunkwise"), ("chunk_size", 64))
    _state_names = STATE_NAMES
    _result_type = mLSTMResult

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
        form: str = "chunkwise",
        chunk_size: int = 64,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, num_heads,
                         forget_gate)
        self.form = check.choice("form", form, FORMS)
        self.chunk_size = check.positive_int("chunk_size", chunk_size)
        rows = 4 * hidden_size + 2 * num_heads

        def layer_shapes(sfx: str, layer_input: int) -> dict[str, tuple[int, ...]]:
            return {f"weight_ih{sfx}": (rows, layer_input), **({f"bias_ih{sfx}": (rows,)} if self.bias else {})}

        self._register_layers(hidden_size, layer_shapes, device, dtype)

    def reset_parameters(self) -> None:
        """Uniform ±1/√H, then the input-gate biases 0 and the forget-gate biases 3 … 6 across heads."""
        super().reset_parameters()
        H, NH = self.hidden_size, self.num_heads
        with torch.no_grad():
            for name, w in self.named_parameters():
                if name.startswith("bias_ih"):
                    w[4 * H:4 * H + NH].zero_()
                    w[4 * H + NH:].copy_(torch.linspace(3.0, 6.0, NH))

    def _make_layer_params(self, named: dict[str, Tensor]) -> MLSTMLayerParams:
        return MLSTMLayerParams(named["weight_ih"], named.get("bias_ih"))

    def _state_shapes(self, B: int) -> list[tuple[int, ...]]:
        LD, NH, d = self.num_layers * self.num_directions, self.num_heads, self.head_size
        return [(LD, B, NH, d, d), (LD, B, NH, d), (LD, B, NH)]

    def _layer_fn(self, x: Tensor):
        return functools.partial(mlstm_layer, num_heads=self.num_heads, forget_gate=self.forget_gate, form=self.form,
                                 chunk_size=self.chunk_size)

    def forward(self, input, hx=None, *, lengths=None, return_gates: bool = False):
        return self._stack_forward(input, hx, lengths, return_gates)
