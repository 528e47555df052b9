"""LSTMOptions: the variants validated once and shared by lk.LSTM and lk.LSTMCell."""
from __future__ import annotations

import pickle

import pytest
import torch

import lstmkit as lk
from lstmkit.options import LSTMOptions


@pytest.mark.parametrize("kw, message", [
    (dict(forget_bias="1"), "forget_bias must be a number or None"),
    (dict(layer_norm_eps=0), "layer_norm_eps must be a positive number"),
    (dict(zoneout=(0.1, 0.2, 0.3)), "zoneout must be a probability or a pair"),
    (dict(zoneout=1.5), r"zoneout \(cell\) must be a number in \[0, 1\]"),
    (dict(recurrent_dropout=1.0), "recurrent_dropout must be below 1"),
    (dict(weight_drop=-0.1), r"weight_drop must be a number in \[0, 1\]"),
])
def test_bad_options_get_one_clear_error_from_lstm_and_cell(kw, message):
    with pytest.raises(ValueError, match=message):
        LSTMOptions(**kw)
    with pytest.raises(ValueError, match=message):
        lk.LSTM(3, 4, **kw)
    cell_kw = {k: v for k, v in kw.items() if k in ("forget_bias", "layer_norm_eps", "zoneout")}
    if cell_kw:
        with pytest.raises(ValueError, match=message):
            lk.LSTMCell(3, 4, **cell_kw)


def test_lstm_and_cell_get_the_same_parameters_and_starting_values():
    kw = dict(peephole=True, coupled=True, layer_norm=True, forget_bias=2.0)
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 4, **kw)
    cell = lk.LSTMCell(3, 4, **kw)
    names = {n.replace("_l0", ""): p.shape for n, p in lstm.named_parameters()}
    assert names == {n: p.shape for n, p in cell.named_parameters()}
    for module in (lstm, cell):
        params = dict(module.named_parameters())
        b_ih = params.get("bias_ih_l0", params.get("bias_ih"))
        assert torch.equal(b_ih[:4], torch.full((4,), -2.0))  # coupled: i's rows at -forget_bias
        ln_w = params.get("ln_c_weight_l0", params.get("ln_c_weight"))
        assert torch.equal(ln_w, torch.ones(4))


def test_cell_zoneout_draws_from_the_lstm_mask_generator():
    cell = lk.LSTMCell(3, 5, zoneout=0.5).train()
    x, h0, c0 = torch.randn(64, 3), torch.randn(64, 5), torch.randn(64, 5)
    torch.manual_seed(7)
    h, c = cell(x, (h0, c0))
    torch.manual_seed(7)
    keep_h = lk.kernels.masks.zoneout_mask((64, 5), 0.5, x)  # h's mask is drawn first, then c's
    keep_c = lk.kernels.masks.zoneout_mask((64, 5), 0.5, x)
    plain = lk.LSTMCell(3, 5)  # the un-zoned step, same weights
    plain.load_state_dict(cell.state_dict())
    h_new, c_new = plain(x, (h0, c0))
    assert torch.equal(h, torch.where(keep_h, h0, h_new)) and torch.equal(c, torch.where(keep_c, c0, c_new))
    assert 0.3 < keep_h.float().mean() < 0.7 and not torch.equal(keep_h, keep_c)


def test_a_module_pickled_before_the_options_object_still_loads():
    lstm = lk.LSTM(3, 4, peephole=True, zoneout=(0.1, 0.2))
    state = lstm.__dict__.copy()
    options = state.pop("options")
    old = dict(forget_bias=options.forget_bias, peephole=True, coupled=False, layer_norm=False, layer_norm_eps=1e-5,
               zoneout_c=0.1, zoneout_h=0.2, recurrent_dropout=0.0, input_dropout=0.0, weight_drop=0.0)
    state.update(old)
    revived = lk.LSTM.__new__(lk.LSTM)
    revived.__setstate__(state)
    assert revived.options == options
    x = torch.randn(5, 2, 3)
    assert torch.equal(revived.eval()(x)[0], lstm.eval()(x)[0])
    assert pickle.loads(pickle.dumps(lstm)).options == options
