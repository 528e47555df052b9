"""TrainState and the named steps of Trainer.fit, each alone: save → restore continues bit for bit,
a run folder written before the loop was split into steps still resumes, and every step does its
one job (windows and resets, one optimizer step, clip groups, early stopping, periodic actions)."""
from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lstmkit.train import CheckpointError, Task, TrainConfig, TrainState, Trainer
from lstmkit.train import checkpoint as ckpt
from lstmkit.train.config import ConfigError, merge, parse_run_config
from lstmkit.train.rng import seed_everything
from lstmkit.train.run import make_trainer
from lstmkit.train.schedule import LRSchedule
from lstmkit.train.steps import clip_gradients, due, evaluate, train_step
from lstmkit.train.toy import EchoConfig, EchoTask
from lstmkit.train.windows import Windows

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# dropout draws from the torch RNG and the echo stream carries its state across batches, so a
# continuation is only bit-equal when the RNG states and the carried state come back exactly
ECHO = EchoConfig(hidden_size=4, window=6, lag=2, doc_batches=2, eval_docs=4, dropout_p=0.1, backend="reference")
CFG = TrainConfig(steps=10, batch_size=2, tbptt=3, schedule="constant", progress="off", plot=False)


def new_state(task, cfg=CFG, seed=0):
    seed_everything(seed)
    model = task.build_model()
    return TrainState(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
                      LRSchedule(cfg))


def run_steps(state, windows, task, n):
    return [train_step(state.model, state, task, windows.next(state), CFG.clip_norm).loss for _ in range(n)]


def test_save_then_restore_continues_bit_for_bit(tmp_path):
    task = EchoTask(ECHO)
    whole = new_state(task)
    losses = run_steps(whole, Windows(task, CFG.tbptt, CFG.batch_size), task, 10)

    first = new_state(task)
    windows = Windows(task, CFG.tbptt, CFG.batch_size)
    assert run_steps(first, windows, task, 5) == losses[:5]
    assert first.window == 1 and first.carry is not None  # stopped inside a batch, with a carried state
    first.save(str(tmp_path))
    assert first.saved_step == 5 and first.loss_n == 5  # no row logged: the mean so far is saved

    restored = new_state(task, seed=123)  # other weights and RNG states, all to be overwritten
    restored.restore(str(tmp_path), CFG)
    assert (restored.step, restored.position, restored.window) == (5, first.position, 1)
    assert (restored.loss_sum, restored.loss_n) == (first.loss_sum, first.loss_n)
    later = run_steps(restored, Windows(task, CFG.tbptt, CFG.batch_size), task, 5)
    assert later == losses[5:]  # bit-equal, not approximately
    for a, b in zip(whole.model.state_dict().values(), restored.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_folder_written_before_the_split_resumes_as_an_unbroken_run(tmp_path):
    """tests/data/echo_format1 was written by the single-method Trainer: 7 steps of the echo run its
    config.json describes, stopped inside a batch. Resumed to 12 steps it must match a 12-step run."""
    run = str(tmp_path / "old")
    shutil.copytree(os.path.join(DATA, "echo_format1"), run)
    saved = ckpt.load_config(run)
    assert torch.load(os.path.join(run, ckpt.STATE), weights_only=True)["window"] == 1
    resumed = make_trainer(parse_run_config(merge(saved, {"run_dir": run, "train": {"steps": 12}}))).fit(resume=True)
    fresh = str(tmp_path / "fresh")
    whole = make_trainer(parse_run_config(merge(saved, {"run_dir": fresh, "train": {"steps": 12}}))).fit()
    assert resumed.step == whole.step == 12 and resumed.loss == whole.loss
    for name, value in load_file(os.path.join(fresh, ckpt.MODEL)).items():
        assert torch.equal(load_file(os.path.join(run, ckpt.MODEL))[name], value), name
    # the 7-step run also logged and evaluated at its last step; from step 9 on the rows agree
    a, b = ([(r["step"], r["split"], r["loss"]) for r in ckpt.read_metrics(d) if r["step"] >= 9] for d in (run, fresh))
    assert a == b and len(a) == 3


def test_restore_refuses_a_checkpoint_of_another_model(tmp_path):
    task = EchoTask(ECHO)
    state = new_state(task)
    run_steps(state, Windows(task, CFG.tbptt, CFG.batch_size), task, 2)
    state.save(str(tmp_path))
    other = new_state(EchoTask(EchoConfig(hidden_size=5, backend="reference")))
    with pytest.raises(CheckpointError, match="does not fit"):
        other.restore(str(tmp_path), CFG)


class Counting(Task):
    """Batch k holds k in every entry: what Windows draws is visible in the numbers."""

    def __init__(self, reset=False, finite=0):
        self.reset, self.finite = reset, finite

    def global_batch(self, k, batch_size):
        batch = {"x": (10.0 * k + torch.arange(4.0)).expand(batch_size, 4)[..., None]}
        if self.reset:
            batch["reset"] = torch.tensor([True, False])
        return batch

    def train_batches(self, start, *, batch_size, rank=0, world_size=1):
        if not self.finite:
            yield from super().train_batches(start, batch_size=batch_size, rank=rank, world_size=world_size)
            return
        for k in range(start, (start // self.finite + 1) * self.finite):  # to the end of this pass
            yield self.global_batch(k % self.finite, batch_size)


def test_windows_cut_batches_and_resume_inside_one():
    task, state = Counting(), TrainState(None, None, None)
    windows = Windows(task, tbptt=2, batch_size=2)
    seen = [windows.next(state)["x"][0, :, 0].tolist() for _ in range(3)]
    assert seen == [[0, 1], [2, 3], [10, 11]]  # batch 0 in two windows, then batch 1
    assert (state.position, state.window) == (2, 1)
    # a resumed run: the same counters, a new stream: batch 1 is drawn again, its second window next
    resumed = TrainState(None, None, None, position=2, window=1)
    assert Windows(task, tbptt=2, batch_size=2).next(resumed)["x"][0, :, 0].tolist() == [12, 13]
    assert windows.next(state)["x"][0, :, 0].tolist() == [12, 13]
    assert (resumed.position, resumed.window) == (state.position, state.window) == (2, 2)


def test_windows_reset_carry_and_start_a_finite_stream_over():
    task = Counting(reset=True, finite=2)
    state = TrainState(None, None, None, carry=torch.ones(1, 2, 3))
    windows = Windows(task, tbptt=0, batch_size=2)
    assert "reset" not in windows.next(state)
    assert torch.equal(state.carry[0, :, 0], torch.tensor([0.0, 1.0]))  # row 0 starts a new sequence
    windows.next(state)
    assert float(windows.next(state)["x"][0, 0]) == 0 and state.position == 3  # past the end: from the start
    state.carry = torch.ones(1, 2, 3)
    no_reset = Windows(Counting(), tbptt=0, batch_size=2)
    no_reset.next(state)
    assert state.carry is None  # a batch without a reset mask starts from a zero state


def test_train_step_is_one_optimizer_step():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    twin = nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(steps=4, lr=0.1, schedule="constant", clip_norm=0.0, optimizer="sgd", weight_decay=0.0)
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9), LRSchedule(cfg))
    x, y = torch.randn(5, 3), torch.randn(5, 1)

    class Fit(Task):
        def loss(self, model, batch, carry):
            return ((model(batch[0]) - batch[1]) ** 2).mean(), torch.ones(2, requires_grad=True) * 2

    result = train_step(model, state, Fit(), (x, y), clip_norm=0.0)
    ((twin(x) - y) ** 2).mean().backward()
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.1 * p.grad  # the schedule's lr, not the optimizer's constructor value
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)
    assert state.step == 1 and result.lr == 0.1 and result.grad_norm is None and result.items == 5
    assert not state.carry.requires_grad and state.loss_n == 1 and state.loss_sum == result.loss


def test_clip_groups_clip_each_group_on_its_own():
    a, b = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    a.weight.grad, b.weight.grad = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.3, 0.4]])

    class Two(Task):
        def clip_groups(self, model):
            return [[a.weight], [b.weight]]

    norm = clip_gradients(Two(), None, max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(25 + 0.25))
    torch.testing.assert_close(a.weight.grad, torch.tensor([[0.6, 0.8]]))  # clipped to 1
    torch.testing.assert_close(b.weight.grad, torch.tensor([[0.3, 0.4]]))  # under 1: untouched
    assert clip_gradients(Two(), None, max_norm=0.0) is None


def test_observe_keeps_the_early_stop_books():
    cfg = TrainConfig(patience=2, metric="acc", mode="max")
    state = TrainState(None, None, LRSchedule(cfg))
    assert state.observe({"acc": 0.5}, cfg) is None and state.best == 0.5
    assert state.observe({"acc": 0.7}, cfg) is None and (state.best, state.bad_evals) == (0.7, 0)
    assert state.observe({"acc": 0.6}, cfg) is None and state.bad_evals == 1 and not state.stopped
    why = state.observe({"acc": 0.7}, cfg)  # equal is not better
    assert state.stopped and "has not improved for 2 evaluations (best 0.7)" in why
    assert state.metrics == {"acc": 0.7}
    with pytest.raises(ConfigError, match="'acc' is not among the eval metrics"):
        state.observe({"loss": 1.0}, cfg)
    assert TrainState(None, None, LRSchedule(TrainConfig())).observe({"other": 1.0}, TrainConfig()) is None


def test_due():
    assert [s for s in range(1, 11) if due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if due(s, 0, 10)] == [10]


def rows_loss(run, step):
    return next(r["loss"] for r in ckpt.read_metrics(run) if r["step"] == step and r["split"] == "train")


def test_fit_writes_the_state_the_loop_reached(tmp_path):
    run = str(tmp_path / "run")
    cfg = TrainConfig(steps=5, batch_size=2, tbptt=3, checkpoint_every=0, log_every=2, progress="off", plot=False)
    result = Trainer(EchoTask(ECHO), cfg, run).fit()
    state = torch.load(os.path.join(run, ckpt.STATE), weights_only=True)
    assert (state["step"], state["position"], state["window"]) == (5, 3, 1)
    assert state["ranks"][0]["log"] == [0.0, 0] and result.loss == rows_loss(run, 5)
    rows = [json.loads(line) for line in open(os.path.join(run, ckpt.METRICS))]
    assert [(r["step"], r["split"]) for r in rows] == [(2, "train"), (4, "train"), (5, "train"), (5, "eval")]


def test_evaluate_runs_in_eval_mode_without_gradients_and_returns_floats():
    seen = []

    class Probe(Task):
        def evaluate(self, model):
            seen.append((model.training, torch.is_grad_enabled()))
            return {"loss": torch.tensor(0.25), "n": 3}

    model = nn.Dropout(0.5).train()
    metrics = evaluate(Probe(), model)
    assert metrics == {"loss": 0.25, "n": 3.0} and all(type(v) is float for v in metrics.values())
    assert seen == [(False, False)] and model.training  # back in training mode afterwards
