"""The papers' success criteria, on hand-made predictions whose answers are known."""
from __future__ import annotations

import math

import pytest
import torch

from lstmkit.paper1997 import make_task
from lstmkit.paper1997.base import Batch
from lstmkit.paper1997.copy import baseline


def test_adding_counts_absolute_errors_of_0_04_or_more():
    task = make_task("adding", 100)
    target = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.2, 0.9])
    batch = Batch(torch.zeros(6, 100, 2), torch.full((6,), 100), target)
    y = (target + torch.tensor([0.0, 0.039, -0.039, 0.041, -0.05, 0.5])).unsqueeze(-1)
    assert task.wrong(y, batch).tolist() == [False, False, False, True, True, True]
    m = task.evaluate(y, batch)
    assert m["wrong"] == 3 and m["n"] == 6
    assert not task.solved(m)
    assert task.solved({"wrong": 25, "n": 2560}) and not task.solved({"wrong": 26, "n": 2560})


def test_multiplication_is_held_to_the_papers_own_count():
    task = make_task("multiplication", 100)
    assert task.solved({"wrong": 139, "n": 2560}) and not task.solved({"wrong": 140, "n": 2560})


def test_temporal_order_needs_every_output_within_0_3():
    task = make_task("6a")
    batch = Batch(torch.zeros(4, 100, 8), torch.full((4,), 100), torch.tensor([0, 1, 2, 3]))
    # probabilities → logits; softmax(log p) = p
    p = torch.tensor([
        [0.75, 0.25, 0.0, 0.0],   # correct class 0 at 0.75: every error < 0.3 → right
        [0.35, 0.65, 0.0, 0.0],   # class 1 at 0.65: its error 0.35 ≥ 0.3 → wrong although arg-max is right
        [0.0, 0.0, 0.71, 0.29],   # right
        [0.1, 0.1, 0.5, 0.3],     # arg-max wrong → wrong
    ]).clamp_min(1e-12)
    wrong = task.wrong(p.log(), batch)
    assert wrong.tolist() == [False, True, False, True]


def test_reber_top_k_must_equal_the_legal_set():
    task = make_task("reber")
    batch = task.encode(["BTBTXSETE"])  # legal successors: TP, B, TP, SX, XS, E, T, E
    legal = batch.legal[0]
    y = legal.float().unsqueeze(0) * 5.0  # legal symbols most active at every step
    assert not task.wrong(y, batch).item()
    # one illegal symbol beating a legal one at a two-way step
    y_bad = y.clone()
    y_bad[0, 3, 0] = 6.0  # B after "BTBT": illegal (legal: S, X)
    assert task.wrong(y_bad, batch).item()
    # at the long-lag step (after the inner E) only the outer T is legal: P there is wrong
    y_lag = y.clone()
    y_lag[0, 6, 2] = 7.0  # P instead of T
    assert task.wrong(y_lag, batch).item()
    # a two-way step where only one of the two legal symbols is on top is wrong too
    y_one = y.clone()
    y_one[0, 0, 2] = 0.0  # after B: P (legal) drops to the level of the illegal symbols…
    y_one[0, 0, 4] = 1.0  # …and X (illegal) rises above it: top-2 = {T, X}
    assert task.wrong(y_one, batch).item()
    assert task.solved({"wrong": 0, "n": 512}) and not task.solved({"wrong": 1, "n": 512})


def test_long_lag_is_wrong_if_any_step_misses():
    task = make_task("long_lag", 10)
    batch = task.test_set(0)
    perfect = torch.nn.functional.one_hot(batch.target, 11).float() * 30  # softmax ≈ the targets
    assert task.wrong(perfect, batch).tolist() == [False, False]
    forgetful = perfect.clone()
    forgetful[:, -1] = torch.nn.functional.one_hot(torch.tensor([10, 10]), 11).float() * 30  # always "y"
    assert task.wrong(forgetful, batch).tolist() == [True, False]


def test_long_lag_needs_the_papers_margin_not_just_the_right_arg_max():
    # the paper: every output unit within 0.25 of its target. A final step that puts 0.6 on the
    # right symbol and 0.4 on the other has the right arg-max but is still a coin toss
    task = make_task("long_lag", 10)
    batch = task.test_set(0)
    y = torch.nn.functional.one_hot(batch.target, 11).float() * 30
    right, other = batch.target[:, -1], 19 - batch.target[:, -1]  # x (9) <-> y (10)
    for p_right, wrong in ((0.6, True), (0.8, False)):
        final = torch.full((2, 11), -30.0)
        final[torch.arange(2), right] = math.log(p_right)
        final[torch.arange(2), other] = math.log(1 - p_right)
        y[:, -1] = final
        assert task.wrong(y, batch).tolist() == [wrong, wrong]
        assert (y.argmax(-1) == batch.target).all()


def test_long_lag_loss_weighs_the_final_step_like_all_deterministic_steps_together():
    # a net that has learned the deterministic steps but not the lag: chance (ln 2) at the end.
    # Averaged over the p steps this costs ln 2 / p and drowns (the bug that kept 2a at p = 100
    # unsolved); the task's loss must keep it at full weight
    for p in (10, 100):
        task = make_task("long_lag", p)
        batch = task.test_set(0)
        y = torch.nn.functional.one_hot(batch.target, p + 1).float() * 50
        y[:, -1] = 0.0
        y[:, -1, p - 1 : p + 1] = 30.0  # x and y equally likely, nothing else
        y.requires_grad_(True)
        loss = task.loss(y, batch)
        assert loss.item() == pytest.approx(math.log(2), rel=1e-4)
        loss.backward()
        final, deterministic = y.grad[:, -1].abs().sum(), y.grad[:, :-1].abs().sum()
        assert final > 1e3 * deterministic  # the gradient is the final step's
        m = task.evaluate(y.detach(), batch)
        assert m["final_loss"] == pytest.approx(math.log(2), rel=1e-4) and m["wrong"] == 2


def test_copy_memoryless_strategy_scores_the_baseline():
    T = 50
    task = make_task("copy", T)
    batch = task.sample(256, torch.Generator().manual_seed(0))
    # blanks for T + 10 steps (certain), then uniform over a_1..a_8: exactly the baseline
    logp = torch.full((256, T + 20, 10), -1e9)
    logp[:, : T + 10, 0] = 0.0
    logp[:, T + 10 :, 1:9] = -math.log(8)
    m = task.evaluate(logp, batch)
    assert abs(m["loss"] - baseline(T)) < 1e-5
    assert not task.solved(m)
    assert m["wrong"] > 200  # guessing recalls all 10 symbols with probability 8^-10
    perfect = torch.nn.functional.one_hot(batch.target, 10).float() * 30
    mp = task.evaluate(perfect, batch)
    assert mp["wrong"] == 0 and task.solved(mp)


def test_every_task_has_the_papers_row_to_print_beside_ours():
    from lstmkit.paper1997 import TASKS
    from lstmkit.paper1997.runner import markdown_table, summarize

    for name, (_, default) in TASKS.items():
        for length in ({default, 500, 1000} if name == "adding" else {default}):
            task = make_task(name, length)
            ref = task.reference
            assert ref.source and ref.result and "no row" not in ref.result, (name, length)
            row = {"task": name, "describe": task.describe(), "model": "lstm", "length": length, "seed": 0,
                   "steps": 1, "sequences": 1, "seconds": 1.0, "wrong": 0, "n_test": task.n_test, "loss": 0.0,
                   "solved": True, "paper": {"source": ref.source, "result": ref.result,
                                             "train_sequences": ref.train_sequences, "rnn": ref.rnn}}
            assert f"{ref.result} ({ref.source})" in markdown_table([summarize([row])])
