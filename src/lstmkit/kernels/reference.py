"""The reference backend: a readable loop over time steps, built from torch ops and autograd.

It is the slow twin that every fast path is tested against, and it runs on any device.

Shape legend: T = steps, B = batch, I = input features, H = hidden size,
P = size of h (proj_size if > 0, else H).

The LSTM equations, written once here (textbook name → code letter):

    input gate      I_t  = σ(X_t W_xi + H_{t-1} W_hi + b_i)      → i
    forget gate     F_t  = σ(X_t W_xf + H_{t-1} W_hf + b_f)      → f
    output gate     O_t  = σ(X_t W_xo + H_{t-1} W_ho + b_o)      → o
    input node      C̃_t  = tanh(X_t W_xc + H_{t-1} W_hc + b_c)   → g
    memory cell     C_t  = F_t ⊙ C_{t-1} + I_t ⊙ C̃_t              → c
    hidden state    H_t  = O_t ⊙ tanh(C_t)   (then · W_hr^T when projecting) → h
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._masking import length_mask, zoneout_blend
from .backend import Backend, RunSpec, register_backend
from .stack import run_stack
from .types import LSTMGates, LSTMLayerParams, LSTMStepOptions, RNNLayerParams, RNNStates


def input_projection(x: Tensor, p: LSTMLayerParams, eps: float = 1e-5) -> Tensor:
    """X W_ih^T + b_ih for all steps at once: (T, B, I) -> (T, B, GH); LayerNorm'd when p.ln is set."""
    if p.ln is None:
        return F.linear(x, p.w_ih, p.b_ih)
    z = F.layer_norm(F.linear(x, p.w_ih), p.ln.ih_weight.shape, p.ln.ih_weight, p.ln.ih_bias, eps)
    return z if p.b_ih is None else z + p.b_ih


def recurrent_projection(h: Tensor, p: LSTMLayerParams, eps: float = 1e-5) -> Tensor:
    """H W_hh^T + b_hh: (B, P) -> (B, GH); LayerNorm'd when p.ln is set."""
    if p.ln is None:
        return F.linear(h, p.w_hh, p.b_hh)
    z = F.layer_norm(F.linear(h, p.w_hh), p.ln.hh_weight.shape, p.ln.hh_weight, p.ln.hh_bias, eps)
    return z if p.b_hh is None else z + p.b_hh


def lstm_cell_step(
    x_proj: Tensor, h: Tensor, c: Tensor, p: LSTMLayerParams, opts: LSTMStepOptions = LSTMStepOptions()
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One LSTM step given this step's input projection x_proj (B, GH) (see input_projection).

    Variants, each off unless its parameter / option is set:
      peephole (Gers et al. 2002): i and f also see c_{t-1}, o sees c_t, through diagonal weights;
      coupled (CIFG): f = 1 - i, and there are no forget-gate weights;
      LayerNorm (Ba et al. 2016): input and recurrent projections normalized separately (in
        input_projection / recurrent_projection), and c_t normalized before its tanh;
      recurrent dropout (Gal & Ghahramani 2016): h_{t-1} times a per-sequence mask, in the
        recurrent projection only.

    Returns (h_t (B, P), c_t (B, H), (i, f, g, o)).
    """
    h_in = h if opts.h_keep is None else h * opts.h_keep
    pre = x_proj + recurrent_projection(h_in, p, opts.ln_eps)  # (B, GH)
    if opts.coupled:
        i, g, o = pre.chunk(3, dim=-1)  # each (B, H)
        f = None
    else:
        i, f, g, o = pre.chunk(4, dim=-1)
    peep = p.peephole
    if peep is not None:
        i = i + peep[0] * c
        if f is not None:
            f = f + peep[1] * c
    i = torch.sigmoid(i)
    f = 1 - i if f is None else torch.sigmoid(f)
    g = torch.tanh(g)
    c = f * c + i * g
    if peep is not None:
        o = o + peep[-1] * c
    o = torch.sigmoid(o)
    c_out = c if p.ln is None else F.layer_norm(c, p.ln.c_weight.shape, p.ln.c_weight, p.ln.c_bias, opts.ln_eps)
    h = o * torch.tanh(c_out)
    if p.w_hr is not None:
        h = F.linear(h, p.w_hr)  # (B, H) -> (B, P)
    return h, c, (i, f, g, o)


def _step_order(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _active_masks(lengths: Optional[Tensor], T: int, device: torch.device) -> Optional[list[Tensor]]:
    """Per step, a (B, 1) bool mask of the sequences that still run (t < length)."""
    if lengths is None:
        return None
    return list(length_mask(lengths.to(device), T).t().unsqueeze(-1).unbind(0))  # T × (B, 1)


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    p: LSTMLayerParams,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    record: bool = False,
    opts: LSTMStepOptions = LSTMStepOptions(),
) -> tuple[Tensor, tuple[Tensor, Tensor], Optional[LSTMGates]]:
    """Run one LSTM layer in one direction over a time-major sequence.

    Args:
        x: (T, B, I) input.  h0: (B, P), c0: (B, H) initial state.
        p: the layer's weights.
        lengths: (B,) int64 lengths of right-padded sequences, or None when all run T steps.
            A sequence's state stops changing after its last step; the reverse direction
            starts at that last step. Outputs past a length are zero.
        reverse: run from the last step to the first.
        record: also return every step's gates and states.
        opts: the variants applied inside the loop (coupled, masks); see lstm_cell_step.
            Zoneout (Krueger et al. 2016): h_t = z_h ⊙ h_{t-1} + (1 - z_h) ⊙ h̃_t and likewise
            for c, with z the masks in opts (0/1 samples in training, the rate in eval).

    Returns:
        out (T, B, P), (h_n (B, P), c_n (B, H)), trace or None.
    """
    T = x.shape[0]
    # The input projection of all steps is one GEMM; unbind (not x_proj[t]) keeps autograd from
    # writing a full-size zero gradient per step.
    x_proj = input_projection(x, p, opts.ln_eps).unbind(0)  # T × (B, GH)
    active = _active_masks(lengths, T, x.device)
    h, c = h0, c0
    outs: list[Optional[Tensor]] = [None] * T
    rec: list[list[Tensor]] = [[None] * T for _ in range(6)] if record else []  # type: ignore[list-item]
    for t in _step_order(T, reverse):
        h_t, c_t, gates = lstm_cell_step(x_proj[t], h, c, p, opts)
        if opts.zone_h is not None:
            h_t = zoneout_blend(h_t, h, opts.zone_h[t])  # z·h_{t-1} + (1 - z)·h̃_t (z may be bool)
        if opts.zone_c is not None:
            c_t = zoneout_blend(c_t, c, opts.zone_c[t])
        if active is not None:
            m = active[t]
            h, c = torch.where(m, h_t, h), torch.where(m, c_t, c)
            out_t = torch.where(m, h_t, torch.zeros_like(h_t))
        else:
            h, c, out_t = h_t, c_t, h_t
        outs[t] = out_t
        if record:
            values = (*gates, c_t, h_t)
            if active is not None:
                values = tuple(torch.where(active[t], v, torch.zeros_like(v)) for v in values)
            for k, v in enumerate(values):
                rec[k][t] = v
    out = torch.stack(outs)  # (T, B, P)
    trace = LSTMGates(*(torch.stack(r) for r in rec)) if record else None
    return out, (h, c), trace


def rnn_layer(
    x: Tensor,
    h0: Tensor,
    p: RNNLayerParams,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    record: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, tuple[Tensor], Optional[RNNStates]]:
    """Run one plain (Elman) RNN layer: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

    Same contract as lstm_layer; the state is the 1-tuple (h,).
    """
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    T = x.shape[0]
    x_proj = F.linear(x, p.w_ih, p.b_ih).unbind(0)  # T × (B, H)
    active = _active_masks(lengths, T, x.device)
    h = h0
    outs: list[Optional[Tensor]] = [None] * T
    for t in _step_order(T, reverse):
        h_t = act(x_proj[t] + F.linear(h, p.w_hh, p.b_hh))
        if active is not None:
            h = torch.where(active[t], h_t, h)
            h_t = torch.where(active[t], h_t, torch.zeros_like(h_t))
        else:
            h = h_t
        outs[t] = h_t
    out = torch.stack(outs)  # (T, B, H)
    return out, (h,), RNNStates(out) if record else None


class ReferenceBackend(Backend):
    name = "reference"

    def unsupported(self, spec: RunSpec) -> Optional[str]:
        return None

    def run(self, spec, x, state, params, lengths, layer_opts=None, input_masks=None):
        if spec.cell == "lstm":
            layer_fn = lstm_layer
        else:
            layer_fn = functools.partial(rnn_layer, nonlinearity=spec.cell.removeprefix("rnn_"))
        return run_stack(
            layer_fn, x, state, params, lengths, spec.dropout, spec.training, spec.record, layer_opts, input_masks
        )


register_backend(ReferenceBackend())
