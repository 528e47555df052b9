"""benchmarks/paper_1997.py: rerunning some entries keeps the other rows, and the Markdown
table always shows exactly the rows the JSON holds."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "paper_1997.py")


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("paper_1997", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(entry, model, wrong, task="adding", describe="adding T=100"):
    return {"entry": entry, "task": task, "describe": describe, "model": model, "length": 100, "trials": 1,
            "solved_trials": int(wrong <= 25), "seeds": [0], "wrong": [wrong], "n_test": 2560, "loss": 0.001,
            "sequences": 6400, "sequences_solved": 6400 if wrong <= 25 else None, "seconds": 60.0,
            "seconds_max": 60.0, "load_average_at_start": 1.0, "budget_per_trial": 600.0, "threads": 1,
            "paper": {"source": "H&S 1997", "result": "1 of 2,560 wrong", "train_sequences": 74_000, "rnn": "—"},
            "runs": [{"loss": 0.001}]}


def test_merge_replaces_the_same_entry_and_keeps_the_table_order(script):
    rows = [row("6a", "lstm", 0), row("adding100", "rnn", 2000)]
    merged = script._merge(rows, row("adding100", "lstm", 3))
    assert [(r["entry"], r["model"]) for r in merged] == [("adding100", "lstm"), ("adding100", "rnn"), ("6a", "lstm")]
    again = script._merge(merged, row("adding100", "lstm", 9))
    assert len(again) == 3 and again[0]["wrong"] == [9]


def test_an_empty_task_list_rerenders_the_markdown_from_the_json(script, tmp_path):
    (tmp_path / "paper_1997.json").write_text(json.dumps({"environment": "x", "rows": [
        row("adding100", "lstm", 3), row("6a", "rnn", 2560, "temporal_order_6a", "temporal order 6a")]}))
    assert script.main(["--tasks", "--out", str(tmp_path), "--threads", "1"]) == 0
    md = (tmp_path / "paper_1997.md").read_text()
    assert "| adding T=100 | LSTM | 1/1 | 3 / 2,560 (0.12 %) |" in md
    assert "| temporal order 6a | RNN | 0/1 | 2560 / 2,560 (100.00 %) |" in md
    assert "adding100/lstm 1 thr, load 1.0" in md
    assert len(json.loads((tmp_path / "paper_1997.json").read_text())["rows"]) == 2


def test_rows_of_another_run_are_merged_in(script, tmp_path):
    (tmp_path / "paper_1997.json").write_text(json.dumps({"rows": [row("adding100", "lstm", 3), row("6a", "lstm", 0)]}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": [row("adding100", "lstm", 7)]}))
    assert script.main(["--tasks", "--out", str(tmp_path), "--merge", str(other)]) == 0
    rows = json.loads((tmp_path / "paper_1997.json").read_text())["rows"]
    assert [(r["entry"], r["wrong"]) for r in rows] == [("adding100", [7]), ("6a", [0])]
    assert "| adding T=100 | LSTM | 1/1 | 7 / 2,560" in (tmp_path / "paper_1997.md").read_text()
    with pytest.raises(SystemExit):
        script.main(["--tasks", "--out", str(tmp_path), "--merge", str(tmp_path / "missing.json")])


def test_unknown_entries_are_rejected(script):
    with pytest.raises(SystemExit):
        script.main(["--tasks", "adding2000"])
