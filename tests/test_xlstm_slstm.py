"""lk.sLSTM's reference: equations (golden values, the unstabilized form), stability, gradients,
lengths, layouts, heads, states and validation."""
from __future__ import annotations

import math

import pytest
import torch

import lstmkit as lk
from conftest import assert_close


def _model(*args, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return lk.sLSTM(*args, dtype=dtype, backend="reference", **kw)


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_golden_values_with_constant_weights():
    """One unit, every weight 0.5 (input) / 0.25 (recurrent), biases 0, x = 1 then 2."""
    m = _model(1, 1)
    with torch.no_grad():
        m.weight_ih_l0.fill_(0.5)
        m.weight_hh_l0.fill_(0.25)
        m.bias_ih_l0.zero_()
        m.bias_hh_l0.zero_()
    res = m(torch.tensor([[1.0], [2.0]], dtype=torch.float64), return_gates=True)
    # step 1 from the empty state: m_1 = ĩ = 0.5, i' = 1, f' = 0, c = z, n = 1
    h1 = _sig(0.5) * math.tanh(0.5)
    assert h1 == pytest.approx(0.2876491, abs=1e-7)
    # step 2: every pre-activation is 0.5·2 + 0.25·h1
    a = 1.0 + 0.25 * h1
    log_f = math.log(_sig(a))
    m2 = max(log_f + 0.5, a)
    i2, f2 = math.exp(a - m2), math.exp(log_f + 0.5 - m2)
    c2 = f2 * math.tanh(0.5) + i2 * math.tanh(a)
    n2 = f2 * 1.0 + i2
    h2 = _sig(a) * c2 / n2
    g = res.gates
    expected = {"h": [h1, h2], "c": [math.tanh(0.5), c2], "n": [1.0, n2], "m": [0.5, m2], "i": [1.0, i2], "f": [0.0, f2],
                "z": [math.tanh(0.5), math.tanh(a)], "o": [_sig(0.5), _sig(a)]}
    for name, values in expected.items():
        got = getattr(g, name).reshape(-1).tolist()
        assert got == pytest.approx(values, rel=1e-12, abs=1e-12), name
    assert res.output.reshape(-1).tolist() == pytest.approx([h1, h2], rel=1e-12)


def _unstabilized(x, m: lk.sLSTM, forget_gate):
    """The paper's equations without the stabilizer, written independently: dense recurrent
    matrix built entry by entry from the head blocks, i = exp(ĩ), f = σ(f̃) or exp(f̃)."""
    H, NH = m.hidden_size, m.num_heads
    dh = H // NH
    w = m.weight_hh_l0.detach()
    dense = torch.zeros(4 * H, H, dtype=x.dtype)
    for r in range(4 * H):
        head = (r % H) // dh
        dense[r, head * dh:(head + 1) * dh] = w[r]
    T, B, _ = x.shape
    h = torch.zeros(B, H, dtype=x.dtype)
    c, n = torch.zeros_like(h), torch.zeros_like(h)
    hs, cs, ns = [], [], []
    for t in range(T):
        pre = x[t] @ m.weight_ih_l0.detach().T + m.bias_ih_l0.detach() + h @ dense.T + m.bias_hh_l0.detach()
        i_, f_, z_, o_ = pre.chunk(4, -1)
        i = torch.exp(i_)
        f = torch.sigmoid(f_) if forget_gate == "sigmoid" else torch.exp(f_)
        c = f * c + i * torch.tanh(z_)
        n = f * n + i
        h = torch.sigmoid(o_) * c / n
        hs.append(h), cs.append(c), ns.append(n)
    return torch.stack(hs), torch.stack(cs), torch.stack(ns)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("heads", [1, 2])
def test_stabilized_equals_unstabilized_on_small_inputs(forget_gate, heads):
    m = _model(3, 4, num_heads=heads, forget_gate=forget_gate, seed=heads)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    res = m(x, return_gates=True)
    h, c, n = _unstabilized(x, m, forget_gate)
    g = res.gates.layer(0)
    assert_close(res.output, h, what="h")
    scale = torch.exp(g.m)  # the stabilized c and n are the paper's divided by exp(m_t)
    assert_close(g.c * scale, c, what="c")
    assert_close(g.n * scale, n, what="n")


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_no_overflow_where_the_unstabilized_form_overflows(forget_gate):
    torch.manual_seed(3)
    m = lk.sLSTM(4, 8, num_heads=2, forget_gate=forget_gate, backend="reference")
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(40.0)
    x = (torch.randn(1500, 2, 4) * 30).requires_grad_()
    h_plain, _, _ = _unstabilized(x.detach(), m, forget_gate)
    assert not torch.isfinite(h_plain).all()  # the inputs do overflow exp(ĩ) without m
    res = m(x, return_gates=True)
    g = res.gates
    pre_i = (x.detach() @ m.weight_ih_l0.detach()[:8].T).abs().max()
    assert pre_i > 200  # pre-activations far beyond exp's float32 range
    for name in g._fields:
        assert torch.isfinite(getattr(g, name)).all(), name
    res.output.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_gradcheck_float64(forget_gate):
    m = _model(2, 4, num_layers=2, bidirectional=True, num_heads=2, forget_gate=forget_gate)
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    state = [torch.randn(4, 3, 4, dtype=torch.float64) for _ in range(4)]
    state[2] = state[2].abs() + 0.5  # n0 > 0: a non-empty memory, so m0 matters
    state = [s.requires_grad_() for s in state]
    params = list(m.parameters())
    lengths = torch.tensor([4, 2, 3])

    def f(x, h0, c0, n0, m0, *ps):
        out, s = torch.func.functional_call(m, dict(zip([n for n, _ in m.named_parameters()], ps)),
                                            (x, (h0, c0, n0, m0)), {"lengths": lengths})
        return (out, *s)

    assert torch.autograd.gradcheck(f, (x, *state, *params), fast_mode=True)


def test_lengths_match_each_sequence_run_alone():
    m = _model(3, 4, num_layers=2, bidirectional=True, num_heads=2)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, state = m(x, lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        alone, s_alone = m(x[:L, b:b + 1])
        assert_close(out[:L, b:b + 1], alone, what=f"output of sequence {b}")
        assert (out[L:, b] == 0).all()
        for got, want in zip(state, s_alone):
            assert_close(got[:, b:b + 1], want, what=f"final state of sequence {b}")
    res = m(x, lengths=lengths, return_gates=True)
    for name in res.gates._fields:
        assert (getattr(res.gates, name)[:, :, 2:, 1] == 0).all(), name


def test_layouts_batch_first_and_unbatched_agree():
    m = _model(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, state = m(x)
    m.batch_first = True
    out_bf, state_bf = m(x.transpose(0, 1))
    assert_close(out_bf.transpose(0, 1), out)
    one, s_one = m(x[:, 0])  # unbatched ignores batch_first
    assert_close(one, out[:, 0])
    for a, b in zip(s_one, state):
        assert_close(a, b[:, 0])
    res = m(x.transpose(0, 1), return_gates=True)
    assert res.gates.c.shape == (2, 1, 2, 5, 4)


def test_state_carries_across_calls():
    m = _model(3, 4, num_layers=2, num_heads=4)
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    out, state = m(x)
    first, s1 = m(x[:4])
    second, s2 = m(x[4:], s1)
    assert_close(torch.cat([first, second]), out)
    for a, b in zip(s2, state):
        assert_close(a, b)


def test_one_head_has_torch_lstm_names_and_shapes():
    m = lk.sLSTM(5, 7, num_layers=2, bidirectional=True)
    ref = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    heads = lk.sLSTM(5, 8, num_heads=4)
    assert heads.weight_hh_l0.shape == (32, 2)


def test_heads_do_not_mix():
    """A unit's state depends on its own head of the previous state only (one layer)."""
    m = _model(3, 4, num_heads=2)
    h0 = torch.zeros(1, 1, 4, dtype=torch.float64, requires_grad=True)
    zeros = [torch.zeros(1, 1, 4, dtype=torch.float64) for _ in range(3)]
    out, _ = m(torch.randn(6, 1, 3, dtype=torch.float64), (h0, *zeros))
    (g_head0,) = torch.autograd.grad(out[:, :, :2].sum(), h0, retain_graph=True)
    (g_head1,) = torch.autograd.grad(out[:, :, 2:].sum(), h0)
    assert (g_head0[..., 2:] == 0).all() and (g_head0[..., :2] != 0).all()
    assert (g_head1[..., :2] == 0).all() and (g_head1[..., 2:] != 0).all()


def test_forget_bias_initialization():
    m = lk.sLSTM(3, 4, forget_bias=2.5)
    assert (m.bias_ih_l0[4:8] == 2.5).all() and (m.bias_hh_l0[4:8] == 0).all()


@pytest.mark.parametrize(
    "kwargs, call, message",
    [
        (dict(num_heads=3), None, "num_heads must divide hidden_size=4"),
        (dict(forget_gate="tanh"), None, "forget_gate must be one of"),
        (dict(backend="native"), None, "backend must be one of"),
        (dict(forget_bias=float("nan")), None, "forget_bias must be a finite number"),
        ({}, lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4),) * 2), "hx must be a tuple of 4 tensors"),
        ({}, lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 5),) * 4), r"h0 must have shape \(1, 2, 4\)"),
        ({}, lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4),) * 2 + (-torch.ones(1, 2, 4), torch.zeros(1, 2, 4))),
         "n0 .* must be >= 0"),
        ({}, lambda m: m(torch.randn(5, 2, 2)), "input_size=3"),
        ({}, lambda m: m(torch.randn(5, 2, 3), lengths=[5, 6]), r"lengths must lie in \[1, 5\]"),
    ],
)
def test_errors(kwargs, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        m = lk.sLSTM(3, 4, **kwargs)
        call(m)


def test_packed_sequence_matches_padded_with_lengths():
    m = _model(3, 4, bidirectional=True, num_heads=2)
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 6, 2)]
    packed = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    out, state = m(packed)
    padded = torch.nn.utils.rnn.pad_sequence(seqs)
    want, want_state = m(padded, lengths=[4, 6, 2])
    got, lengths = torch.nn.utils.rnn.pad_packed_sequence(out)
    assert_close(got, want)
    for a, b in zip(state, want_state):
        assert_close(a, b)
    with pytest.raises(ValueError, match="either a PackedSequence or lengths="):
        m(packed, lengths=[4, 6, 2])
