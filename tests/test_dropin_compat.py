"""lk.LSTM / lk.RNN / lk.LSTMCell where user code touches torch.nn.LSTM beyond forward:
flatten_parameters, _flat_weights, isinstance, torch.jit.trace, torch.jit.script, pickling."""
from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

import lstmkit as lk
from conftest import assert_close

CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bias=False, batch_first=True),
    dict(num_layers=2, proj_size=3, bidirectional=True),
]


def pair(cls_lk, cls_torch, *args, **kw):
    torch.manual_seed(0)
    ref = cls_torch(*args, **kw)
    ours = cls_lk(*args, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


# --------------------------------------------------------------------------- flatten_parameters, _flat_weights


@pytest.mark.parametrize("kw", CONFIGS)
def test_flat_weight_names_and_order_are_torchs(kw):
    ours, ref = pair(lk.LSTM, nn.LSTM, 5, 6, **kw)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours._all_weights == ref._all_weights
    assert ours.mode == ref.mode == "LSTM"
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))
    assert [[w.shape for w in ws] for ws in ours.all_weights] == [[w.shape for w in ws] for ws in ref.all_weights]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_flat_weights_and_mode(nonlinearity):
    ours, ref = pair(lk.RNN, nn.RNN, 4, 5, num_layers=2, nonlinearity=nonlinearity, bidirectional=True)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours.mode == ref.mode == f"RNN_{nonlinearity.upper()}"


@pytest.mark.parametrize("kw", CONFIGS)
def test_flat_weights_drive_torchs_own_lstm_function(kw):
    """Code that calls torch's functional LSTM with module._flat_weights (as nn.LSTM.forward
    does) gets lk.LSTM's own result: the list holds the right tensors in torch's order."""
    ours, _ = pair(lk.LSTM, nn.LSTM, 5, 6, **kw)
    ours = ours.double()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    D, L, P = 1 + ours.bidirectional, ours.num_layers, ours.proj_size or 6
    hx = (torch.zeros(L * D, 3 if ours.batch_first else 4, P, dtype=x.dtype), torch.zeros(L * D, 3 if ours.batch_first else 4, 6, dtype=x.dtype))
    out, h, c = torch.lstm(x, hx, ours._flat_weights, ours.bias, L, 0.0, False, ours.bidirectional, ours.batch_first)
    want, (h_w, c_w) = ours(x)
    assert_close(out, want, what="output")
    assert_close(h, h_w, what="h_n")
    assert_close(c, c_w, what="c_n")


def test_flat_weights_follow_to_and_assignment():
    m = lk.LSTM(4, 5, num_layers=2).double()
    assert {w.dtype for w in m._flat_weights} == {torch.float64}
    m._init_flat_weights()  # torch's refresh hook exists and changes nothing
    assert m._flat_weights[1] is m.weight_hh_l0


def test_variant_parameters_follow_torchs_in_flat_weights():
    m = lk.LSTM(4, 5, peephole=True, layer_norm=True)
    names = m._flat_weights_names
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_peephole_l0" in names and "ln_c_weight_l0" in names
    assert names == [n for n, _ in m.named_parameters()]


@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(peephole=True, coupled=True)])
def test_flatten_parameters_on_cpu_keeps_weights_and_results(kw):
    """Codebases call flatten_parameters in forward or after .to(device); on CPU it is a no-op,
    as torch.nn.LSTM's is (there is no cuDNN buffer to pack into)."""
    torch.manual_seed(0)

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lk.LSTM(4, 5, **kw)

        def forward(self, x):
            self.lstm.flatten_parameters()
            return self.lstm(x)[0]

    model = Tagger()
    x = torch.randn(6, 2, 4)
    before = [(w, w.data_ptr()) for w in model.lstm._flat_weights]
    want = model.lstm(x)[0]
    assert_close(model(x), want, what="output after flatten_parameters")
    model.lstm.flatten_parameters()
    assert [(w, w.data_ptr()) for w in model.lstm._flat_weights] == before



def test_flatten_parameters_packs_only_torchs_layout():
    """On CUDA, only a network laid out as torch's goes to cuDNN's packing; variants have extra
    parameters or other gate counts, so they are left alone (the CUDA path itself needs a GPU)."""
    assert lk.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)._torch_layout()
    assert lk.RNN(3, 4, nonlinearity="relu")._torch_layout()
    for kw in (dict(peephole=True), dict(coupled=True), dict(layer_norm=True)):
        assert not lk.LSTM(3, 4, **kw)._torch_layout()


def test_weight_drop_wrapper_pattern():
    """The AWD-LSTM / fastai WeightDropout pattern: delete weight_hh_l0 as a parameter, keep a raw
    copy, and assign a dropped-out tensor under the old name before every forward. lk.LSTM reads
    its weights by name at each call, so the assigned tensor is what runs."""
    torch.manual_seed(0)
    lstm = lk.LSTM(4, 5)
    raw = nn.Parameter(lstm.weight_hh_l0.detach().clone())
    del lstm.weight_hh_l0
    mask = (torch.rand_like(raw) > 0.5).float() * 2.0
    lstm.weight_hh_l0 = raw * mask
    assert lstm._flat_weights[1] is lstm.weight_hh_l0
    x = torch.randn(7, 3, 4)
    out = lstm(x)[0]
    plain = lk.LSTM(4, 5)
    plain.load_state_dict({**{k: v for k, v in lstm.state_dict().items()}, "weight_hh_l0": (raw * mask).detach()})
    assert_close(out, plain(x)[0], what="output with assigned weight_hh_l0")
    out.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0


# --------------------------------------------------------------------------- isinstance


def test_not_a_subclass_of_torchs_rnn_modules():
    assert not isinstance(lk.LSTM(3, 4), nn.RNNBase)
    assert not isinstance(lk.RNN(3, 4), nn.RNNBase)
    assert not isinstance(lk.LSTMCell(3, 4), nn.RNNCellBase)


def test_why_not_a_subclass_dynamo_refuses_nn_lstm_subclasses():
    """The first reason lk.LSTM does not subclass torch.nn.LSTM: torch.compile's Dynamo refuses
    any module that isinstance-tests as nn.LSTM, so a subclass could never run under
    torch.compile(fullgraph=True). If torch lifts this, the decision deserves a second look."""

    class LSTMSubclass(nn.LSTM):
        pass

    compiled = torch.compile(LSTMSubclass(3, 4), backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
        compiled(torch.randn(2, 1, 3))
    torch._dynamo.reset()


def test_type_dispatch_guidance_initialises_both_alike():
    """Type-dispatching code should test (nn.LSTM, lk.LSTM); name-based init loops then treat both alike."""

    def init(model):
        for m in model.modules():
            if isinstance(m, (nn.LSTM, lk.LSTM)):
                for name, p in m.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.constant_(p, 0.1)
                    elif name.startswith("weight_hh"):
                        nn.init.eye_(p[: m.hidden_size])
                    elif name.startswith("bias"):
                        nn.init.zeros_(p)

    ours, ref = nn.Sequential(lk.LSTM(3, 4, num_layers=2)), nn.Sequential(nn.LSTM(3, 4, num_layers=2))
    init(ours), init(ref)
    for (n1, a), (n2, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert n1 == n2
        assert_close(a[: ref[0].hidden_size], b[: ref[0].hidden_size], what=n1)


# --------------------------------------------------------------------------- torch.jit


@pytest.mark.parametrize("module", [lambda: lk.LSTM(3, 4), lambda: lk.RNN(3, 4), lambda: lk.LSTMCell(3, 4),
                                    lambda: nn.Sequential(nn.Linear(3, 3), lk.LSTM(3, 4))],
                         ids=["LSTM", "RNN", "LSTMCell", "inside-a-model"])
def test_jit_script_fails_with_one_message_pointing_at_compile_and_export(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's own deprecation warning
        with pytest.raises(TypeError, match=r"torch\.jit\.script cannot compile lk\.\w+.*torch\.compile.*torch\.export"):
            torch.jit.script(module())


def _trace(module, inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation warning
        return torch.jit.trace(module, inputs)  # check_trace=True: traced twice, graphs compared


TRACE_CASES = {
    "plain-2layer-bidir-batch_first": (dict(num_layers=2, bidirectional=True, batch_first=True), True),
    "proj_size": (dict(proj_size=3), True),
    "peephole-layer_norm": (dict(peephole=True, layer_norm=True), False),
    "coupled-zoneout": (dict(coupled=True, zoneout=0.2), False),
}


@pytest.mark.parametrize("case", list(TRACE_CASES))
@pytest.mark.parametrize("backend", ["auto", "fused", "reference"])
def test_jit_trace_matches_eager_at_other_inputs(case, backend):
    kw, any_length = TRACE_CASES[case]
    torch.manual_seed(0)
    m = lk.LSTM(3, 4, **kw, backend=backend).eval()
    D, L, P = 1 + m.bidirectional, m.num_layers, m.state_size
    shape = (2, 5, 3) if m.batch_first else (5, 2, 3)
    hx = (torch.randn(L * D, 2, P), torch.randn(L * D, 2, 4))
    traced = _trace(m, (torch.randn(shape), hx))
    x2, hx2 = torch.randn(shape), (torch.randn(L * D, 2, P), torch.randn(L * D, 2, 4))
    with torch.no_grad():
        got, want = traced(x2, hx2), m(x2, hx2)
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)):
        assert_close(a, b, what="traced vs eager")
    if any_length and backend != "reference":  # torch's kernel is one aten::lstm node: any T fits
        longer = torch.randn((2, 9, 3) if m.batch_first else (9, 2, 3))
        with torch.no_grad():
            assert_close(traced(longer, hx2)[0], m(longer, hx2)[0], what="traced at another length")


def test_jit_trace_with_lengths_follows_other_lengths():
    """User code passing lengths= through a traced model: torch's kernel packs the batch inside
    the graph, so other lengths of the traced shape give eager's results."""

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lk.LSTM(3, 4, bidirectional=True)

        def forward(self, x, lengths):
            return self.lstm(x, lengths=lengths)

    torch.manual_seed(0)
    m = Encoder().eval()
    traced = _trace(m, (torch.randn(6, 3, 3), torch.tensor([6, 4, 2])))
    for lengths in ([6, 3, 5], [2, 1, 2]):
        x, lengths = torch.randn(6, 3, 3), torch.tensor(lengths)
        with torch.no_grad():
            for a, b in zip(torch.utils._pytree.tree_leaves(traced(x, lengths)), torch.utils._pytree.tree_leaves(m(x, lengths))):
                assert_close(a, b, what=f"traced with lengths {lengths.tolist()}")


def test_jit_trace_rnn_and_cell():
    torch.manual_seed(0)
    rnn = lk.RNN(3, 4, num_layers=2, nonlinearity="relu").eval()
    cell = lk.LSTMCell(3, 4, peephole=True).eval()
    traced_rnn = _trace(rnn, (torch.randn(5, 2, 3),))
    traced_cell = _trace(cell, (torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))))
    x, state = torch.randn(5, 2, 3), (torch.randn(2, 4), torch.randn(2, 4))
    with torch.no_grad():
        assert_close(traced_rnn(x)[0], rnn(x)[0], what="traced RNN")
        for a, b in zip(traced_cell(x[0], state), cell(x[0], state)):
            assert_close(a, b, what="traced LSTMCell")


# --------------------------------------------------------------------------- pickling and copies


def test_whole_module_pickles_and_copies():
    torch.manual_seed(0)
    m = lk.LSTM(3, 4, num_layers=2, peephole=True).eval()
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(5, 2, 3)
    for other in (loaded, copy.deepcopy(m)):
        assert other._flat_weights_names == m._flat_weights_names
        assert_close(other(x)[0], m(x)[0], what="output after pickling")


# --------------------------------------------------------------------------- torch.nn.RNNBase's helper methods


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)),
                                      ("LSTM", dict(batch_first=True)), ("RNN", dict(num_layers=2))])
def test_rnnbase_helper_methods_agree_with_torchs(mode, kw):
    """check_input, get_expected_*_size, check_hidden_size, check_forward_args and permute_hidden,
    which subclasses of torch's modules call from their own forward."""
    ours, ref = pair({"LSTM": lk.LSTM, "RNN": lk.RNN}[mode], {"LSTM": nn.LSTM, "RNN": nn.RNN}[mode], 5, 6, **kw)
    x = torch.randn(4, 3, 5)
    packed = torch.nn.utils.rnn.pack_sequence([torch.randn(n, 5) for n in (4, 2, 1)])
    for inp, bs in ((x, None), (packed.data, packed.batch_sizes)):
        assert ours.get_expected_hidden_size(inp, bs) == ref.get_expected_hidden_size(inp, bs)
        if mode == "LSTM":
            assert ours.get_expected_cell_size(inp, bs) == ref.get_expected_cell_size(inp, bs)
        ours.check_input(inp, bs)
        h = torch.zeros(ref.get_expected_hidden_size(inp, bs))
        hidden = (h, torch.zeros(ref.get_expected_cell_size(inp, bs))) if mode == "LSTM" else h
        ours.check_forward_args(inp, hidden, bs)
        perm = torch.tensor([2, 0, 1])
        for a, b in zip(torch.utils._pytree.tree_leaves(ours.permute_hidden(hidden, perm)),
                        torch.utils._pytree.tree_leaves(ref.permute_hidden(hidden, perm))):
            assert torch.equal(a, b)
    assert ours.permute_hidden(hidden, None) is hidden
    with pytest.raises(ValueError, match="input_size=5, got 4"):
        ours.check_input(torch.randn(4, 3, 4), None)
    with pytest.raises(ValueError, match="3 dimensions, got 2"):
        ours.check_input(torch.randn(4, 5), None)
    with pytest.raises(ValueError, match="Expected hidden.* size"):
        bad = torch.zeros(1, 1, 1)
        ours.check_forward_args(x, (bad, bad) if mode == "LSTM" else bad, None)
