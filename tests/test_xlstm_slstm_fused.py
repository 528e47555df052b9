"""sLSTM's fused C++ kernel ≡ its reference loop (outputs, states, gates, every gradient) over a
hypothesis-generated space; gradcheck of the hand-written backward; the operators' opcheck."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmkit as lk
from conftest import assert_close
from lstmkit.xlstm import slstm_fused

@pytest.fixture(autouse=True, scope="module")
def kernel():
    assert slstm_fused.load_extension(), "the fused sLSTM kernel must build here (CI has a compiler)"


def _run(m, backend, x, hx, lengths, record):
    m.backend = backend
    res = m(x, hx, lengths=lengths, return_gates=record)
    values = [res[0], *res[1]] + (list(res.gates) if record else [])
    gen = torch.Generator().manual_seed(7)
    loss = sum((v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for v in values)
    inputs = [x, *(hx or ()), *m.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return [v.detach() for v in values] + list(grads)


@st.composite
def configs(draw):
    T, B = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    heads = draw(st.sampled_from([1, 2, 3]))
    lengths = None
    if draw(st.booleans()):
        lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    return dict(T=T, B=B, I=draw(st.integers(1, 4)), H=heads * draw(st.integers(1, 3)), heads=heads,
                layers=draw(st.integers(1, 2)), bidir=draw(st.booleans()), bias=draw(st.booleans()),
                forget_gate=draw(st.sampled_from(["sigmoid", "exp"])), lengths=lengths,
                dtype=draw(st.sampled_from([torch.float32, torch.float64])), record=draw(st.booleans()),
                with_hx=draw(st.booleans()), batch_first=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs())
def test_fused_matches_reference(cfg):
    torch.manual_seed(cfg["seed"])
    dtype, T, B, H = cfg["dtype"], cfg["T"], cfg["B"], cfg["H"]
    m = lk.sLSTM(cfg["I"], H, num_layers=cfg["layers"], bias=cfg["bias"], bidirectional=cfg["bidir"],
                 batch_first=cfg["batch_first"], num_heads=cfg["heads"], forget_gate=cfg["forget_gate"], dtype=dtype)
    x = torch.randn((B, T, cfg["I"]) if cfg["batch_first"] else (T, B, cfg["I"]), dtype=dtype, requires_grad=True)
    hx = None
    if cfg["with_hx"]:
        LD = cfg["layers"] * (2 if cfg["bidir"] else 1)
        hx = [torch.randn(LD, B, H, dtype=dtype) for _ in range(4)]
        hx[2] = hx[2].abs() * (torch.rand(LD, B, H) > 0.3)  # some empty (n = 0) and some carried memories
        hx = tuple(s.requires_grad_() for s in hx)
    got = _run(m, "fused", x, hx, cfg["lengths"], cfg["record"])
    want = _run(m, "reference", x, hx, cfg["lengths"], cfg["record"])
    for k, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, dtype, f"value {k}")
    m.backend = "fused"
    with torch.no_grad():  # the inference op: bit for bit the recording forward's values
        out, state = m(x, hx, lengths=cfg["lengths"])
    for k, v in enumerate([out, *state]):
        torch.testing.assert_close(v, got[k], rtol=0, atol=0)


def test_gradcheck_of_the_operator_float64():
    torch.manual_seed(0)
    T, B, I, H = 4, 3, 2, 3
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(4 * H, I, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4 * H, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(4 * H, H, dtype=torch.float64) * 0.5).requires_grad_()
    h0, c0, m0 = (torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(3))
    n0 = (torch.rand(B, H, dtype=torch.float64) + 0.5).requires_grad_()
    lengths = torch.tensor([4, 1, 3])
    for reverse in (False, True):
        for exp_forget in (False, True):
            def f(x, w_ih, bias, w, h0, c0, n0, m0):  # every output: out, final state, gates (and raw ĩ, f̃), c, n, m
                return torch.ops.lstmkit_xlstm.slstm_forward(x, w_ih, bias, w, h0, c0, n0, m0, lengths, reverse,
                                                             exp_forget)
            assert torch.autograd.gradcheck(f, (x, w_ih, bias, w, h0, c0, n0, m0))


def _op_args(dtype=torch.float32, lengths=True, reverse=False, exp_forget=False, requires_grad=True):
    torch.manual_seed(1)
    T, B, I, H = 5, 3, 2, 4
    args = [torch.randn(T, B, I, dtype=dtype), torch.randn(4 * H, I, dtype=dtype), torch.randn(4 * H, dtype=dtype),
            torch.randn(4 * H, H, dtype=dtype) * 0.3]
    args += [torch.randn(B, H, dtype=dtype) for _ in range(2)] + [torch.rand(B, H, dtype=dtype), torch.randn(B, H, dtype=dtype)]
    args = [a.requires_grad_(requires_grad) for a in args]
    return (*args, torch.tensor([5, 2, 4]) if lengths else None, reverse, exp_forget)


@pytest.mark.parametrize("lengths, reverse, exp_forget", [(False, False, False), (True, True, True), (True, False, True)])
def test_opcheck_forward(lengths, reverse, exp_forget):
    args = _op_args(torch.float64, lengths, reverse, exp_forget)
    torch.library.opcheck(torch.ops.lstmkit_xlstm.slstm_forward.default, args)


@pytest.mark.parametrize("lengths, reverse", [(False, False), (True, True)])
def test_opcheck_inference(lengths, reverse):
    args = _op_args(torch.float32, lengths, reverse, requires_grad=False)
    torch.library.opcheck(torch.ops.lstmkit_xlstm.slstm_inference.default, args)


def test_opcheck_backward():
    fwd = _op_args(torch.float64, requires_grad=False)
    out = torch.ops.lstmkit_xlstm.slstm_forward(*fwd)
    g = [torch.randn_like(t) for t in out]
    x, w_ih, bias, w, h0, c0, n0, m0, lengths, reverse, exp_forget = fwd
    args = (*g, w, h0, c0, n0, m0, lengths, reverse, exp_forget, out[0], *out[5:])
    torch.library.opcheck(torch.ops.lstmkit_xlstm.slstm_backward.default, args)
    args_none = (g[0], None, None, None, None, None, None, None, None, *args[9:])
    torch.library.opcheck(torch.ops.lstmkit_xlstm.slstm_backward.default, args_none)


def test_no_overflow_with_large_preactivations_float32():
    torch.manual_seed(3)
    m = lk.sLSTM(4, 16, num_heads=4, forget_gate="exp", backend="fused")
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(40.0)
    x = (torch.randn(2000, 2, 4) * 30).requires_grad_()
    res = m(x, return_gates=True)
    assert all(torch.isfinite(v).all() for v in res.gates)
    res.output.sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_auto_runs_fused_on_cpu_and_fused_refuses_what_it_cannot_run():
    torch.manual_seed(0)
    m = lk.sLSTM(3, 4)
    x = torch.randn(5, 2, 3)
    assert m._resolve_backend(x) == "fused"
    m.backend = "reference"
    assert m._resolve_backend(x) == "reference"
    half = lk.sLSTM(3, 4, dtype=torch.bfloat16, backend="fused")
    with pytest.raises(ValueError, match="backend 'fused' cannot run this call: it runs float32 and float64"):
        half(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    half.backend = "auto"
    out, _ = half(torch.randn(5, 2, 3, dtype=torch.bfloat16))  # falls back to the reference loop
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("heads", [1, 4])
def test_fused_matches_reference_where_steps_use_blas(heads):
    """Per-step products above the kernel's small-product loop (B·4H·H > 2^15) go to BLAS."""
    torch.manual_seed(5)
    m = lk.sLSTM(5, 48, num_heads=heads, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 8, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3, 4, 2, 4, 4, 3])
    got = _run(m, "fused", x, None, lengths, True)
    want = _run(m, "reference", x, None, lengths, True)
    for k, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, torch.float64, f"value {k}")


def test_torch_compile_fullgraph_runs_the_operators():
    """The layer traces into one graph (fake kernels, registered autograd) with the same values and gradients."""
    from lstmkit.xlstm.slstm_reference import SLSTMLayerParams

    torch.manual_seed(0)
    T, B, I, H = 5, 3, 4, 6
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in [(4 * H, I), (4 * H, H // 2), (4 * H,), (4 * H,)]]
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(B, H, dtype=torch.float64)

    def f(x, w_ih, w_hh, b_ih, b_hh):
        out, state, _ = slstm_fused.fused_slstm_layer(x, zero, zero, zero, zero, SLSTMLayerParams(w_ih, w_hh, b_ih, b_hh),
                                                      lengths=torch.tensor([5, 2, 4]), reverse=True)
        return (out * out).sum() + state[1].sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(x, *params)
    want = f(x, *params)
    assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, [x, *params]), torch.autograd.grad(want, [x, *params])):
        assert_close(a, b)


def test_operator_checks_its_arguments():
    args = list(_op_args(requires_grad=False))
    bad_lengths = list(args)
    bad_lengths[8] = torch.tensor([5, 6, 1])
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, 5\], got 6"):
        torch.ops.lstmkit_xlstm.slstm_forward(*bad_lengths)
    bad_w = list(args)
    bad_w[3] = torch.zeros(16, 3)
    with pytest.raises(RuntimeError, match=r"w_hh must be \(4H, dh\) = \(16, dh\) with dh dividing H = 4"):
        torch.ops.lstmkit_xlstm.slstm_inference(*bad_w)
    bad_w_ih = list(args)
    bad_w_ih[1] = torch.zeros(16, 5)
    with pytest.raises(RuntimeError, match=r"w_ih must be \(4H, I\) with I = 2 of x's dtype, got \[16, 5\]"):
        torch.ops.lstmkit_xlstm.slstm_forward(*bad_w_ih)
