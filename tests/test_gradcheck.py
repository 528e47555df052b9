"""torch.autograd.gradcheck in float64 on tiny sizes, through every backend that runs here."""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=2), dict(bias=False)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_gradcheck(backend, kw, with_lengths):
    torch.manual_seed(0)
    lstm = lk.LSTM(2, 3, **kw, backend=backend).double()
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(L * D, 2, kw.get("proj_size") or 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(L * D, 2, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(lstm.parameters())
    lengths = torch.tensor([4, 2]) if with_lengths else None
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, h0, c0, *ps):
        with torch.nn.utils.stateless._reparametrize_module(lstm, dict(zip(names, ps))):
            out, (h, c) = lstm(x, (h0, c0), lengths=lengths)
        return out, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_gradcheck(nonlinearity):
    torch.manual_seed(0)
    rnn = lk.RNN(2, 3, nonlinearity=nonlinearity, bidirectional=True, backend="reference").double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: rnn(x, lengths=[4, 3])[0], (x,), eps=1e-6, atol=1e-7)


def test_cell_gradcheck():
    cell = lk.LSTMCell(2, 3).double()
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), (x, h, c), eps=1e-6, atol=1e-7)
