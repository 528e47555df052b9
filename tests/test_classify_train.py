"""Training the classifier end to end: it learns, metrics are right, the CLI reports and plots."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.apps.classify import metrics as M
from lstmkit.apps.classify.task import ClassifyConfig, ClassifyTask, parse_class_weights, predict, score
from lstmkit.train import TrainConfig, Trainer
from lstmkit.train.config import to_dict

CLASSES = 3


def make_problem(path, n, seed, garbage=True):
    """Class k: the first step carries a one-hot marker k, every later step is noise; lengths 4-12.

    Only "remember the first step" solves it, so a model that reads padding or the wrong end of
    a sequence stays near chance (1/3).
    """
    rng = np.random.default_rng(seed)
    T, F = 12, CLASSES + 1
    lengths = rng.integers(4, T + 1, size=n)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.normal(0, 1, size=(n, T, F)).astype(np.float32)
    x[:, 0, :CLASSES] = 0
    x[np.arange(n), 0, y] = 3.0
    if garbage:
        x[np.arange(T)[None, :] >= lengths[:, None]] = 99.0  # padding the loader must ignore
    np.savez(path, x=x, lengths=lengths, y=y)
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("classify")
    train = make_problem(d / "train.npz", 384, seed=1)
    test = make_problem(d / "test.npz", 256, seed=2)
    cfg = ClassifyConfig(data=train, test_data=test, val_fraction=0.0, hidden_size=16, pooling="last",
                         class_weights="balanced", backend="auto")
    task = ClassifyTask(cfg)
    run_dir = str(d / "run")
    run_config = {"task": "classify", "run_dir": run_dir, **to_dict(cfg),
                  "train": {"steps": 150, "batch_size": 32, "lr": 0.01, "progress": "off", "plot": False,
                            "threads": 1}}
    tc = TrainConfig(steps=150, batch_size=32, lr=0.01, progress="off", plot=False, threads=1)
    result = Trainer(task, tc, run_dir, run_config=run_config).fit()
    return task, result, run_dir, test


def test_tiny_training_run_learns(trained):
    task, result, _, test = trained
    acc = result.metrics["accuracy"]  # evaluate() scores the test file when val_fraction = 0
    assert acc >= 0.9, f"accuracy {acc:.3f} after {result.step} steps (chance 0.33)"
    assert result.metrics["macro_f1"] >= 0.85


def test_untrained_model_is_near_chance(trained):
    """The learning test's threshold is meaningful: before training the same model is far below it."""
    task, _, _, test = trained
    torch.manual_seed(0)
    metrics, _ = score(predict(task.build_model(), task.test_data()), task.test_data())
    assert metrics["accuracy"] < 0.6


def test_metrics_on_a_hand_counted_example():
    cm = M.confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    pc = M.per_class(cm)
    np.testing.assert_allclose(pc["precision"], [1 / 2, 2 / 3, 0])
    np.testing.assert_allclose(pc["recall"], [1 / 2, 1, 0])
    np.testing.assert_allclose(pc["f1"], [0.5, 0.8, 0])
    s = M.summary(cm)
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8) / 3)
    assert s["balanced_accuracy"] == pytest.approx(0.5)
    report = M.format_report(cm, ["a", "b", "c"])
    assert "accuracy 0.6000" in report and "confusion matrix" in report


def test_class_weights():
    y = np.array([0, 0, 0, 1])
    w = parse_class_weights("balanced", y, ["a", "b"])
    torch.testing.assert_close(w, torch.tensor([4 / 6, 4 / 2]))
    assert parse_class_weights("none", y, ["a", "b"]) is None
    torch.testing.assert_close(parse_class_weights("1,3", y, ["a", "b"]), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="needs 2 non-negative numbers"):
        parse_class_weights("1,2,3", y, ["a", "b"])


def test_confusion_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    cm = np.array([[5, 1], [0, 4]])
    path = M.plot_confusion(cm, ["yes", "no"], str(tmp_path / "cm.png"), title="t")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_cli_classify_reports_and_plots(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from lstmkit.cli import main

    _, _, run_dir, test = trained
    png, preds = tmp_path / "cm.png", tmp_path / "pred.csv"
    assert main(["classify", run_dir, "--png", str(png), "--predictions", str(preds), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "macro F1" in out
    acc = float(out.split("accuracy ")[1].split()[0])
    assert acc >= 0.9
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = preds.read_text().splitlines()
    assert rows[0] == "index,predicted,true,probability" and len(rows) == 257


def test_cli_classify_default_png_lands_in_the_run_folder(trained, capsys):
    """A run trained on a data file's path names its default PNG after the file, inside RUN."""
    pytest.importorskip("matplotlib")
    import os

    from lstmkit.cli import main

    _, _, run_dir, _ = trained
    assert main(["classify", run_dir, "--threads", "1"]) == 0
    capsys.readouterr()
    png = os.path.join(run_dir, "confusion_train_test.png")
    assert os.path.isfile(png) and open(png, "rb").read(4) == b"\x89PNG"


def test_cli_classify_errors_are_one_line(trained, tmp_path, capsys):
    from lstmkit.cli import main

    _, _, run_dir, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label,a\n1,0,zzz\n")
    assert main(["classify", run_dir, "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lstmkit classify: error:") and "expected a number" in err and "\n" not in err
    wrong = tmp_path / "wide.npz"
    np.savez(wrong, x=np.zeros((2, 5, 7)), y=np.array([0, 1]))
    assert main(["classify", run_dir, "--data", str(wrong)]) == 2
    assert "the model expects 4" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "nope")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_cli_train_then_classify_a_csv_file(tmp_path, capsys, monkeypatch):
    """`lstmkit train --task classify --data FILE.csv` then `lstmkit classify RUN` from another folder."""
    from lstmkit.cli import main

    rng = np.random.default_rng(0)
    lines = ["id,label,time,a,b"]
    for s in range(24):
        for t in reversed(range(2 + s % 4)):  # rows out of time order: the time column sorts them
            lines.append(f"seq{s},{'up' if s % 2 else 'down'},{t},{rng.normal():.4f},{s % 2 + 0.1 * t}")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    run_dir = str(tmp_path / "run")
    assert main(["train", "--task", "classify", "--data", "d.csv", "--val_fraction", "0.25", "--hidden_size", "4",
                 "--run_dir", run_dir, "--train.steps", "3", "--train.batch_size", "8", "--train.progress", "off",
                 "--train.plot", "false", "--train.threads", "1"]) == 0
    capsys.readouterr()
    monkeypatch.chdir("/")
    assert main(["classify", run_dir, "--data", str(tmp_path / "d.csv"), "--png", str(tmp_path / "cm.png")]) == 0
    out = capsys.readouterr().out
    assert "(24 sequences)" in out and "down" in out and "up" in out
    # No test_data and a file: the run has no test split, so --data is required.
    assert main(["classify", run_dir]) == 2
    assert "give --data FILE" in capsys.readouterr().err


def test_tbptt_is_refused(tmp_path):
    path = make_problem(tmp_path / "p.npz", 16, seed=0)
    task = ClassifyTask(ClassifyConfig(data=path, val_fraction=0.0, hidden_size=4))
    with pytest.raises(ValueError, match="train.tbptt must be 0"):
        Trainer(task, TrainConfig(steps=1, batch_size=8, tbptt=4, progress="off", plot=False)).fit()
