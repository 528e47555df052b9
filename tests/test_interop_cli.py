"""``lstmkit export RUN --onnx``: a trained run folder becomes an ONNX file that predicts like the run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.cli import main

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "adding"
    rc = main(["train", "--task", "adding", "--backend", "reference", "--run_dir", str(path),
               "--train.steps", "1", "--train.plot", "false", "--train.progress", "off"])
    assert rc == 0
    return path


def test_export_run_predicts_like_the_run(run_dir, tmp_path, capsys):
    from lstmkit.train import load_run

    out_path = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out_path)]) == 0
    assert "prediction" in capsys.readouterr().out
    _, _, model = load_run(str(run_dir))
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input", "lengths"]
    torch.manual_seed(0)
    B, T = 3, 12
    x = torch.randn(B, T, model.core.input_size)
    lengths = torch.tensor([12, 5, 9])
    with torch.no_grad():
        expected = model(x, lengths)  # (B, O): the head at each sequence's last step
    got = sess.run(["prediction"], {"input": x.numpy(), "lengths": lengths.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_export_core_only_and_bad_module(run_dir, tmp_path, capsys):
    out_path = tmp_path / "core.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out_path), "--core-only", "--initial-state"]) == 0
    assert "only the LSTM 'core' is in the graph" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["output", "h_n", "c_n"]
    assert [i.name for i in sess.get_inputs()] == ["input", "h0", "c0"]
    assert main(["export", str(run_dir), "--onnx", str(out_path), "--module", "nope"]) == 2
    assert "no lk.LSTM of that name" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--onnx", str(out_path)]) == 2
