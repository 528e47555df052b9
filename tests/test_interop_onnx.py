"""ONNX export: onnxruntime runs the exported graph and agrees with lk.LSTM to 1e-5.

The reference is lk.LSTM's reference backend in float64 on the exported float32 weights, so
the tolerance only has to absorb onnxruntime's float32 arithmetic (observed ≤ 3e-7 here).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmkit as lk
from lstmkit.interop import EXPORT_SUPPORT, ExportError, export_onnx, export_route

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ONNX_TOL = dict(rtol=1e-5, atol=1e-5)  # the parity bound for float32 onnxruntime vs lstmkit

CONFIGS = {
    "plain": dict(),
    "layers2": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "layers2-bidir-batch_first": dict(num_layers=2, bidirectional=True, batch_first=True),
    "no-bias": dict(bias=False, num_layers=2),
    "batch_first": dict(batch_first=True),
    "proj": dict(proj_size=3),
    "proj-layers2-bidir": dict(proj_size=3, num_layers=2, bidirectional=True),
    "proj-batch_first-no-bias": dict(proj_size=2, batch_first=True, bias=False),
}
LENGTHS = [6, 2, 4]


def _session(model_proto):
    return ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(model, sess, *, T=6, B=3, initial_state=False, lengths=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    L, D, P, H, I = model.num_layers, model.num_directions, model.state_size, model.hidden_size, model.input_size
    x = torch.randn((B, T, I) if model.batch_first else (T, B, I), generator=gen)
    feeds = {"input": x.numpy()}
    hx = None
    if initial_state:
        hx = (torch.randn(L * D, B, P, generator=gen), torch.randn(L * D, B, H, generator=gen))
        feeds.update(h0=hx[0].numpy(), c0=hx[1].numpy())
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, dtype=np.int64)
    ref = lk.LSTM(I, H, **_config(model), backend="reference", dtype=torch.float64)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        out, (h_n, c_n) = ref(x.double(), None if hx is None else tuple(t.double() for t in hx),
                              lengths=None if lengths is None else torch.tensor(lengths))
    got = sess.run(["output", "h_n", "c_n"], feeds)
    for name, g, e in zip(("output", "h_n", "c_n"), got, (out, h_n, c_n)):
        assert g.shape == tuple(e.shape), f"{name}: shape {g.shape} != {tuple(e.shape)}"
        np.testing.assert_allclose(g, e.numpy(), **ONNX_TOL, err_msg=name)
    if lengths is not None:  # past each length the output is exactly zero, as lk.LSTM's
        o = got[0] if not model.batch_first else got[0].transpose(1, 0, 2)
        for b, n in enumerate(lengths):
            assert not o[n:, b].any(), f"output past length {n} of sequence {b} must be zero"


def _config(m):
    keys = ("num_layers", "bias", "batch_first", "bidirectional", "proj_size")
    return {k: getattr(m, k) for k in keys}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("initial_state,with_lengths", list(itertools.product([False, True], [False, True])))
def test_onnxruntime_matches_lstmkit(name, initial_state, with_lengths):
    torch.manual_seed(list(CONFIGS).index(name))
    model = lk.LSTM(5, 7, backend="reference", **CONFIGS[name]).eval()
    proto = export_onnx(model, initial_state=initial_state, lengths=with_lengths)
    ops = {n.op_type for n in proto.graph.node}
    route = export_route(model)
    assert ("LSTM" in ops) == (route == "native") and ("Scan" in ops) == (route == "scan"), ops
    assert route == ("scan" if model.proj_size else "native")
    sess = _session(proto)
    _check(model, sess, initial_state=initial_state, lengths=LENGTHS if with_lengths else None)


@pytest.mark.parametrize("name", ["plain", "layers2-bidir-batch_first", "no-bias"])
def test_scan_decomposition_matches_on_plain_configs(name):
    """The decomposition route is checked on configurations the LSTM operator also covers."""
    torch.manual_seed(7)
    model = lk.LSTM(4, 6, backend="reference", **CONFIGS[name]).eval()
    proto = export_onnx(model, initial_state=True, lengths=True, method="scan")
    assert "Scan" in {n.op_type for n in proto.graph.node} and "LSTM" not in {n.op_type for n in proto.graph.node}
    _check(model, _session(proto), initial_state=True, lengths=LENGTHS)


@pytest.mark.parametrize("name", ["layers2-bidir-batch_first", "proj-layers2-bidir"])
def test_time_and_batch_are_dynamic(name, tmp_path):
    torch.manual_seed(11)
    model = lk.LSTM(5, 7, backend="reference", **CONFIGS[name]).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, initial_state=True, lengths=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T, B, lengths in ((1, 1, [1]), (9, 2, [9, 3]), (4, 5, [4, 1, 2, 3, 4])):
        _check(model, sess, T=T, B=B, initial_state=True, lengths=lengths, seed=T)


def test_exports_torch_nn_lstm_and_records_route():
    torch.manual_seed(2)
    theirs = torch.nn.LSTM(3, 4, num_layers=2).eval()
    proto = export_onnx(theirs)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["lstmkit_route"] == "native"
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        out, (h, c) = theirs(x)
    got = _session(proto).run(None, {"input": x.numpy()})
    np.testing.assert_allclose(got[0], out.numpy(), **ONNX_TOL)
    np.testing.assert_allclose(got[1], h.numpy(), **ONNX_TOL)


def test_not_exportable_configurations_are_refused_by_name(monkeypatch):
    with pytest.raises(ExportError, match="proj_size=3 cannot use the ONNX LSTM operator"):
        export_onnx(lk.LSTM(4, 6, proj_size=3), method="native")
    with pytest.raises(ExportError, match="method must be"):
        export_onnx(lk.LSTM(4, 6), method="loop")
    model = lk.LSTM(4, 6)  # a variant export does not know is refused by name, not exported wrong
    monkeypatch.setattr(model, "_variants", lambda: ("sparsemax_gates",))
    with pytest.raises(ExportError, match="sparsemax_gates is not exportable to ONNX"):
        export_onnx(model)
    with pytest.raises(TypeError, match="lk.LSTM or torch.nn.LSTM"):
        export_onnx(torch.nn.GRU(2, 3))


def test_gate_reorder_is_the_onnx_order():
    """ONNX wants i, o, f, c; torch stores i, f, g, o: a row tagged by gate lands where ONNX expects it."""
    H = 2
    model = lk.LSTM(1, H, backend="reference")
    with torch.no_grad():
        for k, tag in enumerate((1.0, 2.0, 3.0, 4.0)):  # torch blocks i=1, f=2, g=3, o=4
            model.weight_ih_l0[k * H:(k + 1) * H] = tag
    proto = export_onnx(model)
    lstm_node = next(n for n in proto.graph.node if n.op_type == "LSTM")
    W = next(onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == lstm_node.input[1])
    assert W.shape == (1, 4 * H, 1)
    assert W[0, :, 0].tolist() == [1.0, 1.0, 4.0, 4.0, 2.0, 2.0, 3.0, 3.0]  # i, o, f, c


@pytest.mark.parametrize("source", ["output", "last"])
def test_linear_head_appended_to_the_graph(source):
    from lstmkit.interop.onnx_export import add_linear_head

    torch.manual_seed(4)
    model = lk.LSTM(3, 5, batch_first=True, backend="reference").eval()
    head = torch.nn.Linear(5, 2)
    proto = add_linear_head(export_onnx(model, lengths=True), head.weight, head.bias, source=source)
    onnx.checker.check_model(proto, full_check=True)
    x, lengths = torch.randn(3, 6, 3), [6, 2, 4]
    with torch.no_grad():
        out, _ = model(x)
        expected = head(out) if source == "output" else head(out[torch.arange(3), torch.tensor(lengths) - 1])
    got = _session(proto).run(["prediction"], {"input": x.numpy(), "lengths": np.asarray(lengths, np.int64)})[0]
    if source == "output":  # past each length lk.LSTM's output is zero, so the head gives its bias there
        for b, n in enumerate(lengths):
            expected[b, n:] = head.bias.detach()
    np.testing.assert_allclose(got, expected.numpy(), **ONNX_TOL)


def test_stepping_the_exported_graph_with_carried_state_equals_one_call():
    """onnxruntime fed one step at a time, h_n / c_n carried back in as h0 / c0, equals one full call."""
    torch.manual_seed(9)
    model = lk.LSTM(4, 6, num_layers=2, backend="reference").eval()
    sess = _session(export_onnx(model, initial_state=True))
    x = torch.randn(8, 1, 4).numpy()
    h, c = np.zeros((2, 1, 6), np.float32), np.zeros((2, 1, 6), np.float32)
    full = sess.run(None, {"input": x, "h0": h, "c0": c})
    for t in range(8):
        y, h, c = sess.run(None, {"input": x[t:t + 1], "h0": h, "c0": c})
        np.testing.assert_allclose(y[0], full[0][t], **ONNX_TOL)
    np.testing.assert_allclose(h, full[1], **ONNX_TOL)
    np.testing.assert_allclose(c, full[2], **ONNX_TOL)


@settings(max_examples=20, deadline=None)
@given(I=st.integers(1, 5), H=st.integers(2, 6), layers=st.integers(1, 3), bidir=st.booleans(),
       proj=st.booleans(), bias=st.booleans(), batch_first=st.booleans(), T=st.integers(1, 6),
       lengths_seed=st.integers(0, 2 ** 16), with_lengths=st.booleans(), initial_state=st.booleans())
def test_onnx_parity_over_shapes(I, H, layers, bidir, proj, bias, batch_first, T, lengths_seed, with_lengths,
                                 initial_state):
    torch.manual_seed(lengths_seed)
    model = lk.LSTM(I, H, num_layers=layers, bidirectional=bidir, proj_size=H - 1 if proj else 0, bias=bias,
                    batch_first=batch_first, backend="reference").eval()
    gen = np.random.default_rng(lengths_seed)
    B = int(gen.integers(1, 4))
    lengths = gen.integers(1, T + 1, size=B).tolist() if with_lengths else None
    proto = export_onnx(model, initial_state=initial_state, lengths=with_lengths)
    _check(model, _session(proto), T=T, B=B, initial_state=initial_state, lengths=lengths, seed=lengths_seed)
