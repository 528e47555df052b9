"""benchmarks/paper_1997.py: one run writes exactly its own rows, with the machine, threads and
load recorded, and --quick is a small subset."""
from __future__ import annotations

import json
import os

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("paper_1997")


def test_the_full_plan_covers_every_entry_and_quick_is_a_short_subset(script, capsys):
    full = script.plan(list(script.ENTRIES), list(script.MODELS), quick=False)
    assert {key for key, _, _ in full} == set(script.ENTRIES)
    assert ("2a", "lstm", script.Trials(10, 120)) in full and any(k == "2a" and m == "rnn" for k, m, _ in full)
    quick = script.plan(list(script.QUICK), list(script.MODELS), quick=True)
    assert {key for key, _, _ in quick} == set(script.QUICK) <= set(script.ENTRIES)
    assert ("2a", "lstm") in {(k, m) for k, m, _ in quick}  # ten seeds of the paper's 2a row
    assert sum(t.seeds * t.budget for _, _, t in quick) <= 12 * 60  # caps; solved trials stop far earlier
    assert script.main(["--quick", "--plan"]) == 0
    assert "at most 12 min of training" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--quick", "--tasks", "adding100"])  # not in the quick set
    with pytest.raises(SystemExit):
        script.main(["--tasks", "adding2000"])


def test_a_run_writes_only_its_own_rows_with_machine_threads_and_load(script, tmp_path, monkeypatch):
    # an earlier file's rows must not survive into the new table (no stitching across runs)
    (tmp_path / "paper_1997.json").write_text(json.dumps({"rows": [{"entry": "adding100"}]}))
    monkeypatch.setitem(script.QUICK, "2a", {"lstm": script.Trials(1, 0.0)})
    assert script.main(["--quick", "--tasks", "2a", "--out", str(tmp_path), "--threads", "1"]) == 0
    run = json.loads((tmp_path / "paper_1997.json").read_text())
    assert run["mode"] == "quick" and run["threads"] == 1 and run["finished"]
    assert [(r["entry"], r["model"]) for r in run["rows"]] == [("2a", "lstm")]
    assert run["machine"]["cpus"] == os.cpu_count() and isinstance(run["load_at_start"], float)
    row = run["rows"][0]
    assert row["threads"] == 1 and row["budget_per_trial"] == 0.0 and "load_at_end" in row
    md = (tmp_path / "paper_1997.md").read_text()
    assert "`benchmarks/paper_1997.py --quick`: a `--quick` run" in md and "not the whole table" in md
    assert "| long lag 2a p=100 | LSTM | 0/1 |" in md and "| adding" not in md
    assert "load average (os.getloadavg)" in md and "2a/lstm" in md
    # the recipe is read from the row, so the notes cannot describe another one
    assert ("- long lag 2a p=100 LSTM recipe: 32 cells, forget bias 5, input bias -2, Adam lr 0.01, batch 32, "
            "a check of 2 validation sequences every 25 steps.") in md
    assert "Not in this run: adding100, adding500, adding1000, multiplication, 6a, 6b, reber, copy;" in md


def test_render_rewrites_the_markdown_from_the_json(script, tmp_path):
    summary = {"entry": "6a", "task": "temporal_order_6a", "describe": "temporal order 6a", "model": "rnn",
               "length": None, "trials": 1, "solved_trials": 0, "seeds": [0], "wrong": [2560], "n_test": 2560,
               "loss": 1.386, "sequences": 6400, "sequences_solved": None, "seconds": 60.0, "seconds_max": 60.0,
               "paper": {"source": "H&S 1997", "result": "1 of 2,560 wrong", "rnn": "—"}, "runs": [{"loss": 1.386}],
               "budget_per_trial": 600.0, "threads": 1, "started": "x", "load_at_start": 1.0, "load_at_end": 2.0}
    run = {"mode": "full", "entries": ["6a"], "machine": {"torch": "t", "python": "3", "platform": "p",
           "processor": "cpu", "cpus": 2}, "threads": 1, "started": "s", "load_at_start": 0.5, "finished": None,
           "load_at_end": None, "max_minutes": 10, "rows": [summary]}
    (tmp_path / "paper_1997.json").write_text(json.dumps(run))
    assert script.main(["--render", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "paper_1997.md").read_text()
    assert "| temporal order 6a | RNN | 0/1 | 2560 / 2,560 (100.00 %) |" in md
    assert "UNFINISHED" in md and "6a/rnn 1.0→2.0" in md and "a full run of every entry" in md
    with pytest.raises(SystemExit):
        script.main(["--render", "--out", str(tmp_path / "none")])


def test_a_plain_rnn_trial_stops_at_twice_the_lstms_training_sequences(script):
    entry = script.ENTRIES["6a"]
    lstm = {"entry": "6a", "model": "lstm", "runs": [{"sequences": 25_600, "solved": True},
                                                     {"sequences": 99_000, "solved": False}]}
    assert script.rnn_sequences([lstm], "6a", entry) == (51_200, "the LSTM's in this run")
    # no LSTM row in the run: twice the paper's LSTM figure (Table 9: 31,390 sequences)
    assert script.rnn_sequences([], "6a", entry) == (62_780, "the paper's LSTM's")
    assert script.rnn_sequences([], "copy", script.ENTRIES["copy"]) == (None, "")  # the paper has no figure
