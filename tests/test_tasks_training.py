"""Short training runs through the Trainer that must learn, and the runner's bookkeeping."""
from __future__ import annotations

import json

import pytest
import torch

from lstmkit.tasks import make_task
from lstmkit.tasks.runner import markdown_table, run_task, summarize, train_task


def test_lstm_learns_a_short_adding_problem():
    torch.set_num_threads(1)
    row, model = train_task("adding", "lstm", 10, seed=0, hidden_size=16, lr=1e-2, batch_size=32,
                            max_steps=300, eval_every=50, time_budget=3600)
    # predicting the mean scores the target's variance, 2·(1/3)/16 ≈ 0.042; learning goes far below
    assert row["loss"] < 0.01, row
    assert row["wrong"] < 0.5 * row["n_test"]
    assert row["sequences"] == row["steps"] * 32 and row["n_test"] == 2560
    # the returned model is the trained one: it reproduces the test loss
    task = make_task("adding", 10)
    test = task.test_set(0)
    with torch.no_grad():
        assert abs(float(task.loss(model(test.x, test.lengths), test)) - row["loss"]) < 1e-6


def test_lstm_solves_a_short_long_lag_task_and_stops_when_solved():
    row = run_task("long_lag", "lstm", 8, seed=0, hidden_size=16, lr=2e-2, max_steps=400, eval_every=10,
                   time_budget=3600)  # steps bound the run; a loaded machine must not fail it
    assert row["solved"] and row["wrong"] == 0 and row["stop_reason"] == "solved", row
    assert row["steps"] < 400
    assert json.dumps(row)  # rows are plain JSON


def test_time_budget_stops_training():
    row = run_task("adding", "rnn", 100, seed=0, hidden_size=8, max_steps=10_000, eval_every=2, time_budget=0.0)
    assert row["stop_reason"] == "time budget" and row["steps"] == 2


def test_summary_and_table():
    rows = [
        {"task": "adding", "describe": "adding T=100", "model": "lstm", "length": 100, "seed": s, "steps": 10,
         "sequences": 640, "seconds": 1.0, "wrong": w, "n_test": 2560, "loss": 0.001, "solved": w <= 25,
         "stop_reason": "solved", "paper": {"source": "H&S 1997, Table 7", "result": "1 of 2,560 wrong",
                                           "train_sequences": 74_000, "rnn": None}}
        for s, w in ((0, 3), (1, 400))
    ]
    s = summarize(rows)
    assert s["solved_trials"] == 1 and s["trials"] == 2 and s["wrong"] == [3, 400]
    table = markdown_table([s])
    assert "| adding T=100 | LSTM | 1/2 | 3–400 / 2,560 |" in table and "vs paper 74,000" in table


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="model must be one of"):
        run_task("adding", "gru", 10)


def test_paper_tasks_are_registered_for_lstmkit_train():
    from lstmkit.tasks import TASKS
    from lstmkit.tasks.runner import PaperTask
    from lstmkit.train import available_tasks, parse_run_config

    tasks = available_tasks()
    assert set(TASKS) <= set(tasks)
    cfg = parse_run_config({"task": "adding", "model": "rnn", "length": 20, "hidden_size": 8})
    built = tasks["adding"].factory(cfg.options)
    assert isinstance(built, PaperTask) and built.task.T == 20 and built.model_kind == "rnn"
    model = built.build_model()
    batch = next(iter(built.train_batches(0, batch_size=4)))
    loss, state = built.loss(model, batch, None)
    assert loss.dim() == 0 and state is None
