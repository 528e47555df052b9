"""int8 dynamic quantization of exported models: runs in onnxruntime and stays close to float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmkit as lk
from lstmkit.interop import export_onnx, quantize_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

# Rounding weights (7-bit) and activations (8-bit) moves these small nets' outputs by ~5e-3;
# an int16-saturating kernel (8-bit weights on AVX2) moved them by ~8e-2. 2e-2 separates the two.
INT8_TOL = 2e-2


@pytest.mark.parametrize("cfg,op", [(dict(num_layers=2, bidirectional=True), "DynamicQuantizeLSTM"),
                                    (dict(proj_size=8, num_layers=2), "MatMulInteger")])
def test_int8_model_runs_and_stays_close(cfg, op, tmp_path):
    torch.manual_seed(0)
    model = lk.LSTM(16, 32, backend="reference", **cfg).eval()
    f32, i8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_onnx(model, f32, lengths=True)
    quantize_onnx(f32, i8)
    assert op in {n.op_type for n in onnx.load(str(i8)).graph.node}
    # The Scan route keeps the step body's recurrent weights in float32 (only the input projection is quantized).
    assert i8.stat().st_size < (0.5 if op == "DynamicQuantizeLSTM" else 0.95) * f32.stat().st_size
    x, lengths = torch.randn(20, 3, 16), torch.tensor([20, 5, 11])
    with torch.no_grad():
        out, _ = model(x, lengths=lengths)
    sess = ort.InferenceSession(str(i8), providers=["CPUExecutionProvider"])
    got = sess.run(["output"], {"input": x.numpy(), "lengths": lengths.numpy()})[0]
    dev = np.abs(got - out.numpy()).max()
    assert 0 < dev < INT8_TOL, f"int8 deviation {dev}"
