"""Weight converters: torch.nn.LSTM ⇄ lk.LSTM and Keras LSTM weights ⇄ lk.LSTM.

The Keras side is checked against a NumPy LSTM written here in Keras' own layout (kernel
(I, 4H), recurrent_kernel (H, 4H), one bias, gates i, f, c, o), independent of lstmkit.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import lstmkit as lk
from conftest import assert_close
from lstmkit.interop import from_keras, from_torch, to_keras, to_torch

F64 = torch.float64
CONFIGS = [dict(num_layers=L, bidirectional=bd, proj_size=p, bias=b, batch_first=bf)
           for L, bd, p, b, bf in itertools.product([1, 2], [False, True], [0, 3], [True, False], [False, True])]


def _cfg_id(c):
    return "-".join(f"{k}={v}" for k, v in c.items())


# --------------------------------------------------------------------------- torch.nn.LSTM


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_torch_round_trip_is_exact_and_computes_the_same(cfg):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(4, 6, dtype=F64, **cfg)
    ours = from_torch(theirs, backend="reference")
    assert isinstance(ours, lk.LSTM)
    back = to_torch(ours)
    assert type(back) is torch.nn.LSTM
    for k in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional", "proj_size"):
        assert getattr(back, k) == getattr(theirs, k), k
    sd0, sd1 = theirs.state_dict(), back.state_dict()
    assert list(sd0) == list(sd1)
    for name in sd0:
        assert torch.equal(sd0[name], sd1[name]), name
        assert sd1[name].data_ptr() != sd0[name].data_ptr(), f"{name} must be a copy, not shared"
    x = torch.randn(3, 5, 4, dtype=F64)
    out_t, (h_t, c_t) = theirs(x)
    out_o, (h_o, c_o) = ours(x)
    assert_close(out_o, out_t, F64, "output")
    assert_close(h_o, h_t, F64, "h_n")
    assert_close(c_o, c_t, F64, "c_n")


def test_to_torch_from_lk_computes_the_same():
    torch.manual_seed(1)
    ours = lk.LSTM(3, 5, num_layers=2, bidirectional=True, backend="reference", dtype=F64)
    theirs = to_torch(ours)
    x = torch.randn(4, 2, 3, dtype=F64)
    assert_close(theirs(x)[0], ours(x)[0], F64, "output")
    ours.train(False)
    assert not to_torch(ours).training


def test_converters_reject_wrong_types_and_variants(monkeypatch):
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        from_torch(torch.nn.GRU(2, 3))
    with pytest.raises(TypeError, match="lk.LSTM"):
        to_torch(torch.nn.LSTM(2, 3))
    ours = lk.LSTM(2, 3)
    monkeypatch.setattr(ours, "_variants", lambda: ("peephole",))
    with pytest.raises(ValueError, match="peephole"):
        to_torch(ours)
    with pytest.raises(ValueError, match="peephole"):
        to_keras(ours)


# --------------------------------------------------------------------------- Keras


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def keras_lstm_numpy(x, kernel, recurrent_kernel, bias, go_backwards=False):
    """Keras' LSTM layer (return_sequences=True) on x (B, T, I); returns (B, T, H), h, c."""
    B, T, _ = x.shape
    H = recurrent_kernel.shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = np.zeros((B, T, H))
    steps = range(T - 1, -1, -1) if go_backwards else range(T)
    for t in steps:
        z = x[:, t] @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias)
        zi, zf, zc, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]  # Keras order i, f, c, o
        c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zc)
        h = _sigmoid(zo) * np.tanh(c)
        ys[:, t] = h  # Bidirectional re-reverses the backward layer's sequence: output aligned to t
    return ys, h, c


def keras_stack_numpy(x, layers, bidirectional):
    """A stack of Keras LSTM (or Bidirectional(LSTM, merge_mode='concat')) layers."""
    finals = []
    for w in layers:
        D = 2 if bidirectional else 1
        n = len(w) // D
        outs = []
        for d in range(D):
            arrs = w[d * n:(d + 1) * n]
            y, h, c = keras_lstm_numpy(x, arrs[0], arrs[1], arrs[2] if n == 3 else None, go_backwards=d == 1)
            outs.append(y)
            finals.append((h, c))
        x = np.concatenate(outs, axis=-1)
    return x, finals


def _keras_weights(rng, I, H, layers, bidirectional, bias):
    D = 2 if bidirectional else 1
    result = []
    for k in range(layers):
        w = []
        for _ in range(D):
            w += [rng.normal(0, 0.4, (I if k == 0 else D * H, 4 * H)), rng.normal(0, 0.4, (H, 4 * H))]
            if bias:
                w.append(rng.normal(0, 0.4, (4 * H,)))
        result.append(w)
    return result


@pytest.mark.parametrize("layers,bidirectional,bias", list(itertools.product([1, 2], [False, True], [True, False])))
def test_keras_weights_give_keras_numbers_and_round_trip(layers, bidirectional, bias):
    rng = np.random.default_rng(layers * 10 + bidirectional * 2 + bias)
    I, H, B, T = 3, 4, 2, 6
    weights = _keras_weights(rng, I, H, layers, bidirectional, bias)
    lstm = from_keras(weights, bidirectional=bidirectional, dtype=F64, backend="reference")
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias) == (I, H, layers, bias)
    assert lstm.batch_first
    x = rng.normal(size=(B, T, I))
    expected, finals = keras_stack_numpy(x, weights, bidirectional)
    with torch.no_grad():
        out, (h_n, c_n) = lstm(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    for j, (h, c) in enumerate(finals):  # lk's (L·D) index = layer·D + direction, Keras' order too
        np.testing.assert_allclose(h_n[j].numpy(), h, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(c_n[j].numpy(), c, rtol=1e-10, atol=1e-10)
    back = to_keras(lstm)
    assert len(back) == layers
    for w0, w1 in zip(weights, back):
        assert len(w0) == len(w1)
        for a, b in zip(w0, w1):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)  # transposes and a + 0 bias: exact


def test_single_layer_list_and_gate_order():
    """One layer's get_weights() list works as is; a candidate-only kernel proves i, f, c, o → i, f, g, o."""
    I, H = 2, 3
    kernel = np.zeros((I, 4 * H))
    kernel[:, 2 * H:3 * H] = 1.0  # Keras' c block (the input node) only
    lstm = from_keras([kernel, np.zeros((H, 4 * H)), np.zeros(4 * H)], dtype=F64)
    assert torch.equal(lstm.weight_ih_l0[2 * H:3 * H], torch.ones(H, I, dtype=F64))  # torch's g block
    assert torch.count_nonzero(lstm.weight_ih_l0) == H * I
    assert torch.count_nonzero(lstm.bias_hh_l0) == 0


def test_lk_to_keras_sums_both_biases():
    """lk → Keras arrays → the NumPy Keras LSTM equals lk's own output (bias_ih + bias_hh folded)."""
    torch.manual_seed(3)
    lstm = lk.LSTM(3, 4, num_layers=2, batch_first=True, backend="reference", dtype=F64)
    with torch.no_grad():
        lstm.bias_hh_l0.normal_()
        lstm.bias_hh_l1.normal_()
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    expected, _ = keras_stack_numpy(x, to_keras(lstm), bidirectional=False)
    with torch.no_grad():
        out, _ = lstm(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    nn_weights = to_keras(to_torch(lstm))
    for a, b in zip(to_keras(lstm)[0], nn_weights[0]):
        np.testing.assert_array_equal(a, b)


def test_keras_errors_say_what_was_expected():
    H = 4
    with pytest.raises(ValueError, match=r"expected 3 arrays"):
        from_keras([np.zeros((3, 4 * H))])
    with pytest.raises(ValueError, match=r"recurrent_kernel of layer 0: expected shape \(4, 16\)"):
        from_keras([np.zeros((3, 4 * H)), np.zeros((5, 4 * H)), np.zeros(4 * H)])
    with pytest.raises(ValueError, match=r"bias of layer 0: expected shape \(16,\)"):
        from_keras([np.zeros((3, 4 * H)), np.zeros((H, 4 * H)), np.zeros(8 * H)])
    with pytest.raises(ValueError, match="4\\*units"):
        from_keras([np.zeros((3, 10)), np.zeros((H, 10)), np.zeros(10)])
    with pytest.raises(ValueError, match="no projection"):
        to_keras(lk.LSTM(3, 4, proj_size=2))
