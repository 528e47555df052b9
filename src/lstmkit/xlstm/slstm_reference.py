r"""sLSTM's readable reference: one step of the stabilized equations, and a loop over steps.

Shape legend: T steps, B batch, I input features, H hidden size, NH heads, dh = H / NH.

Per step, with pre-activations from x_t and h_{t-1} (gate order i, f, z, o)::

    ĩ, f̃, z̃, õ = x_t W_ih^T + b_ih + R(h_{t-1}) + b_hh      R: head-wise recurrent product
    log f_t = log σ(f̃)   (forget_gate="sigmoid")   or   f̃   (forget_gate="exp")
    m_t  = max(log f_t + m_{t-1}, ĩ)                          stabilizer state
    i'_t = exp(ĩ − m_t),   f'_t = exp(log f_t + m_{t-1} − m_t)  stabilized gates
    z_t  = tanh(z̃),        o_t = σ(õ)
    c_t  = f'_t c_{t-1} + i'_t z_t                             cell
    n_t  = f'_t n_{t-1} + i'_t                                 normalizer
    h_t  = o_t ⊙ c_t / n_t

This is the paper's unstabilized recurrence (i_t = exp(ĩ), c_t = f_t c_{t-1} + i_t z_t,
n_t = f_t n_{t-1} + i_t) with c and n both scaled by exp(−m_t): h_t = o_t c_t / n_t is the same
number, but no exp ever overflows.

One rule beyond the paper's equations: where n_{t-1} = 0 the memory is empty (the initial
zero state), so its m_{t-1} carries no information and is taken as −∞: then m_t = ĩ, i'_t = 1,
f'_t = 0 and n_t = 1. Without it, an initial m_0 = 0 and an ĩ far below log f (ĩ < −88 in
float32) make i'_t underflow to 0 and h_t = 0/0. The official xLSTM code does the same, for
the whole batch at once (``if torch.all(n == 0): m = ĩ``); here it is per element. h_t is
unchanged by the rule (c and n scale together); c, n and m are the rescaled values.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

FORGET_GATES = ("sigmoid", "exp")


class SLSTMLayerParams(NamedTuple):
    """One layer and direction's weights, as lk.sLSTM stores them (see its docstring).

    weight_hh holds each hidden unit's recurrent weights from its own head only: row r of gate
    block g (rows g·H … g·H + H − 1) is unit u = r − g·H of head u // dh, and its dh columns
    multiply h_{t-1}[head·dh : head·dh + dh]. With one head that is torch.nn.LSTM's (4H, H).
    """

    w_ih: Tensor  # (4H, I) rows i, f, z, o
    w_hh: Tensor  # (4H, dh)
    b_ih: Optional[Tensor]  # (4H,) or None
    b_hh: Optional[Tensor]  # (4H,) or None


class SLSTMGates(NamedTuple):
    """Every step's gates and states of sLSTM: the values the computation used.

    i and f are the stabilized gates i'_t = exp(ĩ − m_t) and f'_t = exp(log f_t + m_{t-1} − m_t)
    (the unstabilized ones are i'_t·exp(m_t) and f'_t·exp(m_t − m_{t-1})); c and n are the
    stabilized cell and normalizer. From a kernel each is (T, B, H); from lk.sLSTM stacked to
    (L, D, T, B, H) ((L, D, B, T, H) with batch_first, (L, D, T, H) unbatched). Steps past a
    sequence's length hold zeros.
    """

    i: Tensor
    f: Tensor
    z: Tensor
    o: Tensor
    c: Tensor
    n: Tensor
    m: Tensor
    h: Tensor

    def layer(self, k: int, direction: int = 0) -> "SLSTMGates":
        """The gates of layer k (0-based) and one direction, from a stacked (L, D, ...) result."""
        return SLSTMGates(*(v[k, direction] for v in self))


def block_diagonal(w_hh: Tensor) -> Tensor:
    """The stored head-wise weight_hh (4H, dh) as the dense (4H, H) matrix it stands for."""
    GH, dh = w_hh.shape
    H = GH // 4
    NH = H // dh
    if NH == 1:
        return w_hh
    blocks = w_hh.reshape(4, NH, dh, dh)  # (gate, head, unit, input)
    eye = torch.eye(NH, dtype=w_hh.dtype, device=w_hh.device)
    dense = torch.einsum("gkij,kl->gkilj", blocks, eye)  # (4, NH, dh, NH, dh): zero off the diagonal
    return dense.reshape(GH, H)


def recurrent_product(h: Tensor, w_hh: Tensor) -> Tensor:
    """R(h): (B, H) × head-wise (4H, dh) -> (B, 4H); each unit sees only its own head of h."""
    GH, dh = w_hh.shape
    B, H = h.shape
    if dh == H:
        return F.linear(h, w_hh)
    NH = H // dh
    rec = torch.einsum("bkj,gkij->bgki", h.reshape(B, NH, dh), w_hh.reshape(4, NH, dh, dh))  # (B, 4, NH, dh)
    return rec.reshape(B, GH)


def log_forget(f_pre: Tensor, forget_gate: str) -> Tensor:
    return F.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre


def slstm_cell_step(
    x_proj: Tensor, h: Tensor, c: Tensor, n: Tensor, m: Tensor, p: SLSTMLayerParams, forget_gate: str = "sigmoid"
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One stabilized step given x_proj = x_t W_ih^T + b_ih (B, 4H).

    Returns ((h_t, c_t, n_t, m_t), (i'_t, f'_t, z_t, o_t)), each (B, H).
    """
    pre = x_proj + recurrent_product(h, p.w_hh)
    if p.b_hh is not None:
        pre = pre + p.b_hh
    i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)  # each (B, H)
    m_prev = torch.where(n > 0, m, torch.full_like(m, float("-inf")))  # empty memory: m_{t-1} = −∞
    log_f_m = log_forget(f_pre, forget_gate) + m_prev
    m_t = torch.maximum(log_f_m, i_pre)
    i = torch.exp(i_pre - m_t)
    f = torch.exp(log_f_m - m_t)
    z = torch.tanh(z_pre)
    o = torch.sigmoid(o_pre)
    c_t = f * c + i * z
    n_t = f * n + i
    h_t = o * c_t / n_t
    return (h_t, c_t, n_t, m_t), (i, f, z, o)


def slstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    n0: Tensor,
    m0: Tensor,
    p: SLSTMLayerParams,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    record: bool = False,
    forget_gate: str = "sigmoid",
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor], Optional[SLSTMGates]]:
    """Run one sLSTM layer in one direction over a time-major sequence.

    Args:
        x: (T, B, I).  h0, c0, n0, m0: (B, H) initial state.
        lengths: (B,) int64 lengths of right-padded sequences, or None. A sequence's state stops
            changing after its last step; the reverse direction starts at that last step;
            outputs (and recorded values) past a length are zero.
        reverse: run from the last step to the first.  record: also return SLSTMGates.

    Returns out (T, B, H), (h_n, c_n, n_n, m_n) each (B, H), trace or None.
    """
    T = x.shape[0]
    x_proj = F.linear(x, p.w_ih, p.b_ih).unbind(0)  # T × (B, 4H); unbind keeps autograd O(T)
    active = None
    if lengths is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        active = list((steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1).unbind(0))  # T × (B, 1)
    state = (h0, c0, n0, m0)
    outs: list[Optional[Tensor]] = [None] * T
    rec: list[list[Optional[Tensor]]] = [[None] * T for _ in range(8)] if record else []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        new, gates = slstm_cell_step(x_proj[t], *state, p, forget_gate)
        if active is not None:
            state = tuple(torch.where(active[t], a, b) for a, b in zip(new, state))
            zero = torch.zeros_like(new[0])
            out_t = torch.where(active[t], new[0], zero)
        else:
            state, out_t = new, new[0]
        outs[t] = out_t
        if record:
            h_t, c_t, n_t, m_t = new
            values = (*gates, c_t, n_t, m_t, h_t)
            if active is not None:
                values = tuple(torch.where(active[t], v, torch.zeros_like(v)) for v in values)
            for k, v in enumerate(values):
                rec[k][t] = v
    out = torch.stack(outs)  # (T, B, H)
    trace = SLSTMGates(*(torch.stack(r) for r in rec)) if record else None
    return out, state, trace
