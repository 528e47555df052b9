"""Bad input: one clear ValueError/TypeError naming what was expected and what came."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit as lk


@pytest.fixture
def lstm():
    return lk.LSTM(3, 4, num_layers=2)


def x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def test_input_not_a_tensor(lstm):
    with pytest.raises(TypeError, match="torch.Tensor or PackedSequence, got list"):
        lstm([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2, 3)])
def test_wrong_rank(lstm, shape):
    with pytest.raises(ValueError, match=rf"3-D .* got {len(shape)}-D of shape"):
        lstm(x(*shape))


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError, match=r"input_size=3, got 5"):
        lstm(x(4, 2, 5))


def test_dtype_mismatch(lstm):
    with pytest.raises(TypeError, match=r"input has dtype torch.float64 but the weights are torch.float32"):
        lstm(x(4, 2, 3, dtype=torch.float64))


def test_integer_input(lstm):
    with pytest.raises(TypeError, match=r"floating-point .* got torch.int64"):
        lstm(torch.ones(4, 2, 3, dtype=torch.int64))


def test_device_mismatch(lstm):
    with pytest.raises(ValueError, match=r"input is on meta but the weights are on cpu"):
        lstm(torch.empty(4, 2, 3, device="meta"))


def test_wrong_h0_shape(lstm):
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\), got \(1, 2, 4\)"):
        lstm(x(4, 2, 3), (x(1, 2, 4), x(2, 2, 4)))


def test_wrong_c0_shape(lstm):
    with pytest.raises(ValueError, match=r"c0 must have shape \(2, 2, 4\), got \(2, 3, 4\)"):
        lstm(x(4, 2, 3), (x(2, 2, 4), x(2, 3, 4)))


def test_unbatched_state_must_be_2d(lstm):
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 4\), got \(2, 1, 4\)"):
        lstm(x(4, 3), (x(2, 1, 4), x(2, 1, 4)))


def test_hx_not_a_pair(lstm):
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\).*got Tensor"):
        lstm(x(4, 2, 3), x(2, 2, 4))


def test_state_dtype_mismatch(lstm):
    with pytest.raises(TypeError, match=r"c0 has dtype torch.float64"):
        lstm(x(4, 2, 3), (x(2, 2, 4), x(2, 2, 4, dtype=torch.float64)))


def test_non_finite_state(lstm):
    h = x(2, 2, 4)
    h[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"h0 must be finite, got 1 NaN or infinite"):
        lstm(x(4, 2, 3), (h, x(2, 2, 4)))


@pytest.mark.parametrize("lengths", [[0, 4], [4, 5]])
def test_lengths_out_of_range(lstm, lengths):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        lstm(x(4, 2, 3), lengths=lengths)


def test_lengths_wrong_size(lstm):
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\).*got shape \(3,\)"):
        lstm(x(4, 2, 3), lengths=torch.tensor([4, 4, 4]))


def test_lengths_not_integers(lstm):
    with pytest.raises(TypeError, match=r"lengths must hold integers, got a tensor of dtype torch.float32"):
        lstm(x(4, 2, 3), lengths=torch.tensor([4.0, 2.0]))


def test_lengths_with_packed_sequence(lstm):
    packed = pack_padded_sequence(x(4, 2, 3), [4, 2])
    with pytest.raises(ValueError, match="not both"):
        lstm(packed, lengths=[4, 2])


def test_empty_batch(lstm):
    with pytest.raises(ValueError, match=r"empty batch \(batch size 0\)"):
        lstm(x(4, 0, 3))


def test_zero_length_sequences(lstm):
    with pytest.raises(ValueError, match="zero time steps"):
        lstm(x(0, 2, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(lstm, bad):
    inp = x(4, 2, 3)
    inp[1, 1, 1] = bad
    with pytest.raises(ValueError, match=r"input must be finite, got 1 NaN or infinite"):
        lstm(inp)


@pytest.mark.parametrize("kw,match", [
    (dict(hidden_size=0), r"hidden_size must be a positive integer, got 0"),
    (dict(num_layers=1.5), r"num_layers must be a positive integer, got 1.5"),
    (dict(dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5"),
    (dict(proj_size=4), r"proj_size must be smaller than hidden_size=4, got 4"),
    (dict(backend="cuda"), r"backend must be one of .*got 'cuda'"),
    (dict(forget_bias="1"), r"forget_bias must be a number or None, got '1'"),
])
def test_bad_constructor_arguments(kw, match):
    args = dict(input_size=3, hidden_size=4) | kw
    with pytest.raises(ValueError, match=match):
        lk.LSTM(**args)


def test_bad_rnn_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'"):
        lk.RNN(3, 4, nonlinearity="sigmoid")


def test_backend_that_cannot_run_the_call():
    with pytest.raises(ValueError, match=r"backend 'native' cannot run this configuration: .*gates"):
        lk.LSTM(3, 4, backend="native")(x(4, 2, 3), return_gates=True)


def test_cell_bad_input():
    cell = lk.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input_size=3, got 2"):
        cell(x(2, 2))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 4\), got \(2, 5\)"):
        cell(x(2, 3), (x(2, 5), x(2, 4)))


def test_rnn_bad_state():
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 4\), got \(1, 2, 3\)"):
        lk.RNN(3, 4)(x(5, 2, 3), x(1, 2, 3))
