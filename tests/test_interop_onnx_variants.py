"""ONNX export of the lk.LSTM variants: onnxruntime runs the graph and must match the reference.

Peephole goes through the LSTM operator's P input (and the scan body); coupled, LayerNorm and
zoneout need the scan route. Every parameter is randomized (LayerNorm gains start at 1, peepholes
at 0 otherwise, which would hide a wrong mapping). Zoneout is exported as its eval expectation.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmkit as lk
from lstmkit.interop import EXPORT_SUPPORT, ExportError, export_onnx, export_route

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ONNX_TOL = dict(rtol=1e-5, atol=1e-5)  # float32 onnxruntime vs the float64 reference
VARIANTS = {
    "peephole": dict(peephole=True),
    "peephole-bidir-layers2": dict(peephole=True, bidirectional=True, num_layers=2),
    "coupled": dict(coupled=True),
    "coupled-peephole": dict(coupled=True, peephole=True),
    "layer_norm": dict(layer_norm=True),
    "layer_norm-proj-bidir": dict(layer_norm=True, proj_size=3, bidirectional=True),
    "zoneout": dict(zoneout=(0.3, 0.1)),
    "all": dict(peephole=True, layer_norm=True, zoneout=0.2, num_layers=2, bidirectional=True, batch_first=True),
    "training-only dropouts": dict(recurrent_dropout=0.3, input_dropout=0.2, weight_drop=0.4, num_layers=2),
}
KEYS = ("num_layers", "batch_first", "bidirectional", "proj_size", "peephole", "coupled", "layer_norm",
        "zoneout", "recurrent_dropout", "input_dropout", "weight_drop")


def _model(config: dict, seed: int = 0) -> lk.LSTM:
    torch.manual_seed(seed)
    model = lk.LSTM(4, 6, backend="reference", **config)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    return model


def _run_both(model: lk.LSTM, method: str, lengths=None, initial_state=False, T=7, B=3):
    gen = torch.Generator().manual_seed(1)
    L, D, P, H = model.num_layers, model.num_directions, model.state_size, model.hidden_size
    x = torch.randn((B, T, 4) if model.batch_first else (T, B, 4), generator=gen)
    hx = (torch.randn(L * D, B, P, generator=gen), torch.randn(L * D, B, H, generator=gen)) if initial_state else None
    proto = export_onnx(model, initial_state=initial_state, lengths=lengths is not None, method=method)
    feeds = {"input": x.numpy()}
    if hx is not None:
        feeds.update(h0=hx[0].numpy(), c0=hx[1].numpy())
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, dtype=np.int64)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["output", "h_n", "c_n"], feeds)
    ref = lk.LSTM(4, 6, backend="reference", dtype=torch.float64, **{k: getattr(model, k) for k in KEYS}).eval()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = ref(x.double(), None if hx is None else tuple(t.double() for t in hx),
                   lengths=None if lengths is None else torch.tensor(lengths))
    return proto, got, (want[0], *want[1])


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("lengths,initial_state", [(None, False), ([7, 2, 5], True)])
def test_onnxruntime_matches_the_reference_for_variants(name, lengths, initial_state):
    model = _model(VARIANTS[name]).train()  # export must compute eval mode whatever mode the model is in
    proto, got, want = _run_both(model, "auto", lengths, initial_state)
    assert model.training, "export must leave the module's mode as it found it"
    for label, g, w in zip(("output", "h_n", "c_n"), got, want):
        np.testing.assert_allclose(g, w.numpy(), **ONNX_TOL, err_msg=f"{name}: {label}")
    expected_route = "native" if name.startswith(("peephole", "training")) else "scan"
    assert export_route(model) == expected_route
    assert dict((p.key, p.value) for p in proto.metadata_props)["lstmkit_route"] == expected_route


def test_peephole_runs_through_the_lstm_operator_and_the_scan_body_alike():
    model = _model(dict(peephole=True, bidirectional=True))
    proto, native, want = _run_both(model, "native", lengths=[7, 3, 1])
    assert [n for n in proto.graph.node if n.op_type == "LSTM"][0].input[7], "the P input must be wired"
    _, scan, _ = _run_both(model, "scan", lengths=[7, 3, 1])
    for n, s, w in zip(native, scan, want):
        np.testing.assert_allclose(n, w.numpy(), **ONNX_TOL)
        np.testing.assert_allclose(s, w.numpy(), **ONNX_TOL)


def test_a_wrong_peephole_order_would_be_caught():
    """Peephole rows i, f, o must become ONNX's i, o, f: swapping two rows changes the result."""
    model = _model(dict(peephole=True))
    _, got, _ = _run_both(model, "native")
    with torch.no_grad():
        model.weight_peephole_l0.copy_(model.weight_peephole_l0[[0, 2, 1]])
    _, swapped, _ = _run_both(model, "native")
    assert not np.allclose(got[0], swapped[0], atol=1e-4)


def test_scan_only_variants_refuse_the_native_route_by_name():
    for config, name in ((dict(coupled=True), "coupled"), (dict(layer_norm=True), "layer_norm"),
                         (dict(zoneout=0.1), "zoneout"), (dict(proj_size=2, layer_norm=True), "proj_size=2 and layer_norm")):
        with pytest.raises(ExportError, match=f"{name} cannot use the ONNX LSTM operator"):
            export_onnx(_model(config), method="native")
        assert EXPORT_SUPPORT[name.split(" and ")[-1]][0] == "scan"
    with pytest.raises(ExportError, match="layer_norm needs opset >= 17"):
        export_onnx(_model(dict(layer_norm=True)), opset=16)
