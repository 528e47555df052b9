"""The small trained runs shipped in lstmkit/pretrained: each loads by name and does its job."""
from __future__ import annotations

import contextlib
import io
import os
import re

import pytest
import torch

from lstmkit.cli import main
from lstmkit.pretrained import NAMES, default_output, is_shipped, resolve_run, run_path
from lstmkit.train import load_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    assert code == 0, argv
    return out.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_run_loads_and_is_small(name):
    folder = run_path(name)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert size < 3_000_000, f"{name} is {size / 1e6:.1f} MB; shipped models must stay small"
    cfg, task, model = load_run(folder)
    assert not model.training and sum(p.numel() for p in model.parameters()) > 1000
    with open(os.path.join(os.path.dirname(folder), "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert f"`{name}`" in readme and "public domain" in readme  # what it is and the data's licence


def test_shakespeare_generates_text_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = run_cli(["generate", "shakespeare", "--prime", "ROMEO:", "--length", "120", "--seed", "1"])
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) == len("ROMEO:") + 120
    cfg, task, model = load_run(run_path("shakespeare"))
    # a trained model, not a random one: Shakespeare is far likelier under it than shuffled characters
    line = "KING HENRY. Once more unto the breach, dear friends, once more;"
    shuffled = "".join(sorted(line, key=lambda ch: hash((ch, 7)) % 97))

    def nats(s: str) -> float:
        ids = task.vocab.encode(s)
        with torch.no_grad():
            logits, _ = model(ids[None, :-1])
        return float(torch.nn.functional.cross_entropy(logits[0], ids[1:]))

    assert nats(line) < 2.5 < nats(shuffled)


def test_airline_forecasts_by_name_and_beats_the_seasonal_naive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run_cli(["forecast", "airline"])
    rows = {m[0].strip(): float(m[1]) for m in re.findall(r"^(LSTM|seasonal naive)\s+\S+\s+\S+\s+(\S+)", out, re.M)}
    assert set(rows) == {"LSTM", "seasonal naive"}, out
    assert rows["LSTM"] < rows["seasonal naive"]  # MAPE on the 36 held-out months


def test_inspect_by_name_writes_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli(["inspect", "shakespeare", "--text", "ROMEO: 'Tis but thy name"])
    assert os.path.getsize(tmp_path / "shakespeare_explorer.html") > 10_000
    assert not os.path.exists(os.path.join(run_path("shakespeare"), "explorer.html"))


def test_a_folder_of_your_own_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_shipped("airline") and resolve_run("airline") == run_path("airline")
    assert default_output("airline", "explorer.html") == "airline_explorer.html"
    os.mkdir("airline")
    assert not is_shipped("airline") and resolve_run("airline") == "airline"
    assert default_output("airline", "explorer.html") is None
    assert resolve_run("runs/mine") == "runs/mine"
    with pytest.raises(ValueError, match="shipped: shakespeare, airline"):
        run_path("nope")


def test_the_shipped_runs_are_package_data():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        assert '"pretrained/*/*"' in f.read()
