"""`lstmkit train --task forecast` through the Trainer, then `lstmkit forecast RUN --plot`."""
import os

import numpy as np
import pytest
import torch

from lstmkit.cli import main


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("data")
    import pandas as pd

    t = np.arange(72)
    y = 100 + t + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 1, 72)
    days = pd.date_range("2015-01-01", periods=72, freq="MS")
    p = tmp_path / "sales.csv"
    p.write_text("month,sales\n" + "\n".join(f"{d.date()},{v:.3f}" for d, v in zip(days, y)))
    return str(p)


@pytest.fixture(scope="module")
def run(tmp_path_factory, csv):
    torch.set_num_threads(1)
    run = str(tmp_path_factory.mktemp("runs") / "run")
    rc = main(["train", "--task", "forecast", "--data", csv, "--target", "sales", "--date", "month",
               "--horizon", "6", "--lookback", "12", "--hidden_size", "4", "--holdout", "12",
               "--run_dir", run, "--train.steps", "4", "--train.progress", "off", "--train.plot", "false"])
    assert rc == 0
    return run


def test_train_then_forecast_with_plot(tmp_path, csv, run, capsys):
    assert os.path.isfile(os.path.join(run, "model.safetensors"))
    with open(os.path.join(run, "metrics.jsonl")) as f:
        assert "seasonal_naive_MAPE" in f.read()
    png = str(tmp_path / "fc.png")
    assert main(["forecast", run, "--plot", png]) == 0
    out = capsys.readouterr().out
    assert os.path.getsize(png) > 1000
    assert "2020-01-01" in out  # first held-out month: origin 60 of 72
    for name in ("LSTM", "naive", "seasonal naive", "drift", "coverage"):
        assert name in out
    # a pure future forecast from a CSV, and a rolling-origin backtest over the held-out part
    assert main(["forecast", run, "--data", csv, "--horizon", "3"]) == 0
    assert "2021-01-01" in capsys.readouterr().out
    assert main(["forecast", run, "--backtest", "--stride", "3"]) == 0
    assert "3 origins from 60" in capsys.readouterr().out
    assert main(["forecast", run, "--backtest", "--conformal"]) == 0
    assert "7 origins from 60, horizon 6 (means over origins, conformal intervals)" in capsys.readouterr().out


def test_forecast_errors_are_one_line(tmp_path, csv, run, capsys):
    assert main(["forecast", run, "--horizon", "7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 6 steps" in err
    assert main(["train", "--task", "forecast", "--data", csv, "--target", "nope", "--run_dir",
                 str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no column 'nope'" in err
