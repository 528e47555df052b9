"""lk.RNN against torch.nn.RNN with copied weights."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit as lk
from conftest import assert_close, grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["reference", "native", "auto"])
@pytest.mark.parametrize("nonlin,layers,bidir,batch_first,bias,with_hx", list(itertools.product(["tanh", "relu"], [1, 2], [False, True], [False, True], [True, False], [False, True])))
def test_matches_torch(dtype, backend, nonlin, layers, bidir, batch_first, bias, with_hx):
    torch.manual_seed(0)
    kw = dict(num_layers=layers, nonlinearity=nonlin, bidirectional=bidir, batch_first=batch_first, bias=bias)
    ref = torch.nn.RNN(4, 5, **kw).to(dtype)
    ours = lk.RNN(4, 5, **kw, backend=backend).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn((2, 6, 4) if batch_first else (6, 2, 4), dtype=dtype, requires_grad=True)
    h0 = torch.randn(layers * (1 + bidir), 2, 5, dtype=dtype, requires_grad=True) if with_hx else None
    out_o, h_o = ours(x, h0)
    out_r, h_r = ref(x, h0)
    assert_close(out_o, out_r, dtype, "output")
    assert_close(h_o, h_r, dtype, "h_n")
    leaves_o = [x] + ([h0] if with_hx else []) + list(ours.parameters())
    leaves_r = [x] + ([h0] if with_hx else []) + list(ref.parameters())
    for a, b in zip(grads([out_o, h_o], leaves_o), grads([out_r, h_r], leaves_r)):
        assert_close(a, b, dtype, "gradient")


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_packed_and_unbatched(backend):
    torch.manual_seed(0)
    ref = torch.nn.RNN(4, 5, num_layers=2, bidirectional=True).double()
    ours = lk.RNN(4, 5, num_layers=2, bidirectional=True, backend=backend).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    packed = pack_padded_sequence(x, [2, 6, 4], enforce_sorted=False)
    (po, ho), (pr, hr) = ours(packed), ref(packed)
    assert_close(po.data, pr.data, torch.float64, "packed output")
    assert_close(ho, hr, torch.float64, "h_n")
    (uo, uh), (ur, urh) = ours(x[:, 0]), ref(x[:, 0])
    assert_close(uo, ur, torch.float64, "unbatched output")
    assert_close(uh, urh, torch.float64, "unbatched h_n")


def test_states_and_lengths():
    rnn = lk.RNN(3, 4, num_layers=2, bidirectional=True).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, h_n, states = rnn(x, lengths=[5, 3], return_states=True)
    assert states.h.shape == (2, 2, 5, 2, 4)
    assert torch.equal(torch.cat([states.h[1, 0], states.h[1, 1]], -1), out)
    alone, h_alone = rnn(x[:3, 1:])
    assert_close(out[:3, 1], alone[:, 0], torch.float64, "output of the short sequence")
    assert_close(h_n[:, 1], h_alone[:, 0], torch.float64, "h_n of the short sequence")
    assert torch.all(out[3:, 1] == 0)
