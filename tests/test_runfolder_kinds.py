"""One run-folder format: the demo's and the long-lag tasks' folders are accepted by every command
that can use them, and every command refuses a run of another kind in one line, before reading it."""
from __future__ import annotations

import json
import os

import pytest

from lstmkit.cli import main
from lstmkit.paper1997.runner import run_task
from lstmkit.train import CheckpointError, load_run
from lstmkit.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """What `lstmkit demo` writes for its LSTM, at a tiny size."""
    run = str(tmp_path_factory.mktemp("demo") / "lstm")
    run_task("adding", "lstm", 10, hidden_size=4, batch_size=4, max_steps=4, eval_every=2, time_budget=60,
             run_dir=run)
    return run


def test_the_demo_folder_records_its_format_and_kind(demo_run):
    cfg = json.load(open(os.path.join(demo_run, ckpt.CONFIG)))
    assert cfg["format"] == ckpt.FORMAT and cfg["task"] == "adding" and cfg["length"] == 10
    rc, task, model = load_run(demo_run)
    assert rc.task == "adding" and rc.options.hidden_size == 4 and not model.training


def test_export_and_resume_accept_the_demo_folder(demo_run, tmp_path, capsys):
    onnx_path = str(tmp_path / "m.onnx")
    assert main(["export", demo_run, "--onnx", onnx_path]) == 0 and os.path.getsize(onnx_path) > 0
    assert main(["train", "--resume", demo_run, "--train.progress", "off", "--train.plot", "false"]) == 0
    assert "run folder" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needs", [
    (["generate"], "generate needs a 'text' run"),
    (["inspect"], "inspect needs a 'forecast' or 'text' run"),
    (["forecast"], "forecast needs a 'forecast' run"),
    (["classify"], "classify needs a 'classify' run"),
    (["translate", "--test"], "translate needs a 'translate' run"),
])
def test_a_run_of_another_kind_gets_one_line_naming_both_kinds(demo_run, capsys, argv, needs):
    assert main([argv[0], demo_run, *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lstmkit {argv[0]}: error: {os.path.normpath(demo_run)} is an 'adding' run; {needs}"


def test_the_kind_is_checked_before_any_other_file_is_read(demo_run, tmp_path):
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(demo_run, run)
    os.remove(os.path.join(run, ckpt.MODEL))
    with pytest.raises(CheckpointError, match="is an 'adding' run; generate needs a 'text' run"):
        load_run(run, kind="text", command="generate")
    with pytest.raises(CheckpointError, match="model.safetensors not found"):
        load_run(run)


def test_resume_names_a_mismatched_task_and_a_missing_folder(demo_run, capsys):
    assert main(["train", "--resume", demo_run, "--task", "echo"]) == 2
    assert f"--resume: {demo_run} is an 'adding' run, not 'echo'" in capsys.readouterr().err
    assert main(["train", "--resume", demo_run + "-nowhere"]) == 2
    assert "no run folder at" in capsys.readouterr().err
