"""benchmarks/xlstm_charlm.py: a tiny equal-time run writes its table with the machine, threads and load."""
from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("xlstm_charlm")


def test_a_tiny_run_writes_json_and_markdown(script, tmp_path):
    out = tmp_path / "charlm.json"
    assert script.main(["--models", "rnn", "--budget", "0.3", "--calibrate", "2", "--hidden_size", "8",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["rows"][0]
    assert row["model"] == "rnn" and row["steps"] >= 1 and row["cpu_s_per_step"] > 0
    assert 0 < row["valid_nats"] < 10 and row["ngram_nats"] > 0 and "load_before" in row
    assert result["args"]["threads"] == 1 and "cores" in result["machine"]
    table = out.with_suffix(".md").read_text()
    assert "| rnn |" in table and "order-3 n-gram" in table and "shared" in table


def test_unknown_models_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--models", "gru"])
    assert "expected names from rnn, lstm, slstm, mlstm, got gru" in capsys.readouterr().err
