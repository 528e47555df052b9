"""The fused C++ backend is pinned to the reference backend, its slow twin.

Outputs, final states, every recorded gate and the gradients w.r.t. input, h0, c0 and every
parameter must agree over a hypothesis-generated space of shapes, lengths, layers, directions,
projections, dtypes and per-step GEMM paths. The build itself is tested too: in CI (CI=true) a
kernel that failed to compile fails here instead of silently falling back.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import lstmkit as lk
from conftest import assert_close
from lstmkit.kernels import RunSpec, fused, select_backend
from lstmkit.kernels.types import LSTMLayerParams

IN_CI = os.environ.get("CI", "").lower() == "true"


def _require_kernel():
    """The compiled module; in CI a build failure is a test failure, elsewhere a skip."""
    ext = fused.load_extension()
    if ext is None:
        if IN_CI:
            pytest.fail(f"the fused kernel did not build in CI: {fused.build_error()}")
        pytest.skip(f"the fused kernel did not build here: {fused.build_error()}")
    return ext


def _knob(setter: str, default):
    """A kernel switch for one test: yields its setter, and sets it back to default afterwards."""
    ext = _require_kernel()
    yield getattr(ext, setter)
    getattr(ext, setter)(default)


@pytest.fixture
def gemm_mode():
    """Set the kernel's per-step GEMM path for one test and restore the default afterwards."""
    yield from _knob("set_gemm_mode", "auto")


@pytest.fixture
def tiled_mode():
    """Force the tiled step products on or off (tiled_mode("on" | "off" | "auto")); restore auto afterwards.

    Auto runs them for float32 with AVX2 only; forcing them on lets the float64 gradchecks pin them.
    """
    yield from _knob("set_tiled", "auto")


@pytest.fixture
def fused_projection():
    """Tiled steps project x_t in their own tiles ("auto") or the input projection runs as its own
    pass by chunks ("off"); restore auto afterwards."""
    yield from _knob("set_fused_projection", "auto")


@pytest.fixture
def row_split():
    """Give each thread its own batch rows ("on"), split each step's units ("off") or choose ("auto"); restore auto."""
    yield from _knob("set_row_split", "auto")


@pytest.fixture
def grad_tiles():
    """Backward's input and weight gradients on the register tiles ("auto") or BLAS ("off"); restore auto."""
    yield from _knob("set_grad_tiles", "auto")


@pytest.fixture
def concurrency():
    """Force the whole stack's concurrency on or off (concurrency("on" | "off" | "auto")); restore auto."""
    yield from _knob("set_concurrency", "auto")


@pytest.fixture
def backward_chunk():
    """Set the rows per chunk of backward's step gradients (0: the default); restore it afterwards.

    The default chunk holds every step of these small tests; a few rows make backward flush its
    GEMMs chunk by chunk, across the boundaries where h_{t-1} and each row's first step fall.
    """
    yield from _knob("set_backward_chunk", 0)


class _CountKernelCalls(TorchDispatchMode):
    """Counts the fused kernel's operator calls as PyTorch's dispatcher sees them."""

    OPS = {"lstm_layer": "forward", "lstm_layer_backward": "backward", "lstm_layer_infer": "infer",
           "lstm_stack_infer": "stack", "lstm_stack": "stack_forward", "lstm_stack_backward": "stack_backward"}

    def __init__(self):
        super().__init__()
        self.calls = dict.fromkeys(self.OPS.values(), 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name.startswith("lstmkit::") and name[len("lstmkit::"):] in self.OPS:
            self.calls[self.OPS[name[len("lstmkit::"):]]] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def kernel_calls():
    _require_kernel()
    with _CountKernelCalls() as mode:
        yield mode.calls


def _spec(**kw) -> RunSpec:
    base = dict(cell="lstm", num_layers=1, bidirectional=False, bias=True, proj_size=0, dropout=0.0,
                training=True, record=False, device_type="cpu", dtype=torch.float32)
    base.update(kw)
    return RunSpec(**base)


# --- the kernel is really what runs -------------------------------------------------------------

def test_auto_on_cpu_runs_the_fused_kernel(kernel_calls):
    assert select_backend("auto", _spec()).name == "fused"
    assert select_backend("auto", _spec(dtype=torch.float64, record=True, num_layers=2)).name == "fused"
    calls = kernel_calls
    lstm = lk.LSTM(3, 4, num_layers=2, bidirectional=True)  # backend="auto"
    out, _ = lstm(torch.randn(5, 2, 3))
    out.sum().backward()  # the whole stack: one forward call, one backward call
    assert calls == {**dict.fromkeys(calls, 0), "stack_forward": 1, "stack_backward": 1}, calls
    out, _ = lk.LSTM(3, 4, num_layers=2, bidirectional=True, peephole=True)(torch.randn(5, 2, 3))
    out.sum().backward()  # a variant: layer by layer
    assert calls["forward"] == 4 and calls["backward"] == 4, f"fused kernel calls (2 layers x 2 directions): {calls}"


def test_build_failure_warns_once_and_auto_falls_back(monkeypatch):
    import torch.utils.cpp_extension as cpp

    def broken_load(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(cpp, "load", broken_load)
    monkeypatch.setattr(fused, "_ext", None)
    monkeypatch.setattr(fused, "_error", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.load_extension() is None
        assert fused.load_extension() is None
        backend = select_backend("auto", _spec())
        lk.LSTM(2, 3)(torch.randn(4, 1, 2))
    messages = [str(w.message) for w in caught if "fused CPU kernel" in str(w.message)]
    assert len(messages) == 1, messages
    assert "no compiler here" in messages[0]
    assert backend.name == "native"
    assert "could not be built" in fused.FusedBackend().unsupported(_spec())
    with pytest.raises(ValueError, match="could not be built"):
        lk.LSTM(2, 3, backend="fused")(torch.randn(4, 1, 2))


def test_unsupported_configurations_say_why():
    _require_kernel()
    b = fused.FusedBackend()
    assert b.unsupported(_spec()) is None
    assert "CPU only" in b.unsupported(_spec(device_type="cuda"))
    assert "rnn_tanh" in b.unsupported(_spec(cell="rnn_tanh"))
    assert "some_future_variant" in b.unsupported(_spec(variants=("some_future_variant",)))
    assert "float16" in b.unsupported(_spec(dtype=torch.float16))


# --- fused ≡ reference -----------------------------------------------------------------------

def _run_both(lstm: lk.LSTM, x, hx, lengths, record, dtype):
    """Outputs, states, gates and all gradients of one fixed loss, for fused and for reference."""
    results = []
    for backend in ("fused", "reference"):
        lstm.backend = backend
        xs = x.detach().clone().requires_grad_()
        hs = tuple(h.detach().clone().requires_grad_() for h in hx) if hx is not None else None
        res = lstm(xs, hs, lengths=lengths, return_gates=record)
        out, (h_n, c_n) = res[0], res[1]
        values = [out, h_n, c_n] + (list(res.gates) if record else [])
        gen = torch.Generator().manual_seed(7)
        loss = sum((v * torch.randn(v.shape, generator=gen, dtype=dtype)).sum() for v in values)
        inputs = [xs, *(hs or ()), *lstm.parameters()]
        gs = torch.autograd.grad(loss, inputs, allow_unused=True)
        gs = [torch.zeros_like(i) if g is None else g for g, i in zip(gs, inputs)]
        names = ["out", "h_n", "c_n"] + (["gate " + f for f in lk.LSTMGates._fields] if record else [])
        names += ["grad input"] + (["grad h0", "grad c0"] if hs else []) + [f"grad {n}" for n, _ in lstm.named_parameters()]
        results.append(dict(zip(names, [v.detach() for v in values] + gs)))
    return results


@st.composite
def configs(draw):
    T = draw(st.integers(1, 6))
    B = draw(st.integers(1, 4))
    H = draw(st.integers(1, 11))  # crosses the vector width (8 floats, 4 doubles): vector body and scalar tail
    lengths_kind = draw(st.sampled_from(["none", "full", "random"]))
    if lengths_kind == "none":
        lengths = None
    elif lengths_kind == "full":
        lengths = torch.full((B,), T, dtype=torch.long)
    else:
        lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))  # unsorted
    return dict(
        T=T, B=B, I=draw(st.integers(1, 5)), H=H,
        proj=draw(st.sampled_from([0, 0] + list(range(1, H)))),
        layers=draw(st.integers(1, 3)), bidir=draw(st.booleans()), bias=draw(st.booleans()),
        lengths=lengths, dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        record=draw(st.booleans()), with_hx=draw(st.booleans()), batch_first=draw(st.booleans()),
        gemm=draw(st.sampled_from(["auto", "loop", "blas", "aten"])),
        tiled=draw(st.sampled_from(["auto", "on", "off"])),
        projection=draw(st.sampled_from(["auto", "off"])),
        chunk=draw(st.sampled_from([0, 0, 1, 5])),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs())
def test_fused_matches_reference(cfg, gemm_mode, tiled_mode, fused_projection, backward_chunk):
    gemm_mode(cfg["gemm"])
    tiled_mode(cfg["tiled"])
    fused_projection(cfg["projection"])
    backward_chunk(cfg["chunk"])
    torch.manual_seed(cfg["seed"])
    dtype, T, B, H = cfg["dtype"], cfg["T"], cfg["B"], cfg["H"]
    lstm = lk.LSTM(cfg["I"], H, num_layers=cfg["layers"], bias=cfg["bias"], bidirectional=cfg["bidir"],
                   proj_size=cfg["proj"], batch_first=cfg["batch_first"], dtype=dtype)
    if cfg["bias"]:  # non-zero biases everywhere, so a mix-up between b_ih and b_hh would show
        with torch.no_grad():
            for name, p in lstm.named_parameters():
                if name.startswith("bias"):
                    p.uniform_(-0.5, 0.5)
    x = torch.randn((B, T, cfg["I"]) if cfg["batch_first"] else (T, B, cfg["I"]), dtype=dtype)
    LD, P = cfg["layers"] * (2 if cfg["bidir"] else 1), cfg["proj"] or H
    hx = (torch.randn(LD, B, P, dtype=dtype), torch.randn(LD, B, H, dtype=dtype)) if cfg["with_hx"] else None
    got, want = _run_both(lstm, x, hx, cfg["lengths"], cfg["record"], dtype)
    assert got.keys() == want.keys()
    for name in want:
        assert_close(got[name], want[name], dtype, name)
    # The inference entry (no grad, nothing recorded) ≡ the training forward ≡ the reference.
    lstm.backend = "fused"
    with torch.no_grad():
        out, (h_n, c_n) = lstm(x, hx, lengths=cfg["lengths"])
    for name, v in (("out", out), ("h_n", h_n), ("c_n", c_n)):
        assert_close(v, want[name], dtype, f"no-grad {name}")
        torch.testing.assert_close(v, got[name], rtol=0, atol=0, msg=f"no-grad {name} vs the training forward")


def test_gates_are_the_kernel_buffers_and_h_is_the_output():
    _require_kernel()
    lstm = lk.LSTM(3, 5, backend="fused").double()
    res = lstm(torch.randn(4, 2, 3, dtype=torch.float64), return_gates=True)
    g = res.gates.layer(0)
    assert torch.equal(g.h, res.output)
    assert torch.all((g.i > 0) & (g.i < 1)) and torch.all(g.g.abs() < 1)
    assert torch.equal(g.c[-1], res.state[1][0])


def test_packed_sequence_matches_reference():
    _require_kernel()
    torch.manual_seed(3)
    lstm = lk.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2).double()
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 7, 2)]
    packed = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    res = {}
    for backend in ("fused", "reference"):
        lstm.backend = backend
        out, (h, c) = lstm(packed)
        loss = (out.data ** 2).sum() + h.sum() + (c ** 3).sum()
        res[backend] = [out.data, h, c, *torch.autograd.grad(loss, list(lstm.parameters()))]
    for a, b in zip(res["fused"], res["reference"]):
        assert_close(a, b, torch.float64, "packed")


def test_dropout_between_layers_matches_reference():
    _require_kernel()
    lstm = lk.LSTM(3, 4, num_layers=3, dropout=0.5).double().train()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    outs = {}
    for backend in ("fused", "reference"):
        lstm.backend = backend
        torch.manual_seed(11)  # both consume the RNG identically: one dropout mask per layer boundary
        outs[backend] = lstm(x)[0]
    assert_close(outs["fused"], outs["reference"], torch.float64, "output with dropout")


@pytest.mark.parametrize("gemm", ["auto", "blas"])
def test_medium_sizes_with_parallel_rows_match_reference(gemm, gemm_mode):
    """Big enough that the elementwise passes split rows over threads and GEMMs go to BLAS."""
    gemm_mode(gemm)
    torch.manual_seed(5)
    lstm = lk.LSTM(24, 80, num_layers=2, bidirectional=True, proj_size=40).double()
    x = torch.randn(6, 70, 24, dtype=torch.float64)
    lengths = torch.randint(1, 7, (70,))
    got, want = _run_both(lstm, x, None, lengths, True, torch.float64)
    for name in want:
        assert_close(got[name], want[name], torch.float64, name)


# --- gradcheck and friends --------------------------------------------------------------------

@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("lengths", [None, [3, 1, 4]])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("gemm", ["loop", "blas"])
@pytest.mark.parametrize("tiled, projection", [("on", "auto"), ("on", "off"), ("off", "auto")],
                         ids=["tiled", "tiled-projection-pass", "row-split"])
@pytest.mark.parametrize("chunk", [0, 4], ids=["one-chunk", "chunks-of-2-steps"])
def test_gradcheck_fused_layer(proj, lengths, reverse, gemm, tiled, projection, chunk, gemm_mode, tiled_mode,
                               fused_projection, backward_chunk):
    gemm_mode(gemm)
    tiled_mode(tiled)
    fused_projection(projection)
    backward_chunk(chunk)
    torch.manual_seed(0)
    T, B, I, H = 4, 3, 2, 5
    P = proj or H
    d = dict(dtype=torch.float64, requires_grad=True)
    x, h0, c0 = torch.randn(T, B, I, **d), torch.randn(B, P, **d), torch.randn(B, H, **d)
    params = [torch.randn(4 * H, I, **d), torch.randn(4 * H, P, **d), torch.randn(4 * H, **d), torch.randn(4 * H, **d)]
    params.append(torch.randn(P, H, **d) if proj else None)
    lens = torch.tensor(lengths) if lengths else None

    def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *w_hr):
        p = LSTMLayerParams(w_ih, w_hh, b_ih, b_hh, w_hr[0] if w_hr else None)
        out, (h, c), gates = fused.fused_lstm_layer(x, h0, c0, p, lens, reverse=reverse, record=True)
        return (out, h, c, *gates[:5])

    inputs = (x, h0, c0, *[p for p in params if p is not None])
    # fast_mode checks random projections of the Jacobian (one backward each), not every entry:
    # the same bugs show, at a fraction of the calls.
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, fast_mode=True)


def test_gradcheck_full_network():
    _require_kernel()
    torch.manual_seed(1)
    lstm = lk.LSTM(2, 3, num_layers=2, bidirectional=True, proj_size=2, backend="fused").double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, h0, c0, *params):
        for p, v in zip(lstm.parameters(), params):
            p.data = v.detach()
        out, (h, c) = lstm(x, (h0, c0), lengths=torch.tensor([4, 2]))
        return out, h, c

    # Parameters are checked through the layer-level gradcheck; here: input and both states.
    assert torch.autograd.gradcheck(lambda x, h0, c0: f(x, h0, c0), (x, h0, c0), eps=1e-6, atol=1e-7, fast_mode=True)


def test_double_backward_raises_clearly():
    _require_kernel()
    lstm = lk.LSTM(2, 3, backend="fused").double()
    x = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="fused backend has no double backward"):
        torch.autograd.grad(g.sum(), x)


@pytest.mark.parametrize("B", [8, 13, 32])
def test_avx512_tiles_are_bit_equal_to_the_avx2_tiles(B):
    """Where the CPU has AVX-512, float32 tiles take 8 rows at a time in zmm registers, building
    every sum exactly as the AVX2 tiles do: outputs, states, inference and every gradient agree bit
    for bit with them (set_avx512("off"))."""
    ext = _require_kernel()
    if not ext.uses_avx512():
        pytest.skip("this CPU (or build) has no AVX-512 tiles")
    torch.manual_seed(B)
    lstm = lk.LSTM(20, 24, 2, bidirectional=True)
    x = torch.randn(9, B, 20)
    lengths = torch.randint(1, 10, (B,))
    results = []
    try:
        for mode in ("off", "auto"):
            ext.set_avx512(mode)
            lstm.zero_grad()
            xg = x.clone().requires_grad_()
            out, (h, c) = lstm(xg, lengths=lengths)
            (out.square().sum() + c.sum()).backward()
            with torch.no_grad():
                inferred = lstm(x, lengths=lengths)[0]
            results.append([out, h, c, inferred, xg.grad] + [p.grad for p in lstm.parameters()])
    finally:
        ext.set_avx512("auto")
    for a, b in zip(*results):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("B", [8, 16, 13])
def test_cells_side_by_side_equal_the_cells_one_by_one(B):
    """A tiled step runs the plain cells of a tile's rows side by side when every row is active,
    and one row at a time otherwise. A row that ended early sends its tile to the one-by-one path
    for the rest of the sequence, so the full-length rows' outputs, states and the recorded gates
    must come out the same bit for bit as in a batch where every row runs to the end."""
    _require_kernel()
    torch.manual_seed(B)
    lstm = lk.LSTM(12, 40, backend="fused")
    x = torch.randn(7, B, 12)
    short = torch.full((B,), 7)
    short[1::4] = 3  # a short row in every tile of 3, 4 or 8 rows
    full = short == 7
    results = []
    for lengths in (None, short):
        with torch.no_grad():
            inferred, (h_inf, c_inf) = lstm(x, lengths=lengths)
        out, (h, c), gates = lstm(x, lengths=lengths, return_gates=True)
        results.append([inferred[:, full], h_inf[:, full], c_inf[:, full], out[:, full], h[:, full], c[:, full]]
                       + [getattr(gates, n)[:, :, :, full] for n in ("i", "f", "g", "o", "c")])
    for a, b in zip(*results):
        assert torch.equal(a.detach(), b.detach())


def test_input_projection_in_the_tiles_matches_the_projection_pass(fused_projection):
    """Tiled steps take x_t W_ih^T into their own tiles, one chain of multiply-adds per pre-activation;
    the input projection as a pass of its own adds two chains. Outputs, states and every gradient
    agree to float32's precision, and differ in the last bits: the switch really changes the path."""
    _require_kernel()
    torch.manual_seed(3)
    lstm = lk.LSTM(64, 48, 2, bidirectional=True, backend="fused")
    x = torch.randn(6, 16, 64)
    results = []
    for mode in ("off", "auto"):
        fused_projection(mode)
        lstm.zero_grad()
        xg = x.clone().requires_grad_()
        out, (h, c) = lstm(xg)
        (out.square().sum() + c.sum()).backward()
        with torch.no_grad():
            inferred = lstm(x)[0]
        results.append([out, h, c, inferred, xg.grad] + [p.grad for p in lstm.parameters()])
    for a, b in zip(*results):
        assert_close(b.detach(), a.detach(), torch.float32, "fused projection vs the projection pass")
    assert not torch.equal(results[0][0], results[1][0])


def test_one_and_two_threads_agree():
    _require_kernel()
    torch.manual_seed(2)
    lstm = lk.LSTM(32, 128, num_layers=2, bidirectional=True, backend="fused")
    x = torch.randn(20, 64, 32)
    lengths = torch.randint(1, 21, (64,))
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            xs = x.clone().requires_grad_()
            res = lstm(xs, lengths=lengths, return_gates=True)
            loss = (res.output ** 2).sum() + res.state[1].sum() + res.gates.f.sum()
            grads = torch.autograd.grad(loss, [xs, *lstm.parameters()])
            results.append([res.output, *res.state, *res.gates, *grads])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        # float32 GEMM blocking may differ with the thread count: rounding only.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_kernel_loops_really_use_the_threads():
    """The kernel's at::parallel_for only forks when the extension is compiled with OpenMP.

    Built without -fopenmp it runs every loop on one thread whatever set_num_threads says; the
    results stay right, so only this probe notices.
    """
    ext = _require_kernel()
    if not torch.backends.openmp.is_available():
        pytest.skip("torch is not built with OpenMP")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ext.threads_used(2) == 2
        torch.set_num_threads(1)
        assert ext.threads_used(2) == 1
    finally:
        torch.set_num_threads(before)


def test_float32_forward_runs_tiled_steps_on_avx2():
    """The tiled step is the fast path: a build without AVX2 code (or a changed rule) would lose it silently."""
    ext = _require_kernel()
    if "avx2" not in fused._cpu_flags() or "fma" not in fused._cpu_flags():
        pytest.skip("this CPU has no AVX2/FMA")
    assert ext.vector_width() == 8
    assert ext.uses_tiled(False, 32) and not ext.uses_tiled(True, 32)
    assert not ext.uses_tiled(False, 1, 64 * 256)  # B = 1, small W_hh: the row-split step (measured faster)
    assert ext.uses_tiled(False, 1, 512 * 2048)  # B = 1, W_hh past L2: the tiles stream it (one-step decoding)
    lstm = lk.LSTM(8, 16, backend="fused")  # inference keeps the packed weights with the others
    with torch.no_grad():
        lstm(torch.randn(1, 4, 8))
    whh_t = fused._prepared(lstm._layer_params()[0][0]).whh_t
    assert torch.equal(fused._PACKED_WHH[lstm.weight_hh_l0][2], ext.pack_whh(whh_t, 4))  # gate-interleaved
    assert lstm.weight_ih_l0 in fused._PACKED_WIH
    ln = lk.LSTM(8, 16, layer_norm=True, backend="fused")  # LayerNorm reads W_hh^T in column panels instead
    with torch.no_grad():
        ln(torch.randn(1, 4, 8))
    whh_t = fused._prepared(ln._layer_params()[0][0]).whh_t
    assert torch.equal(fused._PACKED_WHH[ln.weight_hh_l0][2], ext.pack_cols(whh_t))


def test_saturated_gates_match_reference():
    """Pre-activations far beyond ±88 (float32 exp overflows): the fast exp must saturate, not NaN."""
    _require_kernel()
    torch.manual_seed(4)
    lstm = lk.LSTM(3, 9, bidirectional=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(100.0)
    x = torch.randn(5, 2, 3) * 10
    got, want = _run_both(lstm, x, None, torch.tensor([5, 3]), True, torch.float32)
    for name in want:
        assert torch.isfinite(got[name]).all(), name
        assert_close(got[name], want[name], torch.float32, name)


# --- the inference entry and its weight cache ------------------------------------------------

def test_no_grad_runs_the_inference_entry(kernel_calls):
    """No autograd wanted and no gates recorded: the forward-only entries, nothing else: one
    whole-stack call for torch.nn.LSTM's model, one per layer and direction with a variant."""
    calls = kernel_calls
    lstm = lk.LSTM(3, 4, num_layers=2, bidirectional=True, backend="fused")
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        lstm(x)
    assert calls == {**dict.fromkeys(calls, 0), "stack": 1}, calls
    with torch.inference_mode():
        lstm(x)
    assert calls["stack"] == 2, calls
    with torch.no_grad():
        lk.LSTM(3, 4, num_layers=2, bidirectional=True, peephole=True)(x)
    assert calls["infer"] == 4 and calls["stack"] == 2, calls
    for p in lstm.parameters():
        p.requires_grad_(False)
    lstm(x)  # grad mode on, but nothing requires grad
    assert calls["stack"] == 3 and calls["forward"] == 0, calls
    lstm(x.requires_grad_())  # the input wants a gradient: the autograd path
    assert calls["stack_forward"] == 1 and calls["stack"] == 3, calls
    with torch.no_grad():
        lstm(x, return_gates=True)  # gates are recorded by the training forward, layer by layer
    assert calls["forward"] == 4 and calls["stack"] == 3 and calls["infer"] == 4, calls


def _fused_vs_reference_no_grad(lstm, x, what):
    with torch.no_grad():
        lstm.backend = "fused"
        got = lstm(x)
        lstm.backend = "reference"
        want = lstm(x)
    for a, b, name in ((got[0], want[0], "out"), (got[1][0], want[1][0], "h_n"), (got[1][1], want[1][1], "c_n")):
        assert_close(a, b, x.dtype, f"{name} after {what}")
    return got[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weight_cache_sees_every_in_place_change(dtype):
    """W_hh^T, W_hr^T, b_ih + b_hh and, when the steps tile (float32, B >= 3), the packed W_hh^T
    and (cached on its own) W_ih^T are kept per weight version: every kind of update must show."""
    _require_kernel()
    torch.manual_seed(8)
    lstm = lk.LSTM(3, 6, proj_size=4, num_layers=2, backend="fused").to(dtype)
    x = torch.randn(5, 4, 3, dtype=dtype)
    before = _fused_vs_reference_no_grad(lstm, x, "the first call")
    p = lstm._layer_params()[0][0]
    tiled = dtype == torch.float32
    first, again = fused._prepared(p), fused._prepared(p)
    assert first.whh_t is again.whh_t, "an unchanged weight is prepared once"
    assert (lstm.weight_hh_l0 in fused._PACKED_WHH) == tiled and (lstm.weight_ih_l0 in fused._PACKED_WIH) == tiled
    if tiled:
        assert fused._whh_packed(p, 4) is fused._whh_packed(p, 4)
        assert fused._wih_packed(lstm.weight_ih_l0, 4) is fused._wih_packed(lstm.weight_ih_l0, 4)
    with torch.no_grad():
        lstm(x[:, :1])  # B = 1 never tiles: it reuses the entry, packed or not
    assert fused._prepared(p).whh_t is first.whh_t

    opt = torch.optim.SGD(lstm.parameters(), lr=0.1)
    lstm.backend = "reference"
    lstm(x)[0].sum().backward()
    opt.step()
    after_step = _fused_vs_reference_no_grad(lstm, x, "an optimizer step")
    assert not torch.allclose(before, after_step)

    other = lk.LSTM(3, 6, proj_size=4, num_layers=2).to(dtype)
    lstm.load_state_dict(other.state_dict())
    _fused_vs_reference_no_grad(lstm, x, "load_state_dict")

    for name in ("weight_hh_l0", "weight_ih_l0", "bias_hh_l0", "bias_ih_l1", "weight_ih_l1", "weight_hr_l1"):
        with torch.no_grad():
            getattr(lstm, name).add_(0.25)
        _fused_vs_reference_no_grad(lstm, x, f"an in-place add_ to {name}")

    lstm.weight_hh_l0.data = torch.randn(24, 4, dtype=dtype)  # new storage, version 0
    _fused_vs_reference_no_grad(lstm, x, "replacing .data")


def test_weight_cache_does_not_keep_dropped_weights():
    """weight_drop makes a fresh W_hh every call: its cache entry must go with it, while W_ih,
    unchanged, keeps its one packed copy (cached on its own)."""
    ext = _require_kernel()
    lstm = lk.LSTM(3, 4, weight_drop=0.5, backend="fused").train()
    x = torch.randn(4, 3, 3)
    n0, n0_packed = len(fused._PREPARED), len(fused._PACKED_WHH)
    packed = []
    with torch.no_grad():
        for _ in range(5):
            lstm(x)
            packed.append(fused._PACKED_WIH.get(lstm.weight_ih_l0))
    assert len(fused._PREPARED) <= n0 + 1 and len(fused._PACKED_WHH) <= n0_packed + 1
    if ext.uses_tiled(False, 3):
        assert all(entry is packed[0] for entry in packed), "W_ih was packed again"
