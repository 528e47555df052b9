"""sLSTM's fused backend: the C++ kernel (xlstm/csrc/slstm_fused.cpp) as PyTorch operators.

The extension defines ``torch.ops.lstmkit_xlstm.slstm_forward``, ``slstm_backward`` and
``slstm_inference`` (the forward without records, for calls autograd wants nothing from) with
TORCH_LIBRARY; this module gives them fake kernels (shapes from shapes, for torch.compile and
torch.export) and registers the backward op as the forward's autograd, so every caller runs the
hand-written backward through time.

What the operator takes: x, weight_ih, b_ih + b_hh (summed here, so autograd splits the
gradient) and the head-wise weight_hh (4H, dh) as stored (the kernel multiplies per head, never
by the dense block-diagonal). It runs the input projection by chunks of steps and the recurrence,
on lk.LSTM's register tiles where its forward uses them. Its backward op returns the gradient of
the pre-activations dG (T, B, 4H) with those of weight_hh and the initial state; the input
projection's gradients (dx, dW_ih, the bias's) are GEMMs of dG, made here in the autograd formula.

Built like lk.LSTM's fused kernel (same compiler flags; it includes that kernel's headers), on
first use, into torch's extension directory ($TORCH_EXTENSIONS_DIR) as "lstmkit_slstm". If the build fails, one warning, and
backend="auto" uses the reference loop.

Shape legend: T steps, B batch, I input features, H hidden size.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ..kernels.fused import _compile_flags, _headers_digest, _openmp_flags
from .slstm_reference import SLSTMGates, SLSTMLayerParams

_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCE = _CSRC / "slstm_fused.cpp"
_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_loaded = False
_error: Optional[str] = None


def _headers_flag() -> str:
    """This kernel's own headers' digest as a define (_compile_flags carries lk.LSTM's)."""
    return f"-DLSTMKIT_SLSTM_HEADERS={_headers_digest(_CSRC)}"


def load_extension(verbose: bool = False) -> bool:
    """Build (first time) and load the kernel, registering its fake kernels and autograd; False if that fails."""
    global _loaded, _error
    if _loaded or _error is not None:
        return _loaded
    with _lock:
        if _loaded or _error is not None:
            return _loaded
        try:
            from torch.utils.cpp_extension import load

            load(
                name="lstmkit_slstm",
                sources=[str(_SOURCE)],
                # no implicit contraction of a * b + c into an FMA: the compiler would choose it per
                # instantiation, and inference must be bit for bit the recording forward
                extra_cflags=[*_compile_flags(), _headers_flag(), "-ffp-contract=off"],
                extra_ldflags=_openmp_flags(),
                is_python_module=False,
                verbose=verbose,
            )
            _register_python_parts()
            _loaded = True
        except Exception as exc:  # compiler, ninja or headers missing, or a compile error
            _error = f"{type(exc).__name__}: {exc}".strip()
            warnings.warn(
                "lstmkit: the fused sLSTM kernel could not be built, so backend='auto' will use the "
                f"reference loop instead (needs ninja and a C++ compiler). Cause: {_error[:2000]}",
                RuntimeWarning,
                stacklevel=2,
            )
    return _loaded


@torch._dynamo.assume_constant_result
def available() -> bool:
    """load_extension() as Dynamo sees it: run eagerly while tracing, its answer kept, so a model's
    first call under torch.compile(fullgraph=True) loads the kernel without a graph break."""
    return load_extension()


def unsupported(x: Tensor) -> Optional[str]:
    """None when the fused kernel can run on x, else why not."""
    if x.device.type != "cpu":
        return f"it runs on CPU only, got a tensor on {x.device}"
    if x.dtype not in _DTYPES:
        return f"it runs float32 and float64, got {x.dtype}"
    if not available():
        return f"the kernel could not be built ({_error})"
    return None


def _register_python_parts() -> None:
    """Fake kernels of the ops and the forward's autograd (the backward op)."""

    @torch.library.register_fake("lstmkit_xlstm::slstm_forward")
    def _(x, w_ih, bias, w_hh, h0, c0, n0, m0, lengths, reverse, exp_forget):
        T, B, _ = x.shape
        H = w_ih.shape[0] // 4
        state = [h0.new_empty(B, H) for _ in range(4)]
        return (x.new_empty(T, B, H), *state, x.new_empty(T, B, 6 * H), *(x.new_empty(T, B, H) for _ in range(3)))

    @torch.library.register_fake("lstmkit_xlstm::slstm_inference")
    def _(x, w_ih, bias, w_hh, h0, c0, n0, m0, lengths, reverse, exp_forget):
        T, B, _ = x.shape
        H = w_ih.shape[0] // 4
        return (x.new_empty(T, B, H), *(h0.new_empty(B, H) for _ in range(4)))

    @torch.library.register_fake("lstmkit_xlstm::slstm_backward")
    def _(g_out, g_hn, g_cn, g_nn, g_mn, g_gates, g_cs, g_ns, g_ms, w_hh, h0, c0, n0, m0, lengths, reverse,
          exp_forget, out, gates, cs, ns, ms):
        T, B, H = out.shape
        return (out.new_empty(T, B, 4 * H), torch.empty_like(w_hh), *(torch.empty_like(s) for s in (h0, c0, n0, m0)))

    def setup_context(ctx, inputs, output):
        x, w_ih, bias, w_hh, h0, c0, n0, m0, lengths, reverse, exp_forget = inputs
        out, _, _, _, _, gates, cs, ns, ms = output
        ctx.save_for_backward(x, w_ih, w_hh, h0, c0, n0, m0, lengths, out, gates, cs, ns, ms)
        ctx.reverse, ctx.exp_forget, ctx.has_bias = reverse, exp_forget, bias is not None
        ctx.set_materialize_grads(False)

    def backward(ctx, g_out, g_hn, g_cn, g_nn, g_mn, g_gates, g_cs, g_ns, g_ms):
        x, w_ih, w_hh, h0, c0, n0, m0, lengths, out, gates, cs, ns, ms = ctx.saved_tensors
        d_g, *grads = torch.ops.lstmkit_xlstm.slstm_backward(
            g_out, g_hn, g_cn, g_nn, g_mn, g_gates, g_cs, g_ns, g_ms, w_hh, h0, c0, n0, m0, lengths,
            ctx.reverse, ctx.exp_forget, out, gates, cs, ns, ms,
        )  # d_g: (T, B, 4H), the pre-activations' gradient; then x W_ih^T + bias's
        need = ctx.needs_input_grad
        d_g2 = d_g.reshape(-1, d_g.shape[-1])
        d_x = d_g @ w_ih if need[0] else None
        d_w_ih = d_g2.t() @ x.reshape(-1, x.shape[-1]) if need[1] else None
        d_bias = d_g2.sum(0) if ctx.has_bias and need[2] else None
        return (d_x, d_w_ih, d_bias, *grads, None, None, None)

    torch.library.register_autograd("lstmkit_xlstm::slstm_forward", backward, setup_context=setup_context)


def fused_slstm_layer(
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
    """Same contract as slstm_reference.slstm_layer, run by the fused operator."""
    if not available():
        raise RuntimeError(f"lstmkit's fused sLSTM kernel is not available: {_error}")
    bias = p.b_ih if p.b_hh is None else p.b_ih + p.b_hh  # (4H,) or None
    args = (x.contiguous(), p.w_ih.contiguous(), bias, p.w_hh.contiguous(), h0.contiguous(), c0.contiguous(), n0.contiguous(), m0.contiguous(),
            lengths, reverse, forget_gate == "exp")
    if not record and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:8])):
        out, h_n, c_n, n_n, m_n = torch.ops.lstmkit_xlstm.slstm_inference(*args)
        return out, (h_n, c_n, n_n, m_n), None
    out, h_n, c_n, n_n, m_n, gates, cs, ns, ms = torch.ops.lstmkit_xlstm.slstm_forward(*args)
    trace = None
    if record:
        i, f, z, o = gates[..., : 4 * out.shape[-1]].chunk(4, dim=-1)  # each (T, B, H)
        trace = SLSTMGates(i, f, z, o, cs, ns, ms, out)
    return out, (h_n, c_n, n_n, m_n), trace

