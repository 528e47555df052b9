"""Whole-stack inference (torch.ops.lstmkit.lstm_stack_infer) against the layers one by one.

An eval-mode, no-grad call of a plain lk.LSTM (torch.nn.LSTM's model: no variants) runs its whole
stack in one operator call, which at two threads runs a bidirectional layer's directions at once
and a unidirectional stack's layers as a wavefront. Its outputs and final states must be bit for
bit those of the layer-by-layer operators (what a call with autograd runs) at the same thread
count, with concurrency forced on, off and left to its rule; its weight plan must follow every
change of the weights.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.library import opcheck

import lstmkit as lk
from lstmkit.kernels import fused
from test_fused import _require_kernel


@pytest.fixture
def concurrency():
    """Force the stack's concurrency on or off (concurrency("on" | "off" | "auto")); restore auto."""
    ext = _require_kernel()
    yield ext.set_concurrency
    ext.set_concurrency("auto")


@pytest.fixture
def threads():
    """Set torch's threads for one test and restore them afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _layer_by_layer(lstm: lk.LSTM, x: torch.Tensor, lengths=None, hx=None):
    """The same call through the per-layer operators: with autograd wanted, no stack call is made."""
    out, (h, c) = lstm(x.requires_grad_(), hx, lengths=lengths)
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
    """A plain eval no-grad call is one lstm_stack_infer; variants, recording and autograd are not."""
    _require_kernel()
    calls = []
    real = fused._stack_infer
    monkeypatch.setattr(fused, "_stack_infer", lambda *a, **k: calls.append(1) or real(*a, **k))
    lstm = lk.LSTM(6, 8, 3, bidirectional=True).eval()
    x = torch.randn(4, 2, 6)
    with torch.no_grad():
        lstm(x)
        assert len(calls) == 1
        lstm(x, return_gates=True)
        lk.LSTM(6, 8, 2, peephole=True).eval()(x)
        lk.LSTM(6, 8, 2, dropout=0.5).train()(x)  # dropout between layers in training
        assert len(calls) == 1
        lk.LSTM(6, 8, 2, dropout=0.5).eval()(x)  # eval: no dropout
        assert len(calls) == 2
    lstm(x)  # autograd wants gradients of the weights
    assert len(calls) == 2


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
