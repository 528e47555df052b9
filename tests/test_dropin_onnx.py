"""torch.onnx.export on models holding lk.LSTM, both exporters, run in onnxruntime beside
lstmkit's own export_onnx of the same network.

While torch.onnx.export records, lk.LSTM runs on torch's own kernel (one aten::lstm, exported
as ONNX's LSTM operator) or, for variants, on the reference loop (plain torch ops over the
recorded length): see lstmkit._torch_compat.graph_capture_backend.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lstmkit as lk

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# onnxruntime's float32 kernels against torch's: summation order only (seen: 2e-7).
ORT_TOL = 1e-5


class Tagger(nn.Module):
    """User code: a model that holds an LSTM and takes the initial state as inputs."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0):
        out, (h, c) = self.lstm(x, (h0, c0))
        return out, h, c


def inputs(m, T, B, seed):
    g = torch.Generator().manual_seed(seed)
    L, D = m.num_layers * m.num_directions, m.num_directions
    x = torch.randn((B, T, m.input_size) if m.batch_first else (T, B, m.input_size), generator=g)
    return x, torch.randn(L, B, m.state_size, generator=g), torch.randn(L, B, m.hidden_size, generator=g)


def run_ort(path, x, h0, c0):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.numpy(), "h0": h0.numpy(), "c0": c0.numpy()})


def assert_parity(path, m, shapes):
    for T, B in shapes:
        x, h0, c0 = inputs(m, T, B, seed=T * 10 + B)
        with torch.no_grad():
            out, (h, c) = m(x, (h0, c0))
        for got, want in zip(run_ort(path, x, h0, c0), (out, h, c)):
            np.testing.assert_allclose(got, want.numpy(), rtol=ORT_TOL, atol=ORT_TOL)


def torchscript_export(m, path):
    x, h0, c0 = inputs(m, 5, 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(Tagger(m), (x, h0, c0), str(path), dynamo=False, input_names=["input", "h0", "c0"],
                          output_names=["output", "h_n", "c_n"],
                          dynamic_axes={"input": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"}})


def test_torchscript_exporter_plain_lstm_is_onnx_lstm_with_free_length_and_batch(tmp_path):
    torch.manual_seed(0)
    m = lk.LSTM(4, 6, num_layers=2, bidirectional=True).eval()
    torchscript_export(m, tmp_path / "ts.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "ts.onnx")).graph.node}
    assert "LSTM" in ops
    assert_parity(tmp_path / "ts.onnx", m, [(5, 3), (9, 2), (1, 1)])
    # lstmkit's own exporter, beside it: the same network, the same numbers
    lk.export_onnx(m, tmp_path / "own.onnx", initial_state=True)
    assert_parity(tmp_path / "own.onnx", m, [(5, 3), (9, 2)])


def test_torchscript_exporter_variants_run_the_reference_loop(tmp_path):
    torch.manual_seed(0)
    m = lk.LSTM(4, 6, peephole=True, layer_norm=True, batch_first=True).eval()
    torchscript_export(m, tmp_path / "ts.onnx")
    assert "LSTM" not in {n.op_type for n in onnx.load(str(tmp_path / "ts.onnx")).graph.node}
    assert_parity(tmp_path / "ts.onnx", m, [(5, 3), (5, 1)])  # unrolled over T = 5, batch free
    lk.export_onnx(m, tmp_path / "own.onnx", initial_state=True)  # any length
    assert_parity(tmp_path / "own.onnx", m, [(5, 3), (8, 1)])


def test_torchscript_exporter_needs_a_wrapper_around_a_bare_lk_lstm(tmp_path):
    """A deliberate difference: the TorchScript-based exporter passes every keyword-only
    default of the exported module's forward positionally (lengths=, return_gates=), so a bare
    lk.LSTM cannot be its top-level module; inside any model (as above) it exports, and
    dynamo=True (torch's default exporter) takes a bare lk.LSTM."""
    m = lk.LSTM(4, 6).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match="positional arguments"):
            torch.onnx.export(m, (torch.randn(5, 3, 4),), str(tmp_path / "bare.onnx"), dynamo=False)


pytest.importorskip("onnxscript")


def dynamo_export(module, m, path, T=5):
    x, h0, c0 = inputs(m, T, 3, seed=0)
    B = torch.export.Dim("B")
    batch = {0: B} if m.batch_first else {1: B}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x, (h0, c0)), dynamo=True, input_names=["input", "h0", "c0"],
                                    dynamic_shapes=(batch, ({1: B}, {1: B})), verbose=False)
    program.save(str(path))


def test_dynamo_exporter_bare_lk_lstm(tmp_path):
    torch.manual_seed(0)
    m = lk.LSTM(4, 6, num_layers=2, bidirectional=True).eval()
    dynamo_export(m, m, tmp_path / "dyn.onnx")
    assert "LSTM" in {n.op_type for n in onnx.load(str(tmp_path / "dyn.onnx")).graph.node}
    assert_parity(tmp_path / "dyn.onnx", m, [(5, 3), (5, 2)])  # batch free, length as exported


def test_dynamo_exporter_variant_lstm(tmp_path):
    torch.manual_seed(0)
    m = lk.LSTM(4, 6, coupled=True, zoneout=0.2, proj_size=3).eval()
    dynamo_export(m, m, tmp_path / "dyn.onnx", T=3)  # the reference loop, unrolled: a short sequence keeps it quick
    assert_parity(tmp_path / "dyn.onnx", m, [(3, 3), (3, 2)])
