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


def test_export_char_lm_run_goes_from_ids_to_logits(tmp_path, capsys):
    """A text run exports whole: ids in, the run's next-character logits out, state carried in and out."""
    from lstmkit.train import load_run

    data = tmp_path / "corpus.txt"
    data.write_text("To be, or not to be: that is the question.\n" * 40, encoding="utf-8")
    run = tmp_path / "text"
    assert main(["train", "text", "--data", str(data), "--run_dir", str(run), "--hidden_size", "16",
                 "--embedding_size", "8", "--num_layers", "2", "--seq_len", "10", "--train.batch_size", "4",
                 "--train.steps", "3", "--train.progress", "off", "--train.plot", "false"]) == 0
    out_path = tmp_path / "lm.onnx"
    assert main(["export", str(run), "--onnx", str(out_path), "--initial-state"]) == 0
    assert "logits = decoder" in capsys.readouterr().out
    _, _, model = load_run(str(run))
    model.eval()
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["ids", "h0", "c0"]
    V = model.decoder.out_features
    ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(0))
    h0, c0 = torch.randn(2, 2, 16), torch.randn(2, 2, 16)
    with torch.no_grad():
        logits, (h_n, c_n) = model(ids, (h0, c0))
    got = sess.run(["logits", "h_n", "c_n"], {"ids": ids.numpy(), "h0": h0.numpy(), "c0": c0.numpy()})
    for g, e in zip(got, (logits, h_n, c_n)):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-5)
    assert main(["export", str(run), "--onnx", str(tmp_path / "core.onnx"), "--core-only"]) == 0
    core = ort.InferenceSession(str(tmp_path / "core.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in core.get_inputs()] == ["input"]
