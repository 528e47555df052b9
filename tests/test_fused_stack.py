"""Whole stacks (torch.ops.lstmkit.lstm_stack_infer, lstm_stack, lstm_stack_backward) against the
layers one by one.

A call of a plain lk.LSTM (torch.nn.LSTM's model: no variants, no gates recorded) runs its whole
stack in one operator call: lstm_stack_infer without autograd, lstm_stack with it (its backward one
lstm_stack_backward call). At two threads they run a bidirectional layer's directions at once
(forward and backward), and inference runs a unidirectional stack's layers as a wavefront. Outputs,
final states and every gradient must be bit for bit those of the layer-by-layer operators at the
same thread count, with concurrency forced on, off and left to its rule; the inference plan must
follow every change of the weights.
"""
from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
from torch.library import opcheck

import lstmkit as lk
from lstmkit.kernels import fused
from test_fused import _require_kernel, concurrency, tiled_mode  # noqa: F401 (fixtures)


@pytest.fixture
def threads():
    """Set torch's threads for one test and restore them afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@contextlib.contextmanager
def _layers_one_by_one():
    """Within the block, calls run layer by layer (the per-layer operators), as variants do."""
    real = fused._stack_call
    fused._stack_call = lambda *a, **k: None
    try:
        yield
    finally:
        fused._stack_call = real


def _layer_by_layer(lstm: lk.LSTM, x: torch.Tensor, lengths=None, hx=None):
    """The same call through the per-layer operators."""
    with _layers_one_by_one():
        out, (h, c) = lstm(x, hx, lengths=lengths)
    return out.detach(), (h.detach(), c.detach())


def _assert_equal(got, want):
    assert torch.equal(got[0], want[0])
    assert torch.equal(got[1][0], want[1][0]) and torch.equal(got[1][1], want[1][1])


_SHAPES = list(itertools.product((1, 2, 3), (False, True), (1, 2, 5, 16), (1, 9, 40)))


@pytest.mark.parametrize("layers,bidirectional,B,T", _SHAPES)
@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_stack_is_bit_equal_to_the_layers_one_by_one(layers, bidirectional, B, T, mode, concurrency, threads):
    """Two threads: concurrent directions (bidirectional) and the wavefront (unidirectional, T >= 8)
    where every product is tiled (B >= 3 here), the layers in order elsewhere; lengths included."""
    threads(2)
    concurrency(mode)
    torch.manual_seed(layers * 100 + B * 10 + T)
    lstm = lk.LSTM(12, 32, layers, bidirectional=bidirectional).eval()
    x = torch.randn(T, B, 12)
    lengths = torch.randint(1, T + 1, (B,))
    ext = fused.loaded_extension()
    for lens in (None, lengths):
        want = _layer_by_layer(lstm, x.clone(), lens)
        before = ext.concurrent_runs()
        with torch.no_grad():
            got = lstm(x, lengths=lens)
        _assert_equal(got, want)
        tiled = ext.uses_tiled(False, B, 4 * 32 * 32)
        expected = mode != "off" and tiled and (bidirectional or (layers >= 2 and T >= 8))
        assert (ext.concurrent_runs() > before) == expected  # the concurrent paths really ran where they should


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("proj_size", [0, 8])
def test_untiled_and_projected_stacks_match_too(dtype, proj_size, concurrency, threads):
    """float64 (untiled) and projected layers never run concurrently: BLAS's low bits follow its
    threads. A float32 stack without projection does, with initial states given."""
    threads(2)
    concurrency("on")
    torch.manual_seed(1)
    lstm = lk.LSTM(12, 32, 2, bidirectional=True, proj_size=proj_size).to(dtype).eval()
    x = torch.randn(20, 5, 12, dtype=dtype)
    h0, c0 = torch.randn(4, 5, proj_size or 32, dtype=dtype), torch.randn(4, 5, 32, dtype=dtype)
    want = _layer_by_layer(lstm, x.clone(), hx=(h0, c0))
    before = fused.loaded_extension().concurrent_runs()
    with torch.no_grad():
        got = lstm(x, (h0, c0))
    _assert_equal(got, want)
    concurrent = dtype == torch.float32 and not proj_size
    assert (fused.loaded_extension().concurrent_runs() > before) == concurrent


def test_the_stack_runs_one_operator_call_per_forward(monkeypatch):
    """A plain call is one whole-stack operator call: lstm_stack_infer without autograd (or dropout
    between layers), lstm_stack with; variants and recorded gates run layer by layer."""
    _require_kernel()
    calls = []
    for name in ("_stack_infer", "_stack_train"):
        real = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    lstm = lk.LSTM(6, 8, 3, bidirectional=True).eval()
    x = torch.randn(4, 2, 6)
    with torch.no_grad():
        lstm(x)
        assert calls == ["_stack_infer"]
        lstm(x, return_gates=True)
        lk.LSTM(6, 8, 2, peephole=True).eval()(x)
        assert calls == ["_stack_infer"]
        lk.LSTM(6, 8, 2, dropout=0.5).train()(x)  # dropout between layers in training: its masks
        lk.LSTM(6, 8, 2, dropout=0.5).eval()(x)  # eval: no dropout
    assert calls == ["_stack_infer", "_stack_train", "_stack_infer"]
    lstm(x)  # autograd wants gradients of the weights
    assert calls[-1] == "_stack_train" and len(calls) == 4
    lk.LSTM(6, 8, 2, peephole=True)(x)
    lstm(x, return_gates=True)
    assert len(calls) == 4


def test_the_weight_plan_follows_every_change(concurrency):
    """The plan is cached per model: an optimizer step, load_state_dict or an in-place edit of any
    layer's weight must be seen by the next call."""
    torch.manual_seed(2)
    lstm = lk.LSTM(6, 16, 2, bidirectional=True).eval()
    x = torch.randn(12, 4, 6)

    def check():
        want = _layer_by_layer(lstm, x.clone())
        with torch.no_grad():
            got = lstm(x)
        _assert_equal(got, want)
        return got[0]

    first = check()
    with torch.no_grad():
        lstm.weight_hh_l1_reverse.mul_(0.5)  # not the plan's key (weight_hh_l0)
    second = check()
    assert not torch.equal(first, second)
    optimizer = torch.optim.SGD(lstm.parameters(), lr=0.1)
    lstm(x)[0].sum().backward()
    optimizer.step()
    third = check()
    assert not torch.equal(second, third)
    lstm.load_state_dict(lk.LSTM(6, 16, 2, bidirectional=True).state_dict())
    assert not torch.equal(third, check())


def test_decoding_step_by_step_equals_the_whole_sequence():
    """One-step decoding through the stack (T = 1, carried state) gives the whole sequence's steps."""
    torch.manual_seed(3)
    lstm = lk.LSTM(6, 16, 2).eval()
    x = torch.randn(10, 3, 6)
    with torch.no_grad():
        whole, (h_all, c_all) = lstm(x)
        state, steps = None, []
        for t in range(10):
            out, state = lstm(x[t : t + 1], state)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps), whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(state[0], h_all, rtol=0, atol=1e-6)


def _stack_args(layers=2, bidirectional=True, lengths=True, dtype=torch.float64):
    torch.manual_seed(4)
    lstm = lk.LSTM(5, 6, layers, bidirectional=bidirectional, proj_size=0).to(dtype)
    D = 2 if bidirectional else 1
    flat = []
    for k in range(layers):
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            flat += [getattr(lstm, n + sfx).detach() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] + [None]
    x = torch.randn(7, 3, 5, dtype=dtype)
    h0, c0 = torch.randn(layers * D, 3, 6, dtype=dtype), torch.randn(layers * D, 3, 6, dtype=dtype)
    return (x, h0, c0, flat, layers, bidirectional, torch.tensor([7, 2, 5]) if lengths else None, [])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_opcheck_stack(bidirectional):
    _require_kernel()
    opcheck(torch.ops.lstmkit.lstm_stack_infer.default, _stack_args(bidirectional=bidirectional))


def test_the_stack_operator_names_a_wrong_call():
    _require_kernel()
    args = list(_stack_args())
    args[3] = args[3][:-1]
    with pytest.raises(RuntimeError, match=r"expects 5 weights .* 20 for 2 layer\(s\) x 2 direction\(s\), got 19"):
        torch.ops.lstmkit.lstm_stack_infer(*args)
    args = list(_stack_args())
    args[6] = torch.tensor([8, 2, 5])
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, 7\]"):
        torch.ops.lstmkit.lstm_stack_infer(*args)


# --- training: lstm_stack and its backward ------------------------------------------------------

_TRAIN = [c for c in itertools.product((1, 2, 3), (False, True), (0, 8), (2, 5, 16), (1, 9, 40), (0.0, 0.3))
          if c[0] > 1 or not c[5]]  # dropout acts between layers only


def _train_step(lstm, x, lengths, hx):
    lstm.zero_grad()
    x = x.detach().requires_grad_()
    hx = tuple(t.detach().requires_grad_() for t in hx) if hx is not None else None
    torch.manual_seed(7)  # the dropout masks
    out, (h, c) = lstm(x, hx, lengths=lengths)
    (out.square().sum() + h.sum() + 2 * c.sum()).backward()
    grads = [x.grad] + ([t.grad for t in hx] if hx is not None else []) + [p.grad for p in lstm.parameters()]
    return [out.detach(), h.detach(), c.detach()] + grads


@pytest.mark.parametrize("layers,bidirectional,proj_size,B,T,dropout", _TRAIN)
@pytest.mark.parametrize("mode", ["auto", "on"])
def test_training_stack_is_bit_equal_to_the_layers_one_by_one(layers, bidirectional, proj_size, B, T, dropout, mode,
                                                              concurrency, threads):
    """Outputs, final states and the gradients of the input, the initial state and every weight,
    with lengths and dropout between layers (the same masks from the same seed), at two threads."""
    threads(2)
    concurrency(mode)
    torch.manual_seed(layers * 100 + B * 10 + T)
    lstm = lk.LSTM(12, 32, layers, bidirectional=bidirectional, proj_size=proj_size,
                   dropout=dropout if layers > 1 else 0.0)
    D, P = 2 if bidirectional else 1, proj_size or 32
    x = torch.randn(T, B, 12)
    hx = (torch.randn(layers * D, B, P), torch.randn(layers * D, B, 32))
    lengths = torch.randint(1, T + 1, (B,))
    ext = fused.loaded_extension()
    for lens, state in ((None, None), (lengths, hx)):
        before = ext.concurrent_runs()
        got = _train_step(lstm, x, lens, state)
        concurrent = ext.concurrent_runs() > before
        with _layers_one_by_one():
            want = _train_step(lstm, x, lens, state)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        # directions at once where every step product is tiled, forward and backward
        assert concurrent == (bidirectional and not proj_size and B >= 3 and T >= 4)


def _stack_inputs(layers=2, bidirectional=True, proj_size=0, dropout=True, requires_grad=True):
    torch.manual_seed(5)
    lstm = lk.LSTM(4, 5, layers, bidirectional=bidirectional, proj_size=proj_size).double()
    D, P, T, B = 2 if bidirectional else 1, proj_size or 5, 6, 3
    weights = []
    for k in range(layers):
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            weights += [getattr(lstm, n + sfx, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
    weights = [None if w is None else w.detach().clone().requires_grad_(requires_grad) for w in weights]
    x = torch.randn(T, B, 4, dtype=torch.float64, requires_grad=requires_grad)
    h0 = torch.randn(layers * D, B, P, dtype=torch.float64, requires_grad=requires_grad)
    c0 = torch.randn(layers * D, B, 5, dtype=torch.float64, requires_grad=requires_grad)
    masks = [(torch.rand(T, B, D * P, dtype=torch.float64) > 0.3).double() / 0.7 for _ in range(layers - 1)] if dropout else []
    return x, h0, c0, weights, layers, bidirectional, torch.tensor([6, 2, 4]), masks


@pytest.mark.parametrize("bidirectional,proj_size", [(False, 0), (True, 0), (True, 3)])
def test_training_stack_gradcheck_float64(bidirectional, proj_size, tiled_mode):
    """The hand-written backward through the whole stack, by finite differences: lengths, dropout
    masks, initial states and every weight; the steps tiled (as float32 runs them) and not."""
    _require_kernel()
    for tiled in ("on", "off"):
        tiled_mode(tiled)
        x, h0, c0, weights, L, bi, lengths, masks = _stack_inputs(bidirectional=bidirectional, proj_size=proj_size)
        present = [w for w in weights if w is not None]

        def f(x, h0, c0, *ws):
            it = iter(ws)
            full = [None if w is None else next(it) for w in weights]
            out, h_n, c_n, _ = torch.ops.lstmkit.lstm_stack(x, h0, c0, full, L, bi, lengths, masks)
            return out, h_n, c_n

        assert torch.autograd.gradcheck(f, (x, h0, c0, *present))


@pytest.mark.parametrize("bidirectional,proj_size,dropout", [(False, 0, False), (True, 0, True), (True, 3, True)])
def test_opcheck_training_stack(bidirectional, proj_size, dropout):
    _require_kernel()
    args = _stack_inputs(bidirectional=bidirectional, proj_size=proj_size, dropout=dropout)
    opcheck(torch.ops.lstmkit.lstm_stack.default, args)
    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    plain[3] = [None if w is None else w.detach() for w in args[3]]
    out, h_n, c_n, records = torch.ops.lstmkit.lstm_stack(*plain)
    grads = (torch.randn_like(out), None, torch.randn_like(c_n))
    opcheck(torch.ops.lstmkit.lstm_stack_backward.default, (*grads, *plain[:3], *plain[3:], out, records, True),
            test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_training_stack_has_no_double_backward():
    """create_graph=True gives first-order gradients; differentiating them again says why not."""
    _require_kernel()
    lstm = lk.LSTM(4, 5, 2, bidirectional=True).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
    with _layers_one_by_one():
        (want,) = torch.autograd.grad(lstm(x)[0].sum(), x)
    assert torch.equal(g, want)
    with pytest.raises(RuntimeError, match="fused backend has no double backward"):
        torch.autograd.grad(g.sum(), x)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["wavefront", "directions"])
def test_a_failing_layer_fails_the_call_without_hanging(bidirectional, concurrency, threads):
    """A layer that throws on its own thread stops the others' waits; the call raises its error."""
    threads(2)
    concurrency("on")
    args = list(_stack_args(layers=3, bidirectional=bidirectional, lengths=False, dtype=torch.float32))
    D = 2 if bidirectional else 1
    args[:3] = torch.randn(16, 5, 5), torch.zeros(3 * D, 5, 6), torch.zeros(3 * D, 5, 6)  # 16 steps, tiled (B = 5)
    weights = list(args[3])
    weights[5 * D] = torch.randn(24, 7)  # layer 1's w_ih: 7 input columns where 6·D come
    args[3] = weights
    before = fused.loaded_extension().concurrent_runs()
    with pytest.raises(RuntimeError, match="weight_ih is"):
        torch.ops.lstmkit.lstm_stack_infer(*args)
    assert fused.loaded_extension().concurrent_runs() > before


@pytest.mark.parametrize("bidirectional", [False, True])
def test_three_threads_run_concurrently_and_bit_equal(bidirectional, threads):
    """Auto runs the stack concurrently at three threads too (one idles); the results do not move."""
    threads(3)
    torch.manual_seed(6)
    lstm = lk.LSTM(12, 32, 3, bidirectional=bidirectional, dropout=0.2)
    x = torch.randn(30, 8, 12)
    got = _train_step(lstm, x, None, None)
    with _layers_one_by_one():
        want = _train_step(lstm, x, None, None)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    lstm.eval()
    with torch.no_grad():
        _assert_equal(lstm(x), _layer_by_layer(lstm, x))
