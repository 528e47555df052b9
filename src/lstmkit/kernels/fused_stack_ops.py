"""The whole-stack operators as PyTorch sees them: torch.ops.lstmkit.lstm_stack (training's forward),
lstm_stack_backward and lstm_stack_infer.

A stack is torch.nn.LSTM's model run in one operator call (csrc/stack.h): every layer and
direction, lengths, dropout between layers, the projection; none of lk.LSTM's variants. Its
weights come as one flat list, per layer k and direction d in the order k·D + d:
(w_ih, w_hh, b_ih, b_hh, w_hr), None where absent. This module registers, once the extension is
loaded (fused_ops.register calls register here):

- fake kernels (shapes from shapes, for FakeTensor tracing and opcheck);
- lstm_stack's autograd: its backward is lstm_stack_backward, the hand-written backward through
  time of every layer, top layer first, in one call; the backward is not differentiable again.

    lstm_stack(x (T,B,I), h0 (L·D,B,P), c0 (L·D,B,H), weights, num_layers, bidirectional, lengths?,
               dropout_masks (none, or L - 1 of (T,B,D·P) scaled by 1/(1-p)))
        -> (out (T,B,D·P), h_n, c_n, records)   # records: what the backward reads (stack.h)
    lstm_stack_backward(grad_out?, grad_h_n?, grad_c_n?, x, h0, c0, weights, num_layers,
                        bidirectional, lengths?, dropout_masks, out, records, need_dx)
        -> [dx, dh0, dc0, then per layer and direction dw_ih, dw_hh, db, dw_hr]
    lstm_stack_infer(x, h0, c0, weights, num_layers, bidirectional, lengths?, prepared)
        -> (out, h_n, c_n)                      # nothing recorded, no autograd

Shape legend: T steps, B batch, I input features, H hidden size, GH = 4·H gate rows, P size of h,
L layers, D directions.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .fused_ops import _NO_DOUBLE_BACKWARD

SLOTS = 5  # weights per layer and direction: w_ih, w_hh, b_ih, b_hh, w_hr


def _check(x: Tensor, weights: list, num_layers: int, bidirectional: bool) -> int:
    D = 2 if bidirectional else 1
    torch._check(x.dim() == 3, lambda: f"lstmkit: x must be (T, B, I), got {tuple(x.shape)}")
    torch._check(len(weights) == SLOTS * num_layers * D,
                 lambda: f"lstmkit: expected {SLOTS * num_layers * D} weights, got {len(weights)}")
    return D


# --- fake kernels -------------------------------------------------------------------------------

def _stack_infer_fake(x, h0, c0, weights, num_layers, bidirectional, lengths, prepared):
    D = _check(x, weights, num_layers, bidirectional)
    T, B, P, H = x.shape[0], x.shape[1], h0.shape[-1], c0.shape[-1]
    return x.new_empty((T, B, D * P)), h0.new_empty((num_layers * D, B, P)), c0.new_empty((num_layers * D, B, H))


def _stack_fake(x, h0, c0, weights, num_layers, bidirectional, lengths, dropout_masks):
    out, h_n, c_n = _stack_infer_fake(x, h0, c0, weights, num_layers, bidirectional, lengths, [])
    L, D = num_layers, 2 if bidirectional else 1
    T, B, P, H = x.shape[0], x.shape[1], h0.shape[-1], c0.shape[-1]
    empty = (0,)
    records = []
    for q in range(L * D):  # a unidirectional stack's last output is the stack's out (stack.h)
        records += [x.new_empty((T, B, P) if D == 2 or q < L - 1 else empty), x.new_empty((T, B, 4 * H)),
                    x.new_empty((T, B, H))]
    for k in range(1, L):  # a layer's input is recorded when dropout or a concatenation made it
        masked = bool(dropout_masks) and dropout_masks[k - 1] is not None
        records.append(x.new_empty((T, B, D * P) if D == 2 or masked else empty))
    return out, h_n, c_n, records


def _stack_backward_fake(grad_out, grad_h_n, grad_c_n, x, h0, c0, weights, num_layers, bidirectional, lengths,
                         dropout_masks, out, records, need_dx):
    empty = x.new_empty((0,))

    def like(t: Optional[Tensor]) -> Tensor:
        return empty.clone() if t is None else t.new_empty(t.shape)

    grads = [x.new_empty(x.shape) if need_dx else empty.clone(), like(h0), like(c0)]
    for q in range(len(weights) // SLOTS):
        w_ih, w_hh, b_ih, _, w_hr = weights[SLOTS * q : SLOTS * (q + 1)]
        grads += [like(w_ih), like(w_hh), like(b_ih), like(w_hr)]
    return grads


# --- autograd -----------------------------------------------------------------------------------

class _Stack(torch.autograd.Function):
    """lstm_stack with its backward. The weights and masks come flat after the fixed arguments
    (autograd tracks tensors, not lists); the records are outputs autograd does not differentiate."""

    @staticmethod
    def forward(ctx, x, h0, c0, lengths, num_layers, bidirectional, n_weights, *flat):
        weights, masks = list(flat[:n_weights]), list(flat[n_weights:])
        with torch._C._AutoDispatchBelowAutograd():
            out, h_n, c_n, records = torch.ops.lstmkit.lstm_stack.default(
                x, h0, c0, weights, num_layers, bidirectional, lengths, masks)
        ctx.save_for_backward(x, h0, c0, lengths, out, *weights, *masks, *records)
        ctx.layout = (num_layers, bidirectional, n_weights, len(masks))
        ctx.mark_non_differentiable(*records)
        ctx.set_materialize_grads(False)
        return (out, h_n, c_n, *records)

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn, *_records):
        num_layers, bidirectional, n_weights, n_masks = ctx.layout
        saved = ctx.saved_tensors
        x, h0, c0, lengths, out = saved[:5]
        weights = list(saved[5 : 5 + n_weights])
        masks = list(saved[5 + n_weights : 5 + n_weights + n_masks])
        records = list(saved[5 + n_weights + n_masks :])
        need = ctx.needs_input_grad
        with torch.no_grad():
            grads = torch.ops.lstmkit.lstm_stack_backward.default(
                g_out, g_hn, g_cn, x, h0, c0, weights, num_layers, bidirectional, lengths, masks, out, records,
                need[0])
        if torch.is_grad_enabled():  # create_graph=True: gradients that say so when differentiated
            anchors = [t for t in (x, h0, c0, *weights) if t is not None and t.requires_grad]
            grads = list(_NotDifferentiable.apply(len(grads), *grads, *anchors))
        dx, dh0, dc0, dws = grads[0], grads[1], grads[2], grads[3:]
        weight_grads: list[Optional[Tensor]] = []
        for q in range(n_weights // SLOTS):
            dw_ih, dw_hh, db, dw_hr = dws[4 * q : 4 * q + 4]
            weight_grads += [dw_ih, dw_hh, db, db, dw_hr]  # b_hh enters the gates exactly as b_ih does
        weight_grads = [g if w is not None and need[7 + j] else None
                        for j, (g, w) in enumerate(zip(weight_grads, weights))]
        return (dx if need[0] else None, dh0 if need[1] else None, dc0 if need[2] else None, None, None, None, None,
                *weight_grads, *([None] * n_masks))


class _NotDifferentiable(torch.autograd.Function):
    """The backward's results, unchanged, in a graph that reaches the forward's inputs (anchors):
    a create_graph=True caller gets gradients, and differentiating them raises a clear error."""

    @staticmethod
    def forward(ctx, n, *tensors):
        return tuple(t.clone() for t in tensors[:n])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(_NO_DOUBLE_BACKWARD)


def _stack_autograd(keyset, x, h0, c0, weights, num_layers, bidirectional, lengths, dropout_masks):
    """lstm_stack's Autograd kernel: through _Stack when a gradient is wanted, else below autograd."""
    tensors = [x, h0, c0, *weights, *dropout_masks]
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        out, h_n, c_n, *records = _Stack.apply(x, h0, c0, lengths, num_layers, bidirectional, len(weights),
                                               *weights, *dropout_masks)
        return out, h_n, c_n, records
    return torch.ops.lstmkit.lstm_stack.default.redispatch(
        keyset & torch._C._after_autograd_keyset, x, h0, c0, weights, num_layers, bidirectional, lengths,
        dropout_masks)


def register(lib: torch.library.Library) -> None:
    """Fake kernels and lstm_stack's autograd (lib: fused_ops' IMPL library for "lstmkit")."""
    torch.library.register_fake("lstmkit::lstm_stack_infer")(_stack_infer_fake)
    torch.library.register_fake("lstmkit::lstm_stack")(_stack_fake)
    torch.library.register_fake("lstmkit::lstm_stack_backward")(_stack_backward_fake)
    lib.impl("lstm_stack", _stack_autograd, "Autograd", with_keyset=True)
