"""The lstmkit command: smoke runs of train / demo / bench with tiny settings, and bad input
answered with one line on stderr and exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import lstmkit
from lstmkit.cli import COMMANDS, main
from lstmkit.cli import bench as bench_cmd

try:
    import matplotlib  # noqa: F401

    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

SRC = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
TINY = ["--task", "echo", "--hidden_size", "4", "--train.steps", "4", "--train.batch_size", "2",
        "--train.progress", "off"]


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"lstmkit {command}: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_train_from_a_toml_file_with_overrides(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'task = "echo"\nrun_dir = "{tmp_path / "run"}"\nhidden_size = 4\n'
                   "[train]\nsteps = 3\nbatch_size = 2\nprogress = \"log\"\n")
    assert main(["train", str(cfg), "--train.steps", "4", "--train.log_every", "2"]) == 0
    captured = capsys.readouterr()
    assert "steps        4" in captured.out and "step 4/4" in captured.err
    assert os.path.exists(tmp_path / "run" / "learning_curve.png") == HAVE_MPL
    # and resume a finished run with more steps
    assert main(["train", "--resume", str(tmp_path / "run"), "--train.steps", "6"]) == 0
    assert "steps        6" in capsys.readouterr().out
    assert json.load(open(tmp_path / "run" / "config.json"))["train"]["steps"] == 6  # records the new length


def test_train_takes_a_task_name_in_place_of_a_config_file(tmp_path, capsys):
    args = ["train", "echo", "--run_dir", str(tmp_path / "run")] + TINY[2:]
    assert main(args) == 0
    assert json.load(open(tmp_path / "run" / "config.json"))["task"] == "echo"
    assert main(["train", "nosuchtask"]) == 2
    assert "unknown task 'nosuchtask'" in one_error_line(capsys.readouterr().err, "train")


def test_train_list_shows_tasks_and_options(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "echo:" in out and "--hidden_size" in out and "--train.tbptt" in out


@pytest.mark.parametrize("args, message", [
    (TINY + ["--train.stepz", "3"], "unknown key 'train.stepz'"),
    (TINY + ["--hidden_size", "many"], "hidden_size: expected an integer, got 'many'"),
    (["missing.toml"], "config file not found: missing.toml"),
    ([], "nothing to train"),
    (["--resume", "no/such/run"], "no run folder at no/such/run"),
    (TINY + ["--lag", "99"], "lag must be in"),
])
def test_train_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *args]) == 2
    assert message in one_error_line(capsys.readouterr().err, "train")


def test_console_script_path_exits_nonzero_on_a_bad_key(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "lstmkit", "train", *TINY, "--train.lrr", "1"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2
    assert "unknown key 'train.lrr'" in one_error_line(res.stderr, "train")


def test_demo_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--length", "20", "--steps", "3", "--budget", "30", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LSTM" in printed and "RNN" in printed and "learning curves:" in printed
    assert os.path.exists(out / "learning_curves.png") == HAVE_MPL


def test_demo_bad_input(capsys, tmp_path):
    assert main(["demo", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown task 'nope'" in one_error_line(capsys.readouterr().err, "demo")
    assert main(["demo", "--budget", "0", "--out", str(tmp_path)]) == 2
    assert "--budget must be positive" in one_error_line(capsys.readouterr().err, "demo")


def test_bench_runs_the_benchmark_or_says_it_is_not_available(capsys):
    if bench_cmd._script() is None:
        assert main(["bench"]) == 2
        assert "not available" in one_error_line(capsys.readouterr().err, "bench")
    else:
        assert main(["bench", "--help-script"]) == 0  # the script's own --help
        assert "usage" in capsys.readouterr().out.lower()


def test_plots_are_skipped_with_a_message_without_matplotlib(tmp_path, monkeypatch, capsys):
    from lstmkit.train.curves import plot_run

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert plot_run(str(tmp_path)) is None
    assert "matplotlib is not installed" in capsys.readouterr().err
