"""Run configs: files, dotted overrides, unknown keys and wrong types rejected by name; the
learning-rate schedules; early stopping and the should_stop hook."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lstmkit.train import ConfigError, LRSchedule, Task, TrainConfig, Trainer, parse_run_config
from lstmkit.train.config import load_file, merge, parse_overrides


def test_toml_file_plus_overrides_builds_typed_configs(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "echo"\nhidden_size = 8\n[train]\nsteps = 50\nlr = 1\n')
    data = merge(load_file(path), parse_overrides(["--train.lr", "0.5", "--lag=3", "--train.plot", "false"]))
    cfg = parse_run_config(data)
    assert cfg.task == "echo" and cfg.options.hidden_size == 8 and cfg.options.lag == 3
    assert cfg.train.steps == 50 and cfg.train.lr == 0.5 and isinstance(cfg.train.lr, float)
    assert cfg.train.plot is False
    again = parse_run_config(json.loads(json.dumps(cfg.to_dict())))  # config.json round trip
    assert again == cfg


def test_json_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"task": "echo", "train": {"tbptt": 5}}))
    assert parse_run_config(load_file(path)).train.tbptt == 5


@pytest.mark.parametrize("data, message", [
    ({"task": "echo", "train": {"stepz": 3}}, "unknown key 'train.stepz'"),
    ({"task": "echo", "hidden": 3}, "unknown key 'hidden'"),
    ({"task": "echo", "train": {"steps": "ten"}}, "train.steps: expected an integer, got 'ten'"),
    ({"task": "echo", "train": {"steps": 2.5}}, "train.steps: expected an integer"),
    ({"task": "echo", "train": {"plot": 1}}, "train.plot: expected true or false"),
    ({"task": "echo", "train": {"schedule": "linear"}}, "train.schedule: expected one of"),
    ({"task": "echo", "hidden_size": "big"}, "hidden_size: expected an integer"),
    ({"task": "echo", "train": {"steps": 0}}, "train.steps must be >= 1"),
    ({"task": "nope"}, "unknown task 'nope'"),
    ({"train": {}}, "missing key 'task'"),
])
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_run_config(data)


def test_cli_strings_are_converted_by_field_type():
    data = merge({"task": "echo"}, parse_overrides(["--train.steps", "7", "--train.deterministic", "yes",
                                                     "--model", "rnn"]))
    cfg = parse_run_config(data)
    assert (cfg.train.steps, cfg.train.deterministic, cfg.options.model) == (7, True, "rnn")
    with pytest.raises(ConfigError, match="train.lr: expected a number, got 'fast'"):
        parse_run_config(merge({"task": "echo"}, parse_overrides(["--train.lr", "fast"])))
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--train.lr"])


def test_unparsable_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("task = \n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_file(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_file(tmp_path / "missing.toml")


def test_warmup_then_cosine():
    s = LRSchedule(TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1))
    assert [s.lr(k) for k in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.lr(110) == pytest.approx(0.1)


def test_plateau_cuts_the_rate_after_patience_evals_without_improvement():
    s = LRSchedule(TrainConfig(lr=1.0, schedule="plateau", plateau_patience=2, plateau_factor=0.5))
    for value in (3.0, 2.0, 2.5, 2.1):  # improves, improves, then two evals without improvement
        s.observe(value)
    assert s.lr(100) == 0.5
    s.observe(1.0)
    assert s.lr(100) == 0.5


class Constant(Task):
    """A one-parameter model whose eval metric follows a fixed script."""

    def __init__(self, script, solved_at=None):
        self.script, self.solved_at, self.evals = list(script), solved_at, 0

    def build_model(self):
        return torch.nn.Linear(1, 1)

    def train_batches(self, start, *, batch_size, rank=0, world_size=1):
        while True:
            yield {"x": torch.ones(batch_size, 1)}

    def loss(self, model, batch, state):
        return model(batch["x"]).pow(2).mean(), None

    def evaluate(self, model):
        self.evals += 1
        return {"loss": self.script[self.evals - 1]}

    def should_stop(self, metrics):
        return "solved" if self.evals == self.solved_at else False


def test_early_stopping_after_patience_evals_without_improvement():
    cfg = TrainConfig(steps=100, eval_every=2, patience=2, progress="off", plot=False)
    result = Trainer(Constant([5, 4, 4.5, 4.2, 1, 1]), cfg).fit()
    assert result.stopped_early and result.step == 8 and result.best == 4


def test_should_stop_hook_ends_training():
    cfg = TrainConfig(steps=100, eval_every=3, progress="off", plot=False)
    result = Trainer(Constant([5, 4, 3, 2, 1], solved_at=2), cfg).fit()
    assert result.stopped_early and result.step == 6


def test_progress_bar_and_log_lines(capsys):
    for mode, expect in (("bar", "train:"), ("log", "step 4/4")):
        Trainer(Constant([1.0]), TrainConfig(steps=4, log_every=2, progress=mode, plot=False)).fit()
        assert expect in capsys.readouterr().err
    Trainer(Constant([1.0]), TrainConfig(steps=4, log_every=2, progress="off", plot=False)).fit()
    assert capsys.readouterr().err == ""


def test_watching_a_metric_the_task_does_not_report_is_a_config_error():
    cfg = TrainConfig(steps=4, eval_every=2, patience=2, metric="accuracy", progress="off", plot=False)
    with pytest.raises(ConfigError, match="train.metric='accuracy' is not among the eval metrics"):
        Trainer(Constant([1.0, 1.0]), cfg).fit()


def test_task_train_defaults_apply_under_the_users_settings(monkeypatch):
    from dataclasses import dataclass

    from lstmkit.train import register_task, registry

    registry.available_tasks()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))  # registrations below are undone

    @dataclass
    class Opts:
        width: int = 1

    @dataclass
    class Clashing:
        train: int = 0  # would shadow the run config's own [train] section

    register_task("defaults-probe", Opts, train_defaults={"lr": 0.25, "eval_every": 7})(lambda o: None)
    cfg = parse_run_config({"task": "defaults-probe", "train": {"lr": 0.5}})
    assert (cfg.train.lr, cfg.train.eval_every) == (0.5, 7)
    with pytest.raises(ValueError, match="reserved"):
        register_task("clashing", Clashing)


def test_gradients_are_clipped_to_clip_norm():
    class Big(Constant):
        def loss(self, model, batch, state):
            return 1000 * model(batch["x"]).pow(2).mean(), None

    task = Big([1.0])
    torch.manual_seed(0)
    before = [p.detach().clone() for p in task.build_model().parameters()]
    cfg = TrainConfig(steps=1, optimizer="sgd", lr=1.0, weight_decay=0.0, clip_norm=0.1, schedule="constant",
                      progress="off", plot=False)
    trainer = Trainer(task, cfg)
    trainer.fit()
    # first SGD step: momentum buffer = the (clipped) gradient, so the step is lr · clip_norm long
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    assert float(step.norm()) == pytest.approx(0.1, rel=1e-5)
