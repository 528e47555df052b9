"""torch.ao.quantization.quantize_dynamic on models holding lk.LSTM / lk.LSTMCell: quantized as
the equivalent torch.nn.LSTM would be (same int8 kernel, same result), or one clear error."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

import lstmkit as lk

# torch.ao.quantization announces its move to torchao on every call; the API still works in 2.13.
# lstmkit's own "stays in float" warning must fire only where a test expects it.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*quantize_per_tensor"),
    pytest.mark.filterwarnings("error:quantize_dynamic swaps submodules only"),
]

# int8 weights and activations move these small nets' outputs by ~2e-3 (measured); float32
# rounding alone moves them by ~1e-7. Between the two: proof that quantization happened, and
# that it stayed as close as torch's own quantized LSTM does.
INT8_MOVES_OUTPUT = 1e-4
INT8_TOL = 2e-2


class Tagger(nn.Module):
    def __init__(self, rnn: nn.Module, out: int):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(out, 3)

    def forward(self, x):
        y = self.rnn(x)
        return self.head(y[0] if isinstance(y, tuple) else y)


def twins(**kw):
    """A model with lk.LSTM and the same model with torch.nn.LSTM, same weights."""
    torch.manual_seed(0)
    D = 2 if kw.get("bidirectional") else 1
    ours = Tagger(lk.LSTM(8, 16, **kw), 16 * D).eval()
    ref = Tagger(nn.LSTM(8, 16, **kw), 16 * D).eval()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


SPECS = {"default": None, "torch-types": {nn.LSTM, nn.Linear}, "dict": {nn.LSTM: default_dynamic_qconfig, nn.Linear: default_dynamic_qconfig}}


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_lk_lstm_quantizes_exactly_as_torchs(spec, kw):
    ours, ref = twins(**kw)
    x = torch.randn(6, 5, 8)
    q_ours, q_ref = quantize_dynamic(ours, SPECS[spec]), quantize_dynamic(ref, SPECS[spec])
    assert type(q_ours.rnn) is nnqd.LSTM and type(q_ours.head) is type(q_ref.head)
    with torch.no_grad():
        got, want, float_out = q_ours(x), q_ref(x), ours(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # same weights, same int8 kernel
    moved = (got - float_out).abs().max().item()
    assert INT8_MOVES_OUTPUT < moved < INT8_TOL, moved
    assert type(ours.rnn) is lk.LSTM  # quantize_dynamic copies unless inplace=True


def test_naming_lk_lstm_in_the_spec_works_too():
    ours, ref = twins()
    q_ours, q_ref = quantize_dynamic(ours, {lk.LSTM, nn.Linear}), quantize_dynamic(ref, {nn.LSTM, nn.Linear})
    x = torch.randn(6, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(q_ours(x), q_ref(x), rtol=0, atol=0)


def test_a_spec_without_lstms_leaves_it_in_float_like_torchs():
    ours, ref = twins()
    q_ours, q_ref = quantize_dynamic(ours, {nn.Linear}), quantize_dynamic(ref, {nn.Linear})
    assert type(q_ours.rnn) is lk.LSTM and type(q_ref.rnn) is nn.LSTM
    assert isinstance(q_ours.head, nnqd.Linear)


def test_a_name_entry_of_none_excludes_it_like_torchs():
    ours, ref = twins()
    spec = {nn.LSTM: default_dynamic_qconfig, nn.Linear: default_dynamic_qconfig, "rnn": None}
    assert type(quantize_dynamic(ours, spec).rnn) is lk.LSTM
    assert type(quantize_dynamic(ref, spec).rnn) is nn.LSTM


def test_float16_dynamic_quantization():
    ours, ref = twins(num_layers=2)
    q_ours, q_ref = quantize_dynamic(ours, {nn.LSTM}, dtype=torch.float16), quantize_dynamic(ref, {nn.LSTM}, dtype=torch.float16)
    x = torch.randn(6, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(q_ours(x), q_ref(x), rtol=0, atol=0)


def test_lstm_cell_quantizes_exactly_as_torchs():
    torch.manual_seed(0)
    ours, ref = Tagger(lk.LSTMCell(8, 16), 16).eval(), Tagger(nn.LSTMCell(8, 16), 16).eval()
    ref.load_state_dict(ours.state_dict())
    q_ours, q_ref = quantize_dynamic(ours), quantize_dynamic(ref)
    assert type(q_ours.rnn) is nnqd.LSTMCell
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(q_ours(x), q_ref(x), rtol=0, atol=0)


@pytest.mark.parametrize("module,named", [
    (lambda: lk.LSTM(8, 16, peephole=True), "peephole"),
    (lambda: lk.LSTM(8, 16, coupled=True, layer_norm=True), "coupled and layer_norm"),
    (lambda: lk.LSTM(8, 16, zoneout=0.1), "zoneout"),
    (lambda: lk.LSTM(8, 16, proj_size=4), "proj_size"),
    (lambda: lk.LSTMCell(8, 16, layer_norm=True), "layer_norm"),
])
def test_what_torchs_quantized_lstm_cannot_compute_raises_one_error(module, named):
    model = Tagger(module(), 16)
    with pytest.raises(ValueError, match=rf"cannot quantize this lk\.\w+: torch's dynamically quantized \w+ has no {named}"):
        quantize_dynamic(model)


def test_training_only_options_do_not_block():
    """recurrent_dropout and weight_drop do nothing in eval mode, where quantized models run."""
    torch.manual_seed(0)
    model = Tagger(lk.LSTM(8, 16, recurrent_dropout=0.3, weight_drop=0.2), 16)
    assert type(quantize_dynamic(model).rnn) is nnqd.LSTM


def test_a_bare_lk_lstm_stays_float_with_a_warning():
    """quantize_dynamic swaps submodules only (a bare nn.LSTM comes back unchanged too); lstmkit says so."""
    with pytest.warns(UserWarning, match="swaps submodules only.*quantize a module that holds it"):
        q = quantize_dynamic(lk.LSTM(8, 16))
    assert type(q) is lk.LSTM
    assert type(quantize_dynamic(nn.LSTM(8, 16))) is nn.LSTM
