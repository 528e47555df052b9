"""The fused kernel's operators as PyTorch sees them: torch.ops.lstmkit.*.

The C++ extension defines the operators (``TORCH_LIBRARY(lstmkit, m)`` in csrc/lstm_fused.cpp)
and their CPU kernels; this module registers what PyTorch needs besides, once the extension is
loaded:

- fake kernels: output shapes from input shapes alone (symbolic T and B), for FakeTensor
  tracing (torch.compile, torch.export, AOTInductor) and for ``device="meta"``;
- autograd: ``lstm_layer``'s backward is the kernel's own ``lstm_layer_backward`` (the
  hand-written backward through time), in eager, compiled and exported graphs alike; the
  backward op itself has no derivative and says so;
- vmap rules (torch.func.vmap): a vmapped batch of inputs folds into the kernel's batch
  dimension (one kernel call); batched weights, and the backward, run once per vmapped slice.

The operators, each one layer in one direction (shape legend: T steps, B batch, I input
features, H hidden size, GH = G·H gate rows, P size of h):

    lstm_layer(LAYER) -> (out (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,GH), c (T,B,H),
                          ln_h, ln_rh, ln_c, ln_rc, ln_i, ln_ri)   # LayerNorm records, else empty
    lstm_layer_infer(LAYER, whh_t?, bias?, whr_t?, whh_packed?, whh_cols?, wih_packed?)
                       -> (out, h_n, c_n)                          # nothing recorded, no autograd
    lstm_layer_backward(grad_out?, grad_h_n?, grad_c_n?, grad_gates?, grad_c?, LAYER,
                        out, gates, c, ln_h, ln_rh, ln_c, ln_rc, ln_i, ln_ri, need_dx) -> Tensor[14]
    pack_whh(whh_t, gates), pack_cols(m)                           # the tiles' weight layouts

where LAYER is the layer description, the same leading arguments in every schema:

    x (T,B,I), h0 (B,P), c0 (B,H), w_ih? (GH,I), w_hh (GH,P), b_ih? (GH,), b_hh? (GH,),
    w_hr? (P,H), peephole? (3 or 2, H), ln_ih_weight?, ln_ih_bias? (GH,), ln_hh_weight?,
    ln_hh_bias? (GH,), ln_c_weight?, ln_c_bias? (H,), lengths? (B,) int, h_keep? (B,P),
    zone_h? (T,B,P), zone_c? (T,B,H), reverse, coupled, ln_eps

(`LayerCall.args` builds it from LSTMLayerParams and LSTMStepOptions, in one place). The
whole-stack operators (lstm_stack, lstm_stack_backward, lstm_stack_infer) are fused_stack_ops'.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .types import LSTMLayerParams, LSTMStepOptions

_NO_DOUBLE_BACKWARD = (
    "lstmkit's fused backend has no double backward (its backward through time is hand-written); "
    "use backend='reference' for higher-order gradients"
)
# Positions in the layer description (LAYER above).
_N_LAYER = 22
_WEIGHTS = slice(3, 15)  # w_ih … ln_c_bias: what a vmapped call may not fold into the batch
# The backward op's results, in order, and the layer inputs (by position) they are gradients of.
_GRAD_OF = (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14)  # db serves b_ih (5) and b_hh (6)


class LayerCall(NamedTuple):
    """One layer in one direction as the operators take it (the leading LAYER arguments)."""

    x: Tensor
    h0: Tensor
    c0: Tensor
    p: LSTMLayerParams
    opts: LSTMStepOptions
    lengths: Optional[Tensor]
    reverse: bool

    def args(self) -> tuple:
        p, o, ln = self.p, self.opts, self.p.ln
        lnp = (None,) * 6 if ln is None else (ln.ih_weight, ln.ih_bias, ln.hh_weight, ln.hh_bias, ln.c_weight, ln.c_bias)
        return (self.x, self.h0, self.c0, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr, p.peephole, *lnp, self.lengths,
                o.h_keep, o.zone_h, o.zone_c, bool(self.reverse), bool(o.coupled), float(o.ln_eps))


# --- fake kernels -----------------------------------------------------------------------------

def _sizes(x: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, coupled: bool) -> tuple:
    torch._check(x.dim() == 3, lambda: f"lstmkit: x must be (T, B, I), got {tuple(x.shape)}")
    T, B = x.shape[0], x.shape[1]
    GH, P, H = w_hh.shape[0], w_hh.shape[1], c0.shape[-1]
    torch._check(GH == (3 if coupled else 4) * H, lambda: f"lstmkit: weight_hh has {GH} rows for hidden size {H}")
    torch._check(h0.shape == (B, P), lambda: f"lstmkit: h0 is {tuple(h0.shape)}, expected ({B}, {P})")
    torch._check(c0.shape == (B, H), lambda: f"lstmkit: c0 is {tuple(c0.shape)}, expected ({B}, {H})")
    return T, B, GH, H, P


def _layer_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, peephole, ln_ih_weight, ln_ih_bias, ln_hh_weight,
                ln_hh_bias, ln_c_weight, ln_c_bias, lengths, h_keep, zone_h, zone_c, reverse, coupled, ln_eps):
    T, B, GH, H, P = _sizes(x, h0, c0, w_hh, coupled)
    new = x.new_empty
    ln, ln_in = ln_hh_weight is not None, ln_ih_weight is not None
    return (new((T, B, P)), new((B, P)), new((B, H)), new((T, B, GH)), new((T, B, H)),
            new((T, B, GH) if ln else (0,)), new((T, B) if ln else (0,)), new((T, B, H) if ln else (0,)),
            new((T, B) if ln else (0,)), new((T, B, GH) if ln_in else (0,)), new((T, B) if ln_in else (0,)))


def _infer_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, peephole, ln_ih_weight, ln_ih_bias, ln_hh_weight,
                ln_hh_bias, ln_c_weight, ln_c_bias, lengths, h_keep, zone_h, zone_c, reverse, coupled, ln_eps,
                whh_t=None, bias=None, whr_t=None, whh_packed=None, whh_cols=None, wih_packed=None):
    T, B, GH, H, P = _sizes(x, h0, c0, w_hh, coupled)
    return x.new_empty((T, B, P)), x.new_empty((B, P)), x.new_empty((B, H))


def _backward_fake(grad_out, grad_h_n, grad_c_n, grad_gates, grad_c, *rest):
    layer, need_dx = rest[:_N_LAYER], rest[-1]
    x = layer[0]
    empty = x.new_empty((0,))
    grads = []
    for k in _GRAD_OF:
        t = layer[k]
        grads.append(empty.clone() if t is None or (k == 0 and not need_dx) else t.new_empty(t.shape))
    return grads


# --- autograd ---------------------------------------------------------------------------------
# An Autograd kernel per operator, in front of the CPU / Meta kernels: the op's own dispatch entry,
# so eager, compiled (AOTAutograd traces it) and exported graphs all take this formula. The
# autograd.Functions define setup_context (torch.func.grad, jacrev and vmap need it, which
# torch.library.register_autograd's generated Function lacks) and let vmap through their forward
# (generate_vmap_rule: the ops' own vmap rules below then apply).

def _setup_context(ctx, inputs, output):
    layer = list(inputs)
    ctx.presence = tuple(t is not None for t in layer[:15])
    ctx.flags = tuple(layer[19:22])  # reverse, coupled, ln_eps
    ctx.save_for_backward(*layer[:19], output[0], *output[3:])  # x … zone_c; out, gates, c, LN records
    ctx.mark_non_differentiable(*output[5:])
    ctx.set_materialize_grads(False)


class _Layer(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.lstmkit.lstm_layer.default(*args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn, g_gates, g_c, *_ln_records):
        saved = ctx.saved_tensors
        layer, recorded = saved[:19], saved[19:]
        grads = lstm_layer_backward(
            g_out, g_hn, g_cn, g_gates, g_c, *layer, *ctx.flags, *recorded, ctx.needs_input_grad[0]
        )
        result: list[Optional[Tensor]] = [None] * _N_LAYER
        for k, g in zip(_GRAD_OF, grads):
            if ctx.presence[k] and (k != 0 or ctx.needs_input_grad[0]):
                result[k] = g
        if ctx.presence[6]:  # b_hh enters the gates exactly as b_ih does
            result[6] = grads[5]
        return tuple(result)


class _LayerBackward(torch.autograd.Function):
    """The hand-written backward is not differentiable again: differentiating it says so."""

    generate_vmap_rule = True

    @staticmethod
    def forward(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return tuple(torch.ops.lstmkit.lstm_layer_backward.default(*args))

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(_NO_DOUBLE_BACKWARD)


def lstm_layer(*args):
    """torch.ops.lstmkit.lstm_layer with its autograd: through the op's Autograd kernel, or under
    torch.func transforms through the autograd.Function itself (functorch must see the Function
    before the dispatcher does)."""
    if torch._C._are_functorch_transforms_active():
        return _Layer.apply(*args)
    return torch.ops.lstmkit.lstm_layer.default(*args)


def lstm_layer_backward(*args):
    if torch._C._are_functorch_transforms_active():
        return list(_LayerBackward.apply(*args))
    return torch.ops.lstmkit.lstm_layer_backward.default(*args)


def _autograd_kernel(op, function: type, as_list: bool = False):
    def kernel(keyset, *args):
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            out = function.apply(*args)
            return list(out) if as_list else out
        return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    return kernel


# --- vmap -------------------------------------------------------------------------------------

def _fold(t: Optional[Tensor], bdim: Optional[int], n: int, at: int) -> Optional[Tensor]:
    """t with the vmapped dimension (n long) merged into its batch dimension, which sits at `at`
    once the vmapped one is moved in front of it; an unbatched t is repeated n times."""
    if t is None:
        return None
    if bdim is None:
        t = t.unsqueeze(at).expand(*t.shape[:at], n, *t.shape[at:])
    else:
        t = t.movedim(bdim, at)
    return t.flatten(at, at + 1)


def _unfold(t: Tensor, n: int, at: int) -> Tensor:
    return t.unflatten(at, (n, t.shape[at] // n))


def _vmap_layer(op, n_out: int):
    """A vmap rule for lstm_layer / lstm_layer_infer: fold into the kernel's batch when the weights
    are shared (the usual case: vmap over inputs), else one call per vmapped slice."""

    def rule(info, in_dims, *args):
        n = info.batch_size
        layer_dims = in_dims[:_N_LAYER]
        if any(d is not None for d in layer_dims[_WEIGHTS]) or any(d is not None for d in in_dims[_N_LAYER:]):
            return _vmap_by_slices(op, info, in_dims, args)
        # batch dimension of each folded input: x, zone_h, zone_c (T, B, ·) at 1; h0, c0, lengths,
        # h_keep (B, ·) at 0
        folded = list(args)
        for k, at in ((0, 1), (1, 0), (2, 0), (15, 0), (16, 0), (17, 1), (18, 1)):
            folded[k] = _fold(args[k], layer_dims[k], n, at)
        out = op(*folded)
        # outputs: (T, B, ·) ones at dim 1, (B, ·) ones at 0, empty records unbatched
        dims = []
        result = []
        for j, t in enumerate(out[:n_out]):
            if t.numel() == 0:
                result.append(t)
                dims.append(None)
            else:
                at = 0 if j in (1, 2) else 1
                result.append(_unfold(t, n, at))
                dims.append(at)
        return tuple(result), tuple(dims)

    return rule


def _vmap_by_slices(op, info, in_dims, args):
    n = info.batch_size
    outs = []
    for s in range(n):
        sliced = [a.select(d, s) if d is not None and isinstance(a, Tensor) else a for a, d in zip(args, in_dims)]
        outs.append(op(*sliced))
    stacked = [torch.stack([o[j] for o in outs]) for j in range(len(outs[0]))]
    if isinstance(outs[0], tuple):
        return tuple(stacked), (0,) * len(stacked)
    return stacked, [0] * len(stacked)


def _vmap_backward(info, in_dims, *args):
    return _vmap_by_slices(torch.ops.lstmkit.lstm_layer_backward.default, info, in_dims, args)


_registered = False
_LIB: Optional[torch.library.Library] = None  # holds the Autograd kernels' registration


def register(ext) -> None:
    """Register fake kernels, autograd and vmap rules (once, after the extension has loaded)."""
    global _registered, _FLOAT_LANES
    if _registered:
        return
    _FLOAT_LANES = int(ext.vector_width())
    lib = "lstmkit::"
    torch.library.register_fake(lib + "lstm_layer")(_layer_fake)
    torch.library.register_fake(lib + "lstm_layer_infer")(_infer_fake)
    torch.library.register_fake(lib + "lstm_layer_backward")(_backward_fake)
    torch.library.register_fake(lib + "pack_whh")(_pack_whh_fake)
    torch.library.register_fake(lib + "pack_cols")(_pack_cols_fake)
    global _LIB
    _LIB = torch.library.Library("lstmkit", "IMPL")
    ops = torch.ops.lstmkit
    _LIB.impl("lstm_layer", _autograd_kernel(ops.lstm_layer.default, _Layer), "Autograd", with_keyset=True)
    _LIB.impl("lstm_layer_backward", _autograd_kernel(ops.lstm_layer_backward.default, _LayerBackward, as_list=True),
              "Autograd", with_keyset=True)
    torch.library.register_vmap(lib + "lstm_layer", _vmap_layer(torch.ops.lstmkit.lstm_layer.default, 11))
    torch.library.register_vmap(lib + "lstm_layer_infer", _vmap_layer(torch.ops.lstmkit.lstm_layer_infer.default, 3))
    torch.library.register_vmap(lib + "lstm_layer_backward", _vmap_backward)
    from . import fused_stack_ops  # it imports this module (its error message), so here, not at the top

    fused_stack_ops.register(_LIB)  # the whole-stack operators
    _registered = True


_FLOAT_LANES = 8  # floats per vector register of the build (register() asks the extension)


def _lanes(dtype: torch.dtype) -> int:
    """Elements per vector register: the width of the tiles' panels."""
    return _FLOAT_LANES if dtype == torch.float32 else _FLOAT_LANES // 2


def _pack_whh_fake(whh_t: Tensor, gates: int) -> Tensor:
    P, GH = whh_t.shape
    L = _lanes(whh_t.dtype)
    H = GH // gates
    return whh_t.new_empty(((H + L - 1) // L, P, gates * L))


def _pack_cols_fake(m: Tensor) -> Tensor:
    K, N = m.shape
    W = 4 * _lanes(m.dtype)
    return m.new_empty(((N + W - 1) // W, K, W))


def any_requires_grad(call: LayerCall) -> bool:
    """Whether autograd will want a backward through this call."""
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(t, Tensor) and t.requires_grad for t in call.args()[:15])

