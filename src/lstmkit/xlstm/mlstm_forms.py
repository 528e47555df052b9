r"""mLSTM's three forms of one equation: recurrent (step by step), parallel (quadratic in T) and
chunkwise (parallel within chunks, the state carried between them).

Shape legend: B batch, NH heads, T steps, d head size. q, k, v are (B, NH, T, d) with k already
scaled by 1/√d; ĩ and log f are (B, NH, T) (one input and one forget gate per head and step).
The state is (C (B, NH, d, d), n (B, NH, d), m (B, NH)); C maps a query to a value: C q.

Recurrent form (the paper's equations, stabilized)::

    m_t  = max(log f_t + m_{t-1}, ĩ_t)
    i'_t = exp(ĩ_t − m_t),   f'_t = exp(log f_t + m_{t-1} − m_t)
    C_t  = f'_t C_{t-1} + i'_t v_t k_tᵀ
    n_t  = f'_t n_{t-1} + i'_t k_t
    h̃_t  = C_t q_t / (max(|n_tᵀ q_t|, exp(−m_t)) + ε)

Parallel form, with F_t = Σ_{r≤t} log f_r::

    D̃_ts = F_t − F_s + ĩ_s  (s ≤ t, else −∞),   and the initial state's weight F_t + m_0
    m_t  = max(max_s D̃_ts, F_t + m_0)
    S_ts = (q_tᵀ k_s) exp(D̃_ts − m_t),   w_t = exp(F_t + m_0 − m_t)
    h̃_t  = (Σ_s S_ts v_s + w_t C_0 q_t) / (max(|Σ_s S_ts + w_t n_0ᵀ q_t|, exp(−m_t)) + ε)

Unrolling the recurrence gives exactly these sums, so the forms agree up to rounding; the tests
pin them together (outputs, final states, gradients, and the recorded gates).

With ``record=True`` every form also returns the per-head values each step used
(StepRecord: the stabilized gates i'_t and f'_t, the stabilizer m_t and |n_tᵀ q_t|, each
(B, NH, T)). The parallel form reads them off its own quantities: m_t is the row maximum,
i'_t = exp(ĩ_t − m_t), f'_t = exp(log f_t + m_{t-1} − m_t) with m_{-1} the initial state's
(effective) m, and n_tᵀ q_t is the denominator's sum before its absolute value.

Deviations from the paper, said plainly:
  * ε = 1e-6 in the denominator, as the official implementation adds; the paper has none.
  * An empty memory (C = 0 and n = 0: the default initial state) has its m taken as −∞, as in
    lk.sLSTM: the first step then has m = ĩ and i' = 1. The unstabilized quantities C·exp(m),
    n·exp(m) and the bound exp(−m)·exp(m) = 1 are unchanged by this; it only keeps i' from
    underflowing when ĩ is far below log f.
  * exp(−m_t) is computed as exp(min(−m_t, log(max finite) − 2)) (e^86 in float32): where m_t
    is that negative the true bound is larger still and h̃_t is |C_t q_t| / e^86 or less, 0 to
    the dtype's precision either way; without the cap the bound overflows to ∞ and backward
    makes 0·∞ = NaN.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

EPS = 1e-6
FORMS = ("chunkwise", "parallel", "recurrent")

State = tuple[Tensor, Tensor, Tensor]  # C (B, NH, d, d), n (B, NH, d), m (B, NH)


class StepRecord(NamedTuple):
    """Per head and step, what the step used (each (B, NH, T)); see the module docstring."""

    i: Tensor  # i'_t = exp(ĩ_t − m_t)
    f: Tensor  # f'_t = exp(log f_t + m_{t-1} − m_t)
    m: Tensor  # m_t
    nq: Tensor  # |n_tᵀ q_t|, the normalizer as it enters the denominator


def _concat_records(records: list[StepRecord]) -> StepRecord:
    return StepRecord(*(torch.cat(parts, dim=-1) for parts in zip(*records)))


def _lower_bound(m: Tensor) -> Tensor:
    """exp(−m), capped below the dtype's overflow (see the module docstring)."""
    return torch.exp(torch.clamp(-m, max=math.log(torch.finfo(m.dtype).max) - 2))


def zero_state(q: Tensor) -> State:
    B, NH, _, d = q.shape
    return (q.new_zeros(B, NH, d, d), q.new_zeros(B, NH, d), q.new_zeros(B, NH))


def _effective_m(state: State) -> Tensor:
    """m of the state, −∞ where the memory is empty (C = 0 and n = 0)."""
    C, n, m = state
    empty = (C == 0).flatten(-2).all(-1) & (n == 0).all(-1)  # (B, NH)
    return torch.where(empty, torch.full_like(m, float("-inf")), m)


def mlstm_recurrent(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, log_f: Tensor,
                    state: Optional[State] = None, record: bool = False):
    """Step by step: O(T d²) work, O(d²) state. Returns h̃ (B, NH, T, d) and the final state
    (and a StepRecord with record=True)."""
    C, n, m = zero_state(q) if state is None else state
    outs = []
    rec: list[tuple[Tensor, ...]] = []
    for q_t, k_t, v_t, i_t, lf_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), i_pre.unbind(2), log_f.unbind(2)):
        a = lf_t + _effective_m((C, n, m))  # (B, NH)
        m = torch.maximum(a, i_t)
        i = torch.exp(i_t - m)
        f = torch.exp(a - m)
        C = f[..., None, None] * C + i[..., None, None] * (v_t.unsqueeze(-1) * k_t.unsqueeze(-2))  # (B, NH, d, d)
        n = f.unsqueeze(-1) * n + i.unsqueeze(-1) * k_t
        num = (C @ q_t.unsqueeze(-1)).squeeze(-1)  # (B, NH, d)
        nq = (n * q_t).sum(-1).abs()  # (B, NH)
        den = torch.maximum(nq, _lower_bound(m)) + EPS
        outs.append(num / den.unsqueeze(-1))
        if record:
            rec.append((i, f, m, nq))
    h = torch.stack(outs, dim=2)
    if record:
        return h, (C, n, m), StepRecord(*(torch.stack(parts, dim=-1) for parts in zip(*rec)))
    return h, (C, n, m)


def mlstm_parallel(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, log_f: Tensor,
                   state: Optional[State] = None, record: bool = False):
    """All steps at once: O(T² d) work and a (B, NH, T, T) matrix. Same returns as the recurrent form."""
    T = q.shape[2]
    C0, n0, m0 = zero_state(q) if state is None else state
    m_init = _effective_m((C0, n0, m0))  # (B, NH)
    F_cum = torch.cumsum(log_f, dim=-1)  # (B, NH, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    log_d = F_cum.unsqueeze(-1) - F_cum.unsqueeze(-2) + i_pre.unsqueeze(-2)  # (B, NH, T, T): [t, s]
    log_d = torch.where(causal, log_d, torch.full_like(log_d, float("-inf")))
    log_w0 = F_cum + m_init.unsqueeze(-1)  # (B, NH, T) weight of the initial state
    m = torch.maximum(log_d.amax(-1), log_w0)  # (B, NH, T)
    decay = torch.exp(log_d - m.unsqueeze(-1))  # (B, NH, T, T)
    w0 = torch.exp(log_w0 - m)  # (B, NH, T)
    S = (q @ k.transpose(-1, -2)) * decay  # (B, NH, T, T)
    num = S @ v + w0.unsqueeze(-1) * (q @ C0.transpose(-1, -2))  # (B, NH, T, d)
    den = S.sum(-1) + w0 * (q @ n0.unsqueeze(-1)).squeeze(-1)  # (B, NH, T)
    h = num / (torch.maximum(den.abs(), _lower_bound(m)) + EPS).unsqueeze(-1)
    last = decay[..., -1, :]  # (B, NH, T): weights of every step in the final state
    C = (v * last.unsqueeze(-1)).transpose(-1, -2) @ k + w0[..., -1, None, None] * C0  # (B, NH, d, d)
    n = (last.unsqueeze(-1) * k).sum(-2) + w0[..., -1, None] * n0
    if record:
        m_prev = torch.cat([m_init.unsqueeze(-1), m[..., :-1]], dim=-1)  # (B, NH, T): m_{t-1}
        steps = StepRecord(torch.exp(i_pre - m), torch.exp(log_f + m_prev - m), m, den.abs())
        return h, (C, n, m[..., -1]), steps
    return h, (C, n, m[..., -1])


def mlstm_chunkwise(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, log_f: Tensor,
                    state: Optional[State] = None, chunk_size: int = 64, record: bool = False):
    """The parallel form over chunks of chunk_size steps, each starting from the state the last
    one left: O(T·chunk_size·d + T d²) work, (B, NH, chunk_size, chunk_size) at a time."""
    outs, records = [], []
    for start in range(0, q.shape[2], chunk_size):
        part = slice(start, start + chunk_size)
        h, state, *rec = mlstm_parallel(q[:, :, part], k[:, :, part], v[:, :, part], i_pre[..., part],
                                        log_f[..., part], state, record)
        outs.append(h)
        records += rec
    if record:
        return torch.cat(outs, dim=2), state, _concat_records(records)
    return torch.cat(outs, dim=2), state


def run_form(form: str, q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, log_f: Tensor,
             state: Optional[State] = None, chunk_size: int = 64, record: bool = False):
    """h̃ (B, NH, T, d), the final state, and with record=True a StepRecord."""
    if form == "chunkwise":
        return mlstm_chunkwise(q, k, v, i_pre, log_f, state, chunk_size, record)
    if form == "parallel":
        return mlstm_parallel(q, k, v, i_pre, log_f, state, record)
    return mlstm_recurrent(q, k, v, i_pre, log_f, state, record)
