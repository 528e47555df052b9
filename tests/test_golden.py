"""Golden values: constant weights and arange inputs, expected numbers worked out without torch.

The literals were computed with a scalar `math` loop (also kept below as `scalar_lstm`), which
shares no code with lstmkit; a wrong gate order, a missing bias or a swapped tanh changes them.
"""
from __future__ import annotations

import math

import pytest
import torch

import lstmkit as lk

W_IH = [0.1, 0.2, 0.3, 0.4]  # one input, one unit: rows i, f, g, o
W_HH = [0.5, 0.6, 0.7, 0.8]
B_IH = [0.01, 0.02, 0.03, 0.04]
# (h_t, c_t) for x = 0, 1, 2 from zero state
EXPECTED = [
    (0.007685342124531727, 0.015070478502700801),
    (0.10813354611914561, 0.17924387554397128),
    (0.3050684259010284, 0.45482307603221006),
]


def scalar_lstm(xs, w_ih, w_hh, b):
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    h = c = 0.0
    result = []
    for x in xs:
        z = [w_ih[k] * x + w_hh[k] * h + b[k] for k in range(4)]
        i, f, g, o = sig(z[0]), sig(z[1]), math.tanh(z[2]), sig(z[3])
        c = f * c + i * g
        h = o * math.tanh(c)
        result.append((h, c))
    return result


def constant_lstm(backend):
    lstm = lk.LSTM(1, 1, backend=backend).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(W_IH, dtype=torch.float64).unsqueeze(1))
        lstm.weight_hh_l0.copy_(torch.tensor(W_HH, dtype=torch.float64).unsqueeze(1))
        lstm.bias_ih_l0.copy_(torch.tensor(B_IH, dtype=torch.float64))
        lstm.bias_hh_l0.zero_()
    return lstm


def test_scalar_loop_reproduces_the_literals():
    for (h, c), (he, ce) in zip(scalar_lstm([0.0, 1.0, 2.0], W_IH, W_HH, B_IH), EXPECTED):
        assert h == pytest.approx(he, abs=1e-15) and c == pytest.approx(ce, abs=1e-15)


def test_first_step_by_hand():
    # x = 0 and zero state: only the biases act; c1 = σ(0.01)·tanh(0.03), h1 = σ(0.04)·tanh(c1)
    c1 = 1 / (1 + math.exp(-0.01)) * math.tanh(0.03)
    assert c1 == pytest.approx(EXPECTED[0][1], abs=1e-15)
    assert 1 / (1 + math.exp(-0.04)) * math.tanh(c1) == pytest.approx(EXPECTED[0][0], abs=1e-15)


@pytest.mark.parametrize("backend", ["reference", "native", "auto"])
def test_lstm_golden(backend):
    lstm = constant_lstm(backend)
    out, (h, c) = lstm(torch.arange(3, dtype=torch.float64).view(3, 1, 1))
    expected_h = torch.tensor([e[0] for e in EXPECTED], dtype=torch.float64)
    torch.testing.assert_close(out.view(3), expected_h, rtol=0, atol=1e-14)
    torch.testing.assert_close(c.view(()), torch.tensor(EXPECTED[-1][1], dtype=torch.float64), rtol=0, atol=1e-14)


def test_lstm_golden_gates_and_cell():
    res = constant_lstm("reference")(torch.arange(3, dtype=torch.float64).view(3, 1, 1), return_gates=True)
    c = res.gates.c.view(3)
    torch.testing.assert_close(c, torch.tensor([e[1] for e in EXPECTED], dtype=torch.float64), rtol=0, atol=1e-14)
    assert res.gates.i[0, 0, 0].item() == pytest.approx(1 / (1 + math.exp(-0.01)), abs=1e-15)
    cell = lk.LSTMCell(1, 1).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(W_IH, dtype=torch.float64).unsqueeze(1))
        cell.weight_hh.copy_(torch.tensor(W_HH, dtype=torch.float64).unsqueeze(1))
        cell.bias_ih.copy_(torch.tensor(B_IH, dtype=torch.float64))
        cell.bias_hh.zero_()
    h1, c1 = cell(torch.zeros(1, 1, dtype=torch.float64))
    assert h1.item() == pytest.approx(EXPECTED[0][0], abs=1e-15) and c1.item() == pytest.approx(EXPECTED[0][1], abs=1e-15)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_rnn_golden(backend):
    rnn = lk.RNN(1, 1, backend=backend).double()
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(0.5)
        rnn.weight_hh_l0.fill_(-0.25)
        rnn.bias_ih_l0.fill_(0.1)
        rnn.bias_hh_l0.zero_()
    out, _ = rnn(torch.arange(3, dtype=torch.float64).view(3, 1, 1))
    h, expected = 0.0, []
    for x in (0.0, 1.0, 2.0):
        h = math.tanh(0.5 * x - 0.25 * h + 0.1)
        expected.append(h)
    assert expected[0] == pytest.approx(math.tanh(0.1))
    torch.testing.assert_close(out.view(3), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)
