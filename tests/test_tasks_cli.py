"""`lstmkit tasks` and `lstmkit gradients` end to end, on small instances."""
from __future__ import annotations

import json

from lstmkit.cli import main


def test_tasks_command_prints_our_row_and_the_papers(tmp_path, capsys):
    out = tmp_path / "rows.json"
    # a few steps only: learning itself is tested in test_tasks_training.py
    code = main(["tasks", "long_lag", "--length", "8", "--hidden", "8", "--steps", "4", "--budget", "3600",
                 "--chrono", "8", "--warmup", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["lstm", "rnn"]  # --model both is the default
    lstm = rows[0]["runs"][0]
    assert lstm["steps"] == 4 and lstm["stop_reason"] == "max steps" and lstm["n_test"] == 2
    assert lstm["chrono"] == 8 and lstm["warmup_steps"] == 2
    assert f"| long lag 2a p=8 | LSTM | {rows[0]['solved_trials']}/1 | {lstm['wrong']} / 2 (" in text
    assert "| long lag 2a p=8 | RNN |" in text and "BPTT 0 %, RTRL 0 %" in text


def test_tasks_command_rejects_bad_input_in_one_line(capsys):
    assert main(["tasks", "subtraction"]) == 2
    assert "unknown task 'subtraction'" in capsys.readouterr().err
    assert main(["tasks", "reber", "--length", "50"]) == 2
    assert "fixed length" in capsys.readouterr().err
    assert main(["tasks", "copy", "--chrono", "2"]) == 2
    assert "--chrono must be 0 (off) or a longest lag T_MAX >= 3, got 2" in capsys.readouterr().err


def test_gradients_command_writes_the_plot(tmp_path, capsys):
    png = tmp_path / "flow.png"
    assert main(["gradients", "--task", "adding", "--length", "20", "--budget", "0", "--sequences", "8",
                 "--out", str(png)]) == 0
    text = capsys.readouterr().out
    assert png.stat().st_size > 10_000
    data = json.loads((tmp_path / "flow.json").read_text())
    assert set(data["curves"]) == {"LSTM untrained", "RNN untrained"}
    assert len(data["curves"]["RNN untrained"]["h"]) == 20 and data["curves"]["RNN untrained"]["c"] is None
    assert "RNN untrained h" in text and "LSTM untrained c" in text


def test_every_task_of_the_table_has_the_papers_row_beside_ours():
    """What `lstmkit tasks TASK` prints in the paper column, for every task and length of the table
    (adding at T = 1000 included): the paper's own figure, never a 'no row' placeholder."""
    from lstmkit.paper1997 import TASKS, make_task
    from lstmkit.paper1997.runner import markdown_table, paper_row, summarize

    cases = [(name, None) for name in TASKS] + [("adding", 500), ("adding", 1000)]
    for name, length in cases:
        task = make_task(name, length)
        row = {"task": name, "describe": task.describe(), "model": "lstm", "length": length, "seed": 0,
               "sequences": 640, "seconds": 1.0, "wrong": 0, "n_test": task.n_test, "loss": 0.0, "solved": True,
               "paper": paper_row(task)}
        table = markdown_table([summarize([row])])
        ref = task.reference
        assert ref.source and "no row" not in ref.result, (name, length)
        assert f"{ref.result} ({ref.source}) |" in table, (name, length, table)
    adding1000 = paper_row(make_task("adding", 1000))
    assert adding1000["wrong"] == 1 and adding1000["train_sequences"] == 853_000
