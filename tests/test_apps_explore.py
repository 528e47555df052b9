"""The gate explorer's hook: `lstmkit inspect` reads any task that implements it, knowing no app class."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import lstmkit as lk
from lstmkit.apps.explore import ExplorerRequest, explorable, explorable_tasks, parse_window
from lstmkit.cli import main
from lstmkit.train import Task, TrainConfig, Trainer, register_task
from lstmkit.viz import collect_states


@dataclass
class WaveConfig:
    hidden_size: int = 5


class WaveNet(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = lk.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


class WaveTask(Task):
    """A task from outside lstmkit's apps: a sine wave, inspected through the hook alone."""

    explorer_reads = "series"

    def __init__(self, cfg: WaveConfig) -> None:
        self.cfg = cfg
        self.wave = torch.sin(torch.arange(40.0) / 3)  # (T,)

    def build_model(self) -> nn.Module:
        return WaveNet(self.cfg.hidden_size)

    def global_batch(self, k, batch_size):
        return {"x": self.wave[:-1].view(1, -1, 1).expand(batch_size, -1, -1), "y": self.wave[1:].view(1, -1, 1)}

    def loss(self, model, batch, state):
        return ((model(batch["x"]) - batch["y"]) ** 2).mean(), None

    def gate_states(self, model, request: ExplorerRequest):
        start, end = parse_window(request.window, len(self.wave))
        return collect_states(model.lstm, self.wave[start:end].view(-1, 1), series=self.wave[start:end].numpy(),
                              title=request.title)


@pytest.fixture
def wave_task():
    """WaveTask registered for `lstmkit train` and the explorer for one test, then removed again."""
    from lstmkit.apps import explore
    from lstmkit.train import registry

    register_task("explore-wave", WaveConfig)(WaveTask)
    explorable("explore-wave")(WaveTask)
    yield
    registry._TASKS.pop("explore-wave", None)
    explore._EXPLORABLE.pop("explore-wave", None)


def test_a_task_with_the_hook_is_inspected_without_the_command_knowing_it(wave_task, tmp_path, capsys):
    assert "explore-wave" in explorable_tasks() and {"text", "forecast"} <= set(explorable_tasks())
    run = str(tmp_path / "run")
    cfg = TrainConfig(steps=2, batch_size=2, progress="off", plot=False, threads=1)
    Trainer(WaveTask(WaveConfig()), cfg, run, run_config={"task": "explore-wave", "hidden_size": 5,
                                                            "train": {"steps": 2, "batch_size": 2}}).fit()
    out = str(tmp_path / "page.html")
    assert main(["inspect", run, "--window", "4:20", "--out", out]) == 0
    page = open(out, encoding="utf-8").read()
    data = json.loads(re.search(r'<script type="application/json" id="lk-data">(.*?)</script>', page, re.S).group(1))
    assert data["kind"] == "series" and data["steps"] == 16 and data["model"]["hidden"] == 5
    assert main(["inspect", run, "--text", "abc", "--out", out]) == 2  # a series task takes no text
    assert "--text, --text-file and --pattern are for text runs" in capsys.readouterr().err


def test_explorable_needs_the_hook():
    with pytest.raises(TypeError, match="sets explorer_reads .* and defines gate_states"):
        explorable("no-hook")(type("NoHook", (Task,), {}))
    with pytest.raises(TypeError, match="explorer_reads"):
        explorable("bad-reads")(type("BadReads", (Task,), {"explorer_reads": "audio", "gate_states": lambda s, m, r: 0}))


def test_parse_window_bounds():
    assert parse_window(None, 10) == (0, 10) and parse_window("2:", 10) == (2, 10) and parse_window(":3", 10) == (0, 3)
    for bad in ("5", "a:b", "3:3", "0:11"):
        with pytest.raises(ValueError, match="--window"):
            parse_window(bad, 10)


def test_cli_inspect_names_no_application_class():
    import lstmkit.cli.inspect as inspect_cli

    with open(inspect_cli.__file__, encoding="utf-8") as f:
        source = f.read()
    assert not re.search(r"isinstance\(task|TextTask|ForecastTask", source)
