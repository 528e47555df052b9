"""lk.LSTMCell against torch.nn.LSTMCell, and the forget-gate bias initialization."""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk
from conftest import assert_close, grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch_over_two_steps(dtype, bias):
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(3, 4, bias=bias).to(dtype)
    ours = lk.LSTMCell(3, 4, bias=bias).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x1, x2 = (torch.randn(2, 3, dtype=dtype, requires_grad=True) for _ in range(2))
    h_o, c_o = ours(x2, ours(x1))
    h_r, c_r = ref(x2, ref(x1))
    assert_close(h_o, h_r, dtype, "h")
    assert_close(c_o, c_r, dtype, "c")
    leaves_o, leaves_r = [x1, x2, *ours.parameters()], [x1, x2, *ref.parameters()]
    for a, b in zip(grads([h_o, c_o], leaves_o), grads([h_r, c_r], leaves_r)):
        assert_close(a, b, dtype, "gradient")


def test_cell_unbatched():
    ref, ours = torch.nn.LSTMCell(3, 4), lk.LSTMCell(3, 4)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3)
    for a, b in zip(ours(x), ref(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("module", [lambda fb: lk.LSTM(3, 5, num_layers=2, bidirectional=True, forget_bias=fb), lambda fb: lk.LSTMCell(3, 5, forget_bias=fb)])
def test_forget_bias_init(module):
    m = module(2.5)
    for name, p in m.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.all(p[5:10] == 2.5), name
            assert not torch.all(p[:5] == 2.5)
        if name.startswith("bias_hh"):
            assert torch.all(p[5:10] == 0), name
    default = module(1.0)
    assert all(torch.all(p[5:10] == 1.0) for n, p in default.named_parameters() if n.startswith("bias_ih"))
    torch_init = module(None)
    bound = 1 / 5 ** 0.5
    assert all(p.abs().max() <= bound for p in torch_init.parameters())


def test_default_forget_bias_is_one():
    lstm = lk.LSTM(2, 3)
    total = lstm.bias_ih_l0[3:6] + lstm.bias_hh_l0[3:6]
    assert torch.all(total == 1.0)
