"""ONNX export of lk.sLSTM and lk.mLSTM (Scan graphs): onnxruntime runs the graph and agrees
with the module, outputs and every final state, over heads, layers, directions, lengths,
initial states and both forget gates.

The reference is the module in float64 (sLSTM's reference backend, mLSTM's recurrent form) on
the exported float32 weights, so the tolerance only absorbs onnxruntime's float32 arithmetic.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmkit as lk
from lstmkit.interop import EXPORT_SUPPORT, ExportError, export_onnx, export_route

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = dict(rtol=1e-5, atol=1e-5)
LENGTHS = [7, 2, 5]
SLSTM_CONFIGS = {
    "plain": dict(),
    "heads": dict(num_heads=2),
    "exp-forget": dict(forget_gate="exp", num_heads=3),
    "layers2-bidir-batch_first": dict(num_layers=2, bidirectional=True, batch_first=True, num_heads=2),
    "no-bias-exp-bidir": dict(bias=False, forget_gate="exp", bidirectional=True),
}
MLSTM_CONFIGS = {
    "plain": dict(),
    "heads-exp": dict(num_heads=2, forget_gate="exp"),
    "layers2-bidir-batch_first": dict(num_layers=2, bidirectional=True, batch_first=True, num_heads=3),
    "no-bias-chunkwise": dict(bias=False, num_heads=2, form="chunkwise", chunk_size=3),
}
KEYS = ("num_layers", "bias", "batch_first", "bidirectional", "num_heads", "forget_gate")


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _model(cls, config, scale=0.6, seed=0):
    torch.manual_seed(seed)
    model = cls(4, 6, **config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-scale, scale)
    return model


def _reference(model):
    """The same model in float64: sLSTM's readable loop, mLSTM's recurrent form."""
    config = {k: getattr(model, k) for k in KEYS}
    if isinstance(model, lk.sLSTM):
        ref = lk.sLSTM(4, 6, backend="reference", dtype=torch.float64, **config)
    else:
        ref = lk.mLSTM(4, 6, form="recurrent", dtype=torch.float64, **config)
    ref.load_state_dict(model.state_dict())
    return ref.eval()


def _initial_state(model, B, gen):
    LD, H, NH = model.num_layers * model.num_directions, model.hidden_size, model.num_heads
    if isinstance(model, lk.sLSTM):
        h, c, m = (torch.randn(LD, B, H, generator=gen) for _ in range(3))
        return {"h0": h, "c0": c, "n0": torch.rand(LD, B, H, generator=gen) + 0.1, "m0": m}
    d = H // NH
    return {"C0": torch.randn(LD, B, NH, d, d, generator=gen), "n0": torch.randn(LD, B, NH, d, generator=gen),
            "m0": torch.randn(LD, B, NH, generator=gen)}


def _check(model, sess, *, T=7, B=3, initial_state=False, lengths=None, seed=0, x_scale=1.0, tol=TOL):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, 4) if model.batch_first else (T, B, 4), generator=gen) * x_scale
    feeds = {"input": x.numpy()}
    hx = _initial_state(model, B, gen) if initial_state else None
    if hx is not None:
        feeds.update({k: v.numpy() for k, v in hx.items()})
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, dtype=np.int64)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, feeds)
    with torch.no_grad():
        out, state = _reference(model)(x.double(), None if hx is None else tuple(v.double() for v in hx.values()),
                                       lengths=None if lengths is None else torch.tensor(lengths))
    for name, g, w in zip(names, got, (out, *state)):
        assert np.isfinite(g).all(), name
        np.testing.assert_allclose(g, w.numpy(), **tol, err_msg=name)
    return names


CASES = [(lk.sLSTM, n) for n in SLSTM_CONFIGS] + [(lk.mLSTM, n) for n in MLSTM_CONFIGS]
OUTPUTS = {lk.sLSTM: ["output", "h_n", "c_n", "n_n", "m_n"], lk.mLSTM: ["output", "C_n", "n_n", "m_n"]}


@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cls, name", CASES, ids=[f"{c.__name__}-{n}" for c, n in CASES])
def test_onnxruntime_matches_the_module(cls, name, initial_state, with_lengths):
    model = _model(cls, (SLSTM_CONFIGS if cls is lk.sLSTM else MLSTM_CONFIGS)[name])
    sess = _session(export_onnx(model, initial_state=initial_state, lengths=with_lengths))
    names = _check(model, sess, initial_state=initial_state, lengths=LENGTHS if with_lengths else None)
    assert names == OUTPUTS[cls]


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_slstm_graph_is_stable_where_the_unstabilized_form_overflows(forget_gate):
    # weights ±6 and inputs ×20: pre-activations in the hundreds, exp(ĩ) overflows float32 (> e^88)
    model = _model(lk.sLSTM, dict(num_heads=2, forget_gate=forget_gate), scale=6.0)
    with torch.no_grad():
        pre = torch.randn(40, 3, 4) * 20 @ model.weight_ih_l0.T
    assert pre.abs().max() > 100
    _check(model, _session(export_onnx(model, lengths=True)), T=40, lengths=[40, 13, 27], x_scale=20.0)


def test_mlstm_graph_is_stable_on_large_gate_preactivations():
    # q·k and C·q of inputs this large (outputs in the hundreds) lose float32 digits in any
    # evaluation order: ~5e-5 relative from float64 here, in torch's float32 forms as in the graph
    model = _model(lk.mLSTM, dict(num_heads=2), scale=6.0)
    _check(model, _session(export_onnx(model)), T=30, x_scale=20.0, tol=dict(rtol=3e-4, atol=1e-4))


@pytest.mark.parametrize("cls", [lk.sLSTM, lk.mLSTM])
def test_time_and_batch_are_dynamic_and_the_file_loads(cls, tmp_path):
    model = _model(cls, dict(num_heads=2))
    path = tmp_path / "x.onnx"
    export_onnx(model, path, lengths=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T, B in ((3, 1), (11, 4)):
        _check(model, sess, T=T, B=B, lengths=[T] + [max(1, T - 2)] * (B - 1))
    assert onnx.load(str(path)).metadata_props[1].value == "scan"


def test_exported_states_continue_the_sequence():
    # the graph's final state fed back as its initial state equals one run over both halves
    model = _model(lk.sLSTM, dict(num_heads=2, num_layers=2))
    sess = _session(export_onnx(model, initial_state=True))
    x = torch.randn(8, 2, 4)
    zeros = {k: np.zeros((2, 2, 6), np.float32) for k in ("h0", "c0", "n0", "m0")}
    first = sess.run(None, {"input": x[:5].numpy(), **zeros})
    second = sess.run(None, {"input": x[5:].numpy(), **dict(zip(("h0", "c0", "n0", "m0"), first[1:]))})
    with torch.no_grad():
        out, state = model(x)
    np.testing.assert_allclose(np.concatenate([first[0], second[0]]), out.numpy(), **TOL)
    np.testing.assert_allclose(second[1], state[0].numpy(), **TOL)


def test_xlstm_routes_and_refusals():
    model = lk.sLSTM(4, 6)
    assert export_route(model) == "scan" and export_route(lk.mLSTM(4, 6), "scan") == "scan"
    assert "lk.sLSTM / lk.mLSTM" in EXPORT_SUPPORT
    with pytest.raises(ExportError, match=r"lk.sLSTM cannot use the ONNX LSTM operator .*use method='scan' or 'auto'"):
        export_onnx(model, method="native")
    with pytest.raises(ExportError, match="lk.mLSTM needs opset >= 13 .* got 12"):
        export_onnx(lk.mLSTM(4, 6), opset=12)
    with pytest.raises(TypeError, match=r"export_onnx expects an lk.LSTM or torch.nn.LSTM \(or lk.sLSTM, lk.mLSTM\), got GRU"):
        export_onnx(torch.nn.GRU(4, 6))


@pytest.mark.parametrize("cell", ["slstm", "mlstm"])
def test_lstmkit_export_of_an_xlstm_text_run_goes_from_ids_to_logits(cell, tmp_path, capsys):
    from lstmkit.cli import main
    from lstmkit.train import load_run

    data = tmp_path / "corpus.txt"
    data.write_text("To be, or not to be: that is the question.\n" * 40, encoding="utf-8")
    run = tmp_path / "text"
    assert main(["train", "text", "--data", str(data), "--run_dir", str(run), "--model", cell, "--num_heads", "2",
                 "--hidden_size", "8", "--embedding_size", "8", "--seq_len", "10", "--train.batch_size", "4",
                 "--train.steps", "2", "--train.progress", "off", "--train.plot", "false"]) == 0
    path = tmp_path / "lm.onnx"
    assert main(["export", str(run), "--onnx", str(path)]) == 0
    assert "via scan route" in capsys.readouterr().out
    _, _, model = load_run(str(run))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["ids"]
    ids = torch.randint(0, model.decoder.out_features, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, state = model.eval()(ids)
    got = sess.run(None, {"ids": ids.numpy()})
    names = [o.name for o in sess.get_outputs()]
    np.testing.assert_allclose(got[names.index("logits")], logits.numpy(), **TOL)
    np.testing.assert_allclose(got[names.index("n_n")], state[-2].numpy(), **TOL)
