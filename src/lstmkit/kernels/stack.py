"""Compose per-layer, per-direction kernels into a multi-layer, bidirectional network.

Shape legend: T steps, B batch, L layers, D directions; a state tensor is (L*D, B, ·) with
index k*D + d for layer k, direction d (torch.nn.LSTM's layout).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# layer_fn(x (T,B,I), state tuple of (B,·), params, lengths, reverse, record)
#   -> (out (T,B,·), final state tuple, trace NamedTuple of (T,B,·) or None)
LayerFn = Callable[..., tuple[Tensor, tuple[Tensor, ...], Optional[NamedTuple]]]


def run_stack(
    layer_fn: LayerFn,
    x: Tensor,
    state: tuple[Tensor, ...],
    params: Sequence[Sequence[NamedTuple]],
    lengths: Optional[Tensor],
    dropout: float,
    training: bool,
    record: bool,
    layer_opts: Optional[Sequence[Sequence[NamedTuple]]] = None,
    input_masks: Optional[Sequence[Tensor]] = None,
) -> tuple[Tensor, tuple[Tensor, ...], Optional[NamedTuple]]:
    """Run every layer and direction; dropout (as in torch.nn.LSTM) on the outputs of all but the last layer.

    layer_opts[k][d], when given, is passed to layer_fn as ``opts`` (the LSTM variants' options);
    input_masks[k] (B, I_k), when given, multiplies layer k's input at every step (variational
    input dropout: one mask per sequence).

    Returns out (T, B, D·P), final state tuple of (L*D, B, ·), and when record the traces
    stacked to (L, D, T, B, ·).
    """
    D = len(params[0])
    finals: list[list[Tensor]] = [[] for _ in state]
    traces: list[list[NamedTuple]] = []
    inp = x
    initial = [s.unbind(0) for s in state]  # per state, L*D views of (B, ·): one op, not one per layer
    for k, directions in enumerate(params):
        outs, layer_traces = [], []
        if input_masks is not None and input_masks[k] is not None:
            inp = inp * input_masks[k]  # (T, B, I_k) * (B, I_k)
        for d, p in enumerate(directions):
            s0 = tuple(views[k * D + d] for views in initial)
            extra = {} if layer_opts is None else {"opts": layer_opts[k][d]}
            out, s_n, trace = layer_fn(inp, *s0, p, lengths, reverse=(d == 1), record=record, **extra)
            outs.append(out)
            for acc, s in zip(finals, s_n):
                acc.append(s)
            layer_traces.append(trace)
        inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D·P)
        if dropout > 0 and training and k < len(params) - 1:
            inp = F.dropout(inp, dropout, training=True)
        traces.append(layer_traces)
    state_n = tuple(torch.stack(acc) for acc in finals)  # each (L*D, B, ·)
    if not record:
        return inp, state_n, None
    kind = type(traces[0][0])
    if len(traces) == 1 and D == 1:  # one layer, one direction: views, no copy of the gates
        return inp, state_n, kind(*(v.unsqueeze(0).unsqueeze(0) for v in traces[0][0]))
    stacked = kind(*(
        torch.stack([t for layer in traces for t in (getattr(tr, f) for tr in layer)]).unflatten(0, (len(traces), D))
        for f in kind._fields
    ))  # each (L, D, T, B, ·): one copy per field
    return inp, state_n, stacked
