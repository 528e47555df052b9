"""lk.LSTM against torch.nn.LSTM with copied weights: outputs, final states and every gradient."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit as lk
from conftest import assert_close, grads

BACKENDS = ["reference", "native", "auto"]


def make_pair(dtype, backend, **kw):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 6, **kw).to(dtype)
    ours = lk.LSTM(5, 6, **kw, backend=backend).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def compare(ours, ref, x, hx, dtype):
    """Run both on the same leaves and compare outputs, states and all gradients."""
    leaves_ours = [x] + list(hx or []) + list(ours.parameters())
    leaves_ref = [x] + list(hx or []) + list(ref.parameters())
    out_o, (h_o, c_o) = ours(x, hx)
    out_r, (h_r, c_r) = ref(x, hx)
    assert out_o.shape == out_r.shape and h_o.shape == h_r.shape and c_o.shape == c_r.shape
    assert_close(out_o, out_r, dtype, "output")
    assert_close(h_o, h_r, dtype, "h_n")
    assert_close(c_o, c_r, dtype, "c_n")
    g_o = grads([out_o, h_o, c_o], leaves_ours)
    g_r = grads([out_r, h_r, c_r], leaves_ref)
    names = ["input"] + (["h0", "c0"] if hx else []) + [n for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, g_o, g_r):
        assert_close(a, b, dtype, f"grad {name}")


GRID = list(itertools.product([1, 2, 3], [False, True], [False, True], [0, 3], [True, False], [False, True]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layers,bidir,batch_first,proj,bias,with_hx", GRID)
def test_matches_torch(dtype, backend, layers, bidir, batch_first, proj, bias, with_hx):
    ours, ref = make_pair(dtype, backend, num_layers=layers, bidirectional=bidir, batch_first=batch_first, proj_size=proj, bias=bias)
    T, B, D = 4, 3, 2 if bidir else 1
    x = torch.randn((B, T, 5) if batch_first else (T, B, 5), dtype=dtype, requires_grad=True)
    hx = None
    if with_hx:
        hx = (torch.randn(layers * D, B, proj or 6, dtype=dtype, requires_grad=True),
              torch.randn(layers * D, B, 6, dtype=dtype, requires_grad=True))
    compare(ours, ref, x, hx, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bidir,proj,with_hx", list(itertools.product([False, True], [0, 2], [False, True])))
def test_unbatched_matches_torch(backend, bidir, proj, with_hx):
    dtype = torch.float64
    ours, ref = make_pair(dtype, backend, num_layers=2, bidirectional=bidir, proj_size=proj)
    x = torch.randn(5, 5, dtype=dtype, requires_grad=True)
    D = 2 if bidir else 1
    hx = (torch.randn(2 * D, proj or 6, dtype=dtype, requires_grad=True),
          torch.randn(2 * D, 6, dtype=dtype, requires_grad=True)) if with_hx else None
    compare(ours, ref, x, hx, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("enforce_sorted,bidir,proj,with_hx", list(itertools.product([False, True], [False, True], [0, 2], [False, True])))
def test_packed_sequence_matches_torch(backend, enforce_sorted, bidir, proj, with_hx):
    dtype = torch.float64
    ours, ref = make_pair(dtype, backend, num_layers=2, bidirectional=bidir, proj_size=proj)
    lengths = [6, 4, 4, 1] if enforce_sorted else [3, 6, 1, 4]
    x = torch.randn(6, 4, 5, dtype=dtype, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    D = 2 if bidir else 1
    hx = (torch.randn(2 * D, 4, proj or 6, dtype=dtype, requires_grad=True),
          torch.randn(2 * D, 4, 6, dtype=dtype, requires_grad=True)) if with_hx else None
    out_o, (h_o, c_o) = ours(packed, hx)
    out_r, (h_r, c_r) = ref(packed, hx)
    assert isinstance(out_o, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
    for a, b in [(out_o.sorted_indices, out_r.sorted_indices), (out_o.unsorted_indices, out_r.unsorted_indices)]:
        assert (a is None and b is None) or torch.equal(a, b)
    for what, a, b in [("output", out_o.data, out_r.data), ("h_n", h_o, h_r), ("c_n", c_o, c_r)]:
        assert_close(a, b, dtype, what)
    leaves_o = [x] + list(hx or []) + list(ours.parameters())
    leaves_r = [x] + list(hx or []) + list(ref.parameters())
    for a, b in zip(grads([out_o.data, h_o, c_o], leaves_o), grads([out_r.data, h_r, c_r], leaves_r)):
        assert_close(a, b, dtype, "gradient")
    padded, lens = pad_packed_sequence(out_o)
    assert lens.tolist() == lengths


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_dropout_between_layers_is_active_in_training_only(backend):
    torch.manual_seed(0)
    lstm = lk.LSTM(4, 8, num_layers=2, dropout=0.5, backend=backend)
    x = torch.randn(5, 3, 4)
    lstm.eval()
    assert torch.equal(lstm(x)[0], lstm(x)[0])
    lstm.train()
    assert not torch.equal(lstm(x)[0], lstm(x)[0])
    # dropout 1.0 zeroes the input of layer 2, so its output depends on its biases only
    full = lk.LSTM(4, 8, num_layers=2, dropout=1.0, backend=backend).train()
    a, b = full(x)[0], full(torch.randn(5, 3, 4))[0]
    torch.testing.assert_close(a, b)


def test_state_dict_loads_both_ways():
    kw = dict(num_layers=2, bidirectional=True, proj_size=3)
    ours, theirs = lk.LSTM(5, 6, **kw), torch.nn.LSTM(5, 6, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)
    assert [tuple(w.shape) for ws in ours.all_weights for w in ws] == [tuple(w.shape) for ws in theirs.all_weights for w in ws]


@pytest.mark.parametrize("backend", ["reference", "native", "fused"])
def test_returned_states_detach_in_place_like_torch(backend):
    """Truncated-BPTT code written for torch.nn.LSTM calls h.detach_() on the returned states; that
    fails on a view ("Can't detach views in-place"), so batched states must be tensors of their own, as
    torch's are (unbatched ones are views in torch too)."""
    if backend == "fused" and lk.kernels.fused.load_extension() is None:
        pytest.skip("the fused kernel did not build here")
    for kw in (dict(), dict(num_layers=2, bidirectional=True)):
        lstm = lk.LSTM(3, 4, backend=backend, **kw)
        _, (h, c) = lstm(torch.randn(5, 2, 3))
        h.detach_(), c.detach_()
        assert not h.requires_grad and not c.requires_grad
