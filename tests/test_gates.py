"""return_gates: the values the computation used, satisfying the cell equations at every step."""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk
from conftest import assert_close

F64 = torch.float64


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("bidir", [False, True])
def test_gates_satisfy_the_cell_equations(backend, bidir):
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 4, num_layers=2, bidirectional=bidir, backend=backend).double()
    x = torch.randn(6, 2, 3, dtype=F64)
    h0, c0 = torch.randn(2 * (1 + bidir), 2, 4, dtype=F64), torch.randn(2 * (1 + bidir), 2, 4, dtype=F64)
    out, (h_n, c_n), g = lstm(x, (h0, c0), return_gates=True)
    D = 2 if bidir else 1
    assert g.i.shape == (2, D, 6, 2, 4)
    for k in range(2):
        for d in range(D):
            steps = range(6) if d == 0 else range(5, -1, -1)
            c_prev, h_prev = c0[k * D + d], h0[k * D + d]
            for t in steps:
                i, f, gg, o, c, h = (v[k, d, t] for v in g)
                assert_close(c, f * c_prev + i * gg, F64, "c_t = f⊙c_{t-1} + i⊙g")
                assert_close(h, o * torch.tanh(c), F64, "h_t = o⊙tanh(c_t)")
                assert torch.all((i > 0) & (i < 1) & (f > 0) & (f < 1) & (o > 0) & (o < 1)), "gates are sigmoids"
                assert torch.all(gg.abs() < 1), "input node is a tanh"
                c_prev, h_prev = c, h
            assert_close(c_prev, c_n[k * D + d], F64, "final c")
            assert_close(h_prev, h_n[k * D + d], F64, "final h")
    # the last layer's h of every step is the output
    assert_close(torch.cat([g.h[1, d] for d in range(D)], dim=-1), out, F64, "h is the output")


def test_gates_equal_an_independent_lstmcell_loop():
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 4, num_layers=2).double()
    cells = [lk.LSTMCell(3, 4).double(), lk.LSTMCell(4, 4).double()]
    for k, cell in enumerate(cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(lstm, f"{name}_l{k}"))
    x = torch.randn(5, 2, 3, dtype=F64)
    gates = lstm(x, return_gates=True).gates
    inp = x
    for k, cell in enumerate(cells):
        h = c = torch.zeros(2, 4, dtype=F64)
        hs = []
        for t in range(5):
            (h, c), (i, f, g, o) = cell(inp[t], (h, c), return_gates=True)
            for name, v in zip("ifgoch", (i, f, g, o, c, h)):
                assert_close(getattr(gates, name)[k, 0, t], v, F64, f"layer {k} step {t} gate {name}")
            hs.append(h)
        inp = torch.stack(hs)


def test_gates_layouts_batch_first_unbatched_and_padding():
    lstm = lk.LSTM(3, 4, proj_size=2, batch_first=True)
    res = lstm(torch.randn(2, 5, 3), return_gates=True, lengths=[5, 3])
    assert res.gates.f.shape == (1, 1, 2, 5, 4) and res.gates.h.shape == (1, 1, 2, 5, 2)
    assert torch.all(res.gates.f[0, 0, 1, 3:] == 0), "steps past a length hold zeros"
    assert torch.equal(res.gates.h[0, 0], res.output)
    unbatched = lstm(torch.randn(5, 3), return_gates=True)
    assert unbatched.gates.c.shape == (1, 1, 5, 4)
    one = res.gates.layer(0)
    assert one.i.shape == (2, 5, 4)


def test_return_gates_differentiable():
    lstm = lk.LSTM(3, 4)
    x = torch.randn(4, 2, 3, requires_grad=True)
    lstm(x, return_gates=True).gates.f.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
