"""lk.mLSTM: its recurrent, parallel and chunkwise forms pinned to each other (outputs, final
states, gradients), to an independent unstabilized loop, across calls, lengths and layouts."""
from __future__ import annotations

import math

import pytest
import torch

import lstmkit as lk
from conftest import assert_close
from lstmkit.xlstm import mlstm_forms

FORMS = ["recurrent", "parallel", "chunkwise"]


def _model(*args, seed=0, **kw):
    torch.manual_seed(seed)
    return lk.mLSTM(*args, dtype=torch.float64, **kw)


def _run(m, form, x, state, lengths, chunk_size=3):
    m.form, m.chunk_size = form, chunk_size
    inputs = [x, *state, *m.parameters()]
    out, s = m(x, tuple(state), lengths=lengths)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() + sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in s)
    return out, s, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("layers, bidirectional, heads", [(1, False, 1), (2, True, 2)])
def test_forms_agree_outputs_states_gradients(forget_gate, layers, bidirectional, heads):
    m = _model(3, 4, num_layers=layers, bidirectional=bidirectional, num_heads=heads, forget_gate=forget_gate)
    LD, d = layers * (2 if bidirectional else 1), 4 // heads
    x = torch.randn(8, 3, 3, dtype=torch.float64, requires_grad=True)
    state = [torch.randn(LD, 3, heads, d, d, dtype=torch.float64), torch.randn(LD, 3, heads, d, dtype=torch.float64),
             torch.randn(LD, 3, heads, dtype=torch.float64)]
    state = [s.requires_grad_() for s in state]
    lengths = torch.tensor([8, 3, 5])
    want_out, want_state, want_grads = _run(m, "recurrent", x, state, lengths)
    for form in ("parallel", "chunkwise"):
        out, s, grads = _run(m, form, x, state, lengths)
        assert_close(out, want_out, what=f"{form} output")
        for a, b, name in zip(s, want_state, ("C", "n", "m")):
            assert_close(a, b, what=f"{form} final {name}")
        for k, (a, b) in enumerate(zip(grads, want_grads)):
            assert_close(a, b, what=f"{form} gradient {k}")


def test_matches_an_unstabilized_loop():
    """C_t = f C + i v kᵀ, n_t = f n + i k, h = o ⊙ C q / max(|nᵀq|, 1) with i = exp(ĩ): no m at all.
    The stabilized forms add ε·exp(m_t) to that denominator (ε = 1e-6), hence the tolerance."""
    m = _model(3, 4, num_heads=2)
    x = torch.randn(10, 2, 3, dtype=torch.float64) * 0.5
    H, NH, d = 4, 2, 2
    W, b = m.weight_ih_l0.detach(), m.bias_ih_l0.detach()
    C = torch.zeros(2, NH, d, d, dtype=torch.float64)
    n = torch.zeros(2, NH, d, dtype=torch.float64)
    hs = []
    for t in range(10):
        p = x[t] @ W.T + b
        q, k, v, o = (p[:, j * H:(j + 1) * H].reshape(2, NH, d) for j in range(4))
        k = k / math.sqrt(d)
        i = torch.exp(p[:, 4 * H:4 * H + NH])[..., None]
        f = torch.sigmoid(p[:, 4 * H + NH:])[..., None]
        C = f[..., None] * C + i[..., None] * torch.einsum("bhi,bhj->bhij", v, k)
        n = f * n + i * k
        den = torch.clamp((n * q).sum(-1, keepdim=True).abs(), min=1.0)
        hs.append((torch.sigmoid(o) * torch.einsum("bhij,bhj->bhi", C, q) / den).reshape(2, H))
    for form in FORMS:
        m.form = form
        out, _ = m(x)
        torch.testing.assert_close(out, torch.stack(hs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_chunked_calls_compose(form):
    m = _model(3, 4, num_layers=2, num_heads=2, form=form, chunk_size=4)
    x = torch.randn(13, 2, 3, dtype=torch.float64)
    out, state = m(x)
    a, s = m(x[:6])
    b, s = m(x[6:], s)
    assert_close(torch.cat([a, b]), out)
    for got, want in zip(s, state):
        assert_close(got, want)


def test_long_sequence_chunkwise_equals_parallel_and_stays_finite():
    torch.manual_seed(1)
    m = lk.mLSTM(4, 8, num_heads=2, chunk_size=64)
    with torch.no_grad():
        m.weight_ih_l0.mul_(30.0)  # pre-activations in the hundreds: exp(ĩ) overflows without m
    x = torch.randn(300, 2, 4) * 10
    x.requires_grad_()
    out, state = m(x)
    assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in state)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    m.double()  # the forms agree to float64 rounding over 300 steps (float32's differ at ~1e-3 relative here)
    x64 = x.detach().double()
    out_c, _ = m(x64)
    m.form = "parallel"
    out_p, _ = m(x64)
    assert_close(out_c, out_p)


def test_gradcheck_float64():
    m = _model(2, 4, num_heads=2, bidirectional=True, chunk_size=2)
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ps):
        out, s = torch.func.functional_call(m, dict(zip(names, ps)), (x,), {"lengths": torch.tensor([5, 3])})
        return (out, *s)

    assert torch.autograd.gradcheck(f, (x, *m.parameters()), fast_mode=True)


def test_lengths_match_each_sequence_run_alone():
    m = _model(3, 4, num_layers=2, bidirectional=True, num_heads=2, chunk_size=2)
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5])
    out, state = m(x, lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        alone, s_alone = m(x[:L, b:b + 1])
        assert_close(out[:L, b:b + 1], alone, what=f"sequence {b}")
        assert (out[L:, b] == 0).all()
        for got, want in zip(state, s_alone):
            assert_close(got[:, b:b + 1], want)


def test_layouts_and_state_shapes():
    m = _model(3, 8, num_heads=2, num_layers=2, batch_first=True)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, (C, n, mm) = m(x)
    assert out.shape == (2, 5, 8) and C.shape == (2, 2, 2, 4, 4) and n.shape == (2, 2, 2, 4) and mm.shape == (2, 2, 2)
    one, (C1, _, _) = m(x[0])
    assert_close(one, out[0])
    assert C1.shape == (2, 2, 4, 4)
    assert m.weight_ih_l1.shape == (4 * 8 + 4, 8)


@pytest.mark.parametrize(
    "kwargs, call, message",
    [
        (dict(num_heads=3), None, "num_heads must divide hidden_size=4"),
        (dict(form="quadratic"), None, "form must be one of"),
        (dict(chunk_size=0), None, "chunk_size must be a positive integer"),
        ({}, lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 1, 4, 4),)), "hx must be a tuple of 3 tensors"),
        ({}, lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 2, 1, 3), torch.zeros(1, 2, 1))),
         r"n0 must have shape \(1, 2, 1, 4\)"),
    ],
)
def test_errors(kwargs, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        m = lk.mLSTM(3, 4, **kwargs)
        call(m)


def test_empty_memory_rule_keeps_tiny_input_gates_from_vanishing():
    """ĩ far below log f at the first step: without the rule i' = exp(ĩ − 0) underflows and n = 0."""
    q = torch.ones(1, 1, 3, 2)
    k = torch.ones(1, 1, 3, 2)
    v = torch.ones(1, 1, 3, 2)
    i_pre = torch.full((1, 1, 3), -200.0)
    log_f = torch.zeros(1, 1, 3)
    for form in (mlstm_forms.mlstm_recurrent, mlstm_forms.mlstm_parallel):
        h, (C, n, m) = form(q, k, v, i_pre, log_f)
        # each step: m = ĩ = −200, i' = f' = 1, so n counts the steps; h = C q / exp(200) ≈ 0 as
        # the unstabilized C_u q / max(|n_uᵀq|, 1) with C_u ~ exp(−200)
        assert m.item() == -200.0 and torch.equal(n, torch.full_like(n, 3.0)) and torch.equal(C, torch.full_like(C, 3.0))
        assert torch.isfinite(h).all() and h.abs().max() < 1e-30


def test_packed_sequence_matches_padded_with_lengths():
    m = _model(3, 4, bidirectional=True, num_heads=2, chunk_size=2)
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 6, 2)]
    out, state = m(torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False))
    want, want_state = m(torch.nn.utils.rnn.pad_sequence(seqs), lengths=[4, 6, 2])
    assert_close(torch.nn.utils.rnn.pad_packed_sequence(out)[0], want)
    for a, b in zip(state, want_state):
        assert_close(a, b)
