"""The fused backend: a C++ (ATen) CPU kernel with a hand-written backward through time.

The kernel (csrc/lstm_fused.cpp) runs one layer in one direction: the input projection by
chunks of steps, then per step the recurrent product and one fused, vectorized pass over the
gates, keeping the activated gates and cell states (which is what backward needs, and what
``return_gates`` returns, so recording them is nearly free). Backward walks the steps in
reverse computing the gate gradients with one product per step for dh_{t-1}; after each chunk
of steps, the chunk's weight, bias and input gradients are GEMMs, so no step-gradient buffer
spans the sequence. Layers and directions are composed by kernels.stack.run_stack: Python work
per layer, never per step.

Inference: when autograd wants nothing from a layer (grad mode off, or nothing requires grad)
and no gates are recorded, fused_lstm_layer calls the kernel's forward-only entry (``infer``)
instead of the autograd.Function: it stores no gates or cell states, only h (and the final
state), and takes W_hh^T, W_hr^T, b_ih + b_hh (_prepared) and the tiles' packed W_hh^T
(_whh_packed) and W_ih^T (_wih_packed) prepared once per weight version.

Threads (the kernel is compiled with -fopenmp, so its at::parallel_for loops share torch's
OpenMP pool): forward steps in float32 on AVX2 are tiled, one parallel region per step in which
each thread multiplies x_t and h_{t-1} by its hidden units' packed W_ih^T and W_hh^T panels in
registers, one chain of multiply-adds per pre-activation, and runs their cells (forward_loop_tiled in
the C++), so the input projection is no pass of its own; or, with a tile of batch rows per thread
and small weights, one region per layer in which each thread takes its own rows through every step.
Otherwise BLAS threads the GEMMs and the gate pass is split by rows. Backward steps: a row-split
pass for dG[t], then dG[t] W_hh on the tiles (or BLAS), by rows per thread as the forward; the
chunks' weight and input gradients on the tiles too (or BLAS).

Variants run inside the kernel's step loop with the same hand-written backward: peephole,
coupled (CIFG), recurrent dropout (a per-sequence mask on h_{t-1} in the recurrent GEMM),
zoneout (per-step masks, bool or floating point; eval mode's rate is never expanded to
(T, B, ·)) and LayerNorm (the input projection, the recurrent projection and c̃_t normalized per
row inside the loop: no torch passes over (T, B, GH) before or after the kernel). Input dropout
(run_stack, between layers) and weight drop (the module, on weight_hh before dispatch) need
nothing from the kernel. The masks are
sampled by the module before dispatch, so a fixed seed gives both backends the same masks.

Build: compiled with torch.utils.cpp_extension.load (ninja, the system C++ compiler) the first
time the backend is needed, and cached in torch's extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); later processes load the
cached library in well under a second. ``python -m lstmkit.kernels.fused`` builds it ahead of
time and reports the status. When the build fails, one warning is issued and the backend
reports itself unsupported, so ``backend="auto"`` falls back to "native" / "reference".

Shape legend: T steps, B batch, I input features, H hidden size, P size of h (proj_size or H).
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from .._masking import length_mask
from .._tracing import values_hidden
from . import fused_ops
from .backend import Backend, RunSpec, register_backend
from .fused_ops import LayerCall, any_requires_grad
from .stack import run_stack
from .types import LSTMGates, LSTMLayerParams, LSTMStepOptions

_OPS = torch.ops.lstmkit

_CSRC = Path(__file__).with_name("csrc")
_SOURCES = [_CSRC / "lstm_fused.cpp"]  # one translation unit; its parts are the headers beside it
_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_ext: Any = None
_error: Optional[str] = None  # why the extension could not be built, once it has been tried


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _openmp_flags() -> list[str]:
    """-fopenmp when torch runs on OpenMP, for compiling and for linking.

    at::parallel_for is a header template: its ``#pragma omp parallel`` only takes effect when
    the extension itself is compiled with -fopenmp. Without it every parallel_for in the kernel
    runs on one thread, silently (tests/test_fused.py::test_kernel_loops_really_use_the_threads checks it does not). The
    extension then needs libgomp.so.1, which resolves to the copy libtorch_cpu already loaded:
    one OpenMP runtime, one thread pool, sized by torch.set_num_threads.
    """
    return ["-fopenmp"] if torch.backends.openmp.is_available() else []


def _headers_digest(folder: Path = _CSRC) -> str:
    """A digest of a kernel's headers (this one's by default): torch's build cache hashes the listed
    sources and the flags, not what they include, so the digest rides in the flags and a changed
    header rebuilds."""
    digest = hashlib.sha256()
    for header in sorted(folder.glob("*.h")):
        digest.update(header.name.encode() + header.read_bytes())
    return digest.hexdigest()[:16]


def _compile_flags() -> list[str]:
    """-O3, OpenMP, plus AVX2/FMA code for the elementwise passes when this CPU has them.

    Not -march=native: the build is cached per machine by torch, but a shared home directory
    could carry it to a different CPU; AVX2+FMA is the common x86-64 level torch itself targets.
    """
    flags = ["-O3", "-fno-math-errno", *_openmp_flags(), f"-DLSTMKIT_HEADERS={_headers_digest()}"]
    if {"avx2", "fma"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    else:
        flags += ["-DCPU_CAPABILITY=DEFAULT"]
    return flags


def load_extension(verbose: bool = False) -> Any:
    """The compiled kernel module, building it on first use; None (after one warning) if that fails."""
    global _ext, _error
    if _ext is not None or _error is not None:
        return _ext
    with _lock:
        if _ext is not None or _error is not None:
            return _ext
        try:
            from torch.utils.cpp_extension import load

            _ext = load(
                name="lstmkit_fused",
                sources=[str(s) for s in _SOURCES],
                extra_cflags=_compile_flags(),
                extra_ldflags=_openmp_flags(),
                verbose=verbose,
            )
            fused_ops.register(_ext)
        except Exception as exc:  # compiler, ninja or headers missing, or a compile error
            _error = f"{type(exc).__name__}: {exc}".strip()
            warnings.warn(
                "lstmkit: the fused CPU kernel could not be built, so backend='auto' will use the "
                f"'native' or 'reference' backend instead (needs ninja and a C++ compiler). Cause: {_error[:2000]}",
                RuntimeWarning,
                stacklevel=2,
            )
    return _ext


@torch._dynamo.assume_constant_result
def available() -> bool:
    """Whether the kernel is loaded or can be built (building it on first use). Dynamo runs this
    eagerly while tracing and keeps the answer: the first call of a model under
    torch.compile(fullgraph=True) builds or loads the kernel without breaking the graph (the
    build's lock is no context manager Dynamo can trace)."""
    return load_extension() is not None


def library_path() -> str:
    """The kernel's shared library: all an AOTInductor package of an lk model needs loaded
    (``torch.ops.load_library(path)``) to run without lstmkit's Python. Builds it if needed."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError(f"lstmkit's fused kernel is not available: {_error}")
    return ext.__file__


def loaded_extension() -> Any:
    """The compiled kernel module if it is already loaded, else None (never builds it)."""
    return _ext


def build_error() -> Optional[str]:
    """Why the extension failed to build, or None (built, or not tried yet)."""
    return _error


def _mask(m: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """A mask as the kernel reads it: x's dtype, contiguous; zoneout's bool samples and stride-0
    eval-mode rates pass as they are (the kernel reads them a step at a time, never widening or
    materializing the whole (T, B, ·) mask)."""
    if m is None:
        return None
    m = m.detach()
    if m.dtype == torch.bool or (m.numel() > 0 and all(s == 0 or n == 1 for s, n in zip(m.stride(), m.shape))):
        return m
    return m.to(dtype=x.dtype).contiguous()


def fused_lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    p: LSTMLayerParams,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    record: bool = False,
    opts: LSTMStepOptions = LSTMStepOptions(),
) -> tuple[Tensor, tuple[Tensor, Tensor], Optional[LSTMGates]]:
    """Same contract as reference.lstm_layer: out (T,B,P), (h_n (B,P), c_n (B,H)), trace or None.

    Runs the variants of opts and p inside the kernel: coupled, peephole, recurrent dropout
    (opts.h_keep), zoneout (opts.zone_h, opts.zone_c) and LayerNorm (p.ln: the kernel normalizes
    the input projection, the recurrent projection and c̃_t row by row inside its loop, with a
    hand-written backward for all three). One operator call: torch.ops.lstmkit.lstm_layer when
    autograd or the caller wants the gates, else lstm_layer_infer.
    """
    if not available():
        raise RuntimeError(f"lstmkit's fused kernel is not available: {_error}")
    opts = opts._replace(h_keep=_mask(opts.h_keep, x), zone_h=_mask(opts.zone_h, x), zone_c=_mask(opts.zone_c, x))
    call = LayerCall(x.contiguous(), h0.contiguous(), c0.contiguous(), p, opts, lengths, reverse)
    if not record and not any_requires_grad(call):
        return _infer(call)
    out, h_n, c_n, gates, c, *_ = fused_ops.lstm_layer(*call.args())
    if not record:
        return out, (h_n, c_n), None
    if opts.coupled:
        i, g, o = gates.chunk(3, dim=-1)  # each (T, B, H), views of the kernel's own buffer
        f = 1 - i  # coupled: the forget gate is 1 - i
        if lengths is not None:  # recorded gates are zero past a sequence's length
            f = f * length_mask(lengths.to(x.device), x.shape[0]).t().unsqueeze(-1).to(f.dtype)  # (T, B, 1)
        return out, (h_n, c_n), LSTMGates(i, f, g, o, c, out)
    i, f, g, o = gates.chunk(4, dim=-1)  # each (T, B, H), views of the kernel's own buffer
    return out, (h_n, c_n), LSTMGates(i, f, g, o, c, out)


# The weights as the kernel's loop reads them, derived once per weight version: W_hh^T (P, GH),
# W_hr^T (H, P), b_ih + b_hh (GH,), and when the steps tile the packed copies the tiles read.
# Each cache is keyed by a weight tensor object (by identity; the entry goes when the tensor
# does) and checked against a fingerprint of every source: data_ptr, _version (bumped by every
# in-place change made through the tensor or its detached aliases — optimizer steps,
# load_state_dict's copy_, `with torch.no_grad(): w.add_(1)`), shape, strides, dtype. An entry
# holds detached aliases of its sources, so their storage cannot be freed and its address reused
# by another tensor at the same version. Not seen: writes through `w.data`, which has its own
# version counter (torch's own warning about .data).
_PREPARED = WeakIdKeyDictionary()   # by w_hh: _Prepared
_PACKED_WHH = WeakIdKeyDictionary()  # by w_hh: W_hh^T packed for the tiles
_PACKED_WIH = WeakIdKeyDictionary()  # by w_ih: W_ih^T packed for the tiled input projection


def version_stamp(t: Tensor) -> Any:
    """(version counter, storage address) of t, which every in-place change through t and every
    swap of its .data move. A tensor made under torch.inference_mode has no version counter, so an
    in-place change to it (load_state_dict inside inference mode) cannot be seen: its stamp is a
    fresh object that equals nothing, and whatever was made from it is made again."""
    return object() if t.is_inference() else (t._version, t.data_ptr())


def _fingerprint(t: Optional[Tensor]):
    return None if t is None else (version_stamp(t), t.shape, t.stride(), t.dtype)


def _cached(cache: WeakIdKeyDictionary, key: Tensor, sources: tuple, tag: Any, make: Callable[[], Any]) -> Any:
    """make()'s value, from cache[key] while every source (and tag) is as it was when it was made."""
    fp = (tuple(_fingerprint(t) for t in sources), tag)
    hit = cache.get(key)
    if hit is not None and hit[0] == fp:
        return hit[2]
    with torch.no_grad():
        value = make()
    cache[key] = (fp, tuple(None if t is None else t.detach() for t in sources), value)
    return value


class _Prepared(NamedTuple):
    whh_t: Tensor                  # W_hh^T (P, GH)
    bias: Optional[Tensor]         # b_ih + b_hh (GH,)
    whr_t: Optional[Tensor]        # W_hr^T (H, P)


def _prepared(p: LSTMLayerParams) -> _Prepared:
    """The weights of p as the kernel reads them, from the cache when still valid."""
    def make() -> _Prepared:
        bias = None
        if p.b_ih is not None:
            bias = (p.b_ih if p.b_hh is None else p.b_ih + p.b_hh).detach().contiguous()
        return _Prepared(p.w_hh.detach().t().contiguous(), bias,
                         None if p.w_hr is None else p.w_hr.detach().t().contiguous())

    return _cached(_PREPARED, p.w_hh, (p.w_hh, p.b_ih, p.b_hh, p.w_hr), None, make)


def _whh_packed(p: LSTMLayerParams, gates: int, prepared: Optional[_Prepared] = None) -> Tensor:
    """W_hh^T packed for the register tiles: gate-interleaved panels for the tiled steps, or with
    LayerNorm (which normalizes h W_hh^T before any cell runs) column panels. Every inference call
    would otherwise pack it again (about one step's product); it is made the first time a call
    tiles, so a model only ever run untiled (float64, small batches of small weights) holds no packed
    copy. prepared: _prepared(p) when the caller has it already (one cache look-up less per call)."""
    whh_t, ln = (prepared or _prepared(p)).whh_t, p.ln is not None
    return _cached(_PACKED_WHH, p.w_hh, (p.w_hh,), (gates, ln),
                   lambda: _OPS.pack_cols(whh_t) if ln else _OPS.pack_whh(whh_t, gates))


def _wih_packed(w_ih: Tensor, gates: int) -> Tensor:
    """W_ih^T in the gate-interleaved panels W_hh^T has (pack_whh), which the tiled steps read to
    project x_t in their own register tiles (MKL's sgemm would pack it again on every call: at
    one-step decoding that costs more than the projection). Keyed by w_ih itself: weight_drop makes
    a fresh W_hh every call, and W_ih, unchanged, need not be packed again."""
    return _cached(_PACKED_WIH, w_ih, (w_ih,), gates, lambda: _OPS.pack_whh(w_ih.detach().t().contiguous(), gates))


def _infer(call: LayerCall) -> tuple[Tensor, tuple[Tensor, Tensor], None]:
    """fused_lstm_layer without autograd: nothing recorded. In eager the weights come prepared
    from the caches above; a traced call (compile, export, meta) leaves that to the operator, so
    the graph holds only the weights themselves."""
    if values_hidden(call.x):
        out, h_n, c_n = torch.ops.lstmkit.lstm_layer_infer(*call.args())
        return out, (h_n, c_n), None
    x, p, ln = call.x, call.p, call.p.ln
    tiled = _ext.uses_tiled(x.dtype == torch.float64, x.shape[1], p.w_hh.numel())
    prep = _prepared(p)
    gates = 3 if call.opts.coupled else 4
    whh_packed = _whh_packed(p, gates, prep) if tiled else None
    wih_packed = _wih_packed(p.w_ih, gates) if tiled and p.w_ih is not None else None
    with torch.no_grad():
        out, h_n, c_n = torch.ops.lstmkit.lstm_layer_infer(
            *call.args(), prep.whh_t, prep.bias, prep.whr_t, None if ln else whh_packed, whh_packed if ln else None,
            wih_packed,
        )
    return out, (h_n, c_n), None


# Whole stacks: torch.nn.LSTM's own model (no variants, nothing recorded) runs as one operator call
# (fused_stack_ops) instead of one per layer and direction: lstm_stack_infer when no gradient is
# wanted, lstm_stack (with its one backward, lstm_stack_backward) when one is. It saves one-step
# decoding the per-layer Python (cache look-ups, state plumbing: about as long as a small step
# itself), and it is where the kernel runs a bidirectional layer's two directions at once and a
# unidirectional stack's layers as a wavefront (csrc/concurrency.h). The inference plan (the
# weights and their prepared copies, flat, as the operator takes them) is cached per model, keyed
# by the first layer's W_hh and checked against every weight's fingerprint, so a call with
# unchanged weights re-assembles nothing.
_STACK_PLANS = WeakIdKeyDictionary()  # by params[0][0].w_hh: (fingerprint, sources, (weights, prepared))


def _stack_call(spec: RunSpec, x: Tensor, state: tuple, params, layer_opts, input_masks) -> Optional[str]:
    """"infer" or "train" when a call runs as one whole-stack operator (eager, no variants, nothing
    recorded), else None."""
    if spec.record or spec.variants or layer_opts is not None or input_masks is not None:
        return None
    if values_hidden(x) or x.device.type != "cpu":
        return None
    if torch.is_grad_enabled() and (x.requires_grad or any(s.requires_grad for s in state) or any(
            t is not None and t.requires_grad for layer in params for p in layer for t in p[:5])):
        return "train"
    return "train" if dropout_between_layers(spec) else "infer"


def dropout_between_layers(spec: RunSpec) -> bool:
    return spec.training and spec.dropout > 0 and spec.num_layers > 1


def _flat_weights(params) -> list:
    return [t for layer in params for p in layer for t in (p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr)]


def _stack_plan(params, tiled: bool) -> tuple[list, list]:
    """(weights, prepared) for lstm_stack_infer, from the plan cache while every weight is as it was."""
    sources = tuple(_flat_weights(params))

    def make() -> tuple[list, list]:
        prepared = []
        for layer in params:
            for p in layer:
                prep = _prepared(p)
                prepared += [prep.whh_t, prep.bias, prep.whr_t, _whh_packed(p, 4, prep) if tiled else None,
                             _wih_packed(p.w_ih, 4) if tiled else None]
        return [None if t is None else t.detach() for t in sources], prepared

    return _cached(_STACK_PLANS, params[0][0].w_hh, sources, tiled, make)


def stack_infer_plan(params, B: int, dtype: torch.dtype) -> tuple[list, list]:
    """(weights, prepared) that lstm_stack_infer takes for a plain stack of params run on B rows of
    dtype: the prepared copies include the tiles' packed weights when such a call tiles. A caller
    that keeps the plan (one-step decoding, lstmkit.decoding) must make it again when a weight
    changes; _stack_infer looks it up in the plan cache on every call instead."""
    tiled = _ext.uses_tiled(dtype == torch.float64, B, params[0][0].w_hh.numel())
    return _stack_plan(params, tiled)


def stack_infer(x: Tensor, h0: Tensor, c0: Tensor, plan: tuple[list, list], num_layers: int, bidirectional: bool,
                lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """out (T, B, D·P), h_n, c_n of a plain stack from its stack_infer_plan, without autograd."""
    if torch.is_grad_enabled():  # a decoding loop usually runs without: then no context to enter and leave
        with torch.no_grad():
            return stack_infer(x, h0, c0, plan, num_layers, bidirectional, lengths)
    weights, prepared = plan
    return _OPS.lstm_stack_infer(x, h0, c0, weights, num_layers, bidirectional, lengths, prepared)


def _stack_infer(spec: RunSpec, x: Tensor, state: tuple, params, lengths: Optional[Tensor]):
    plan = stack_infer_plan(params, x.shape[1], x.dtype)
    out, h_n, c_n = stack_infer(x, *state, plan, spec.num_layers, spec.bidirectional, lengths)
    return out, (h_n, c_n), None


def _dropout_masks(spec: RunSpec, x: Tensor, P: int) -> list:
    """The masks torch's dropout would multiply each layer's input by (layers 1 … L-1), drawn as it
    draws them (empty_like → bernoulli_(1 - p) → div_(1 - p); p = 1 draws nothing), in layer order, so
    a seeded run gets the masks the layer-by-layer path gets."""
    if not dropout_between_layers(spec):
        return []
    T, B, D, p = x.shape[0], x.shape[1], 2 if spec.bidirectional else 1, spec.dropout
    shape = (T, B, D * P)
    if p == 1:
        return [x.new_zeros(shape) for _ in range(spec.num_layers - 1)]
    return [x.new_empty(shape).bernoulli_(1 - p).div_(1 - p) for _ in range(spec.num_layers - 1)]


def _stack_train(spec: RunSpec, x: Tensor, state: tuple, params, lengths: Optional[Tensor]):
    h0, c0 = state
    masks = _dropout_masks(spec, x, h0.shape[-1])
    out, h_n, c_n, _ = _OPS.lstm_stack(x, h0, c0, _flat_weights(params), spec.num_layers, spec.bidirectional,
                                       lengths, masks)
    return out, (h_n, c_n), None


# The variants (RunSpec.variants names) the fused kernel runs: all of lk.LSTM's today. weight_drop
# needs nothing here (the module drops weight_hh before dispatch) and input_dropout is applied by
# run_stack; a variant added to the module later stays on the reference until listed here.
FUSED_VARIANTS = ("peephole", "coupled", "layer_norm", "zoneout", "recurrent_dropout", "input_dropout")


class FusedBackend(Backend):
    name = "fused"

    def unsupported(self, spec: RunSpec) -> Optional[str]:
        if spec.device_type not in ("cpu", "meta"):  # meta: the operators' fake kernels give the shapes
            return f"the fused kernel runs on CPU only, not {spec.device_type}"
        if spec.cell != "lstm":
            return f"the fused kernel implements the LSTM only, not {spec.cell}"
        missing = [v for v in spec.variants if v not in FUSED_VARIANTS]
        if missing:
            return (f"the fused kernel has no {', '.join(missing)} (it runs "
                    f"{', '.join(FUSED_VARIANTS)}; the reference backend runs them all)")
        if spec.dtype not in _DTYPES:
            return f"the fused kernel supports float32 and float64, not {spec.dtype}"
        if not available():
            return f"the fused kernel could not be built ({(_error or '')[:200]})"
        return None

    def run(self, spec, x, state, params, lengths, layer_opts=None, input_masks=None):
        whole = _stack_call(spec, x, state, params, layer_opts, input_masks)
        if whole == "infer":
            return _stack_infer(spec, x, state, params, lengths)
        if whole == "train":
            return _stack_train(spec, x, state, params, lengths)
        # input_masks (variational input dropout) are applied by run_stack between layers.
        return run_stack(
            fused_lstm_layer, x, state, params, lengths, spec.dropout, spec.training, spec.record, layer_opts, input_masks
        )


register_backend(FusedBackend())


def _main(argv: list[str]) -> int:
    """``python -m lstmkit.kernels.fused``: build (or load the cached) kernel and say how it went."""
    ext = load_extension(verbose="-v" in argv)
    if ext is None:
        print(f"fused kernel: NOT available: {_error}", file=sys.stderr)
        return 1
    cache = os.environ.get("TORCH_EXTENSIONS_DIR") or "torch's default extensions dir (~/.cache/torch_extensions)"
    print(f"fused kernel: ready ({ext.__file__}); direct BLAS: {ext.has_blas()}; "
          f"vector width: {ext.vector_width()} floats; cache: {cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
