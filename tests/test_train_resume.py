"""Kill and resume: a training process killed with SIGKILL after a checkpoint, then resumed with
--resume, ends with the same weights, final loss and logged losses as a run never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import lstmkit

SRC = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
STEPS = 80
# TBPTT windows of 5 in batches of 20 steps: checkpoints every 10 steps land mid-batch with a
# carried state; dropout makes the resumed run depend on the restored RNG state too.
ARGS = ["--task", "echo", "--hidden_size", "8", "--dropout_p", "0.1", "--backend", "reference",
        "--train.steps", str(STEPS), "--train.batch_size", "4", "--train.tbptt", "5",
        "--train.checkpoint_every", "10", "--train.eval_every", "25", "--train.log_every", "5",
        "--train.warmup_steps", "5", "--train.plot", "false", "--train.progress", "log", "--train.threads", "1"]


def env():
    e = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    e.pop("WORLD_SIZE", None)
    return e


def train(run_dir, *extra):
    return subprocess.run([sys.executable, "-m", "lstmkit", "train", *ARGS, "--run_dir", run_dir, *extra],
                          env=env(), capture_output=True, text=True, timeout=300)


def final_loss(stdout):
    return float(next(line.split()[-1] for line in stdout.splitlines() if line.startswith("train loss")))


def losses(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [(r["step"], r["split"], r["loss"]) for r in rows]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    from lstmkit.cli import main

    assert main(["train", *ARGS, "--run_dir", whole]) == 0  # in this process: one start-up less
    ref_loss = final_loss(capsys.readouterr().out)

    proc = subprocess.Popen([sys.executable, "-m", "lstmkit", "train", *ARGS, "--run_dir", killed],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(killed, "trainer_state.pt")
    deadline = time.time() + 240
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    # Kill once it has logged work past that checkpoint, so that work is lost and redone.
    metrics = os.path.join(killed, "metrics.jsonl")
    while proc.poll() is None and time.time() < deadline and not any(
            json.loads(line)["step"] > 10 for line in open(metrics) if line.endswith("\n")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    at_kill = torch.load(state, weights_only=True)["step"]
    assert 10 <= at_kill < STEPS

    res = train(killed, "--resume")
    assert res.returncode == 0, res.stderr
    assert final_loss(res.stdout) == pytest.approx(ref_loss, rel=1e-6, abs=1e-9)
    a, b = load_file(os.path.join(whole, "model.safetensors")), load_file(os.path.join(killed, "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)
    la, lb = losses(whole), losses(killed)
    assert [r[:2] for r in lb] == [r[:2] for r in la]  # no row lost or logged twice
    assert [r[2] for r in lb] == pytest.approx([r[2] for r in la], rel=1e-6, abs=1e-9)


def test_resume_rejects_a_truncated_checkpoint_in_one_line(tmp_path, capsys):
    from lstmkit.cli import main

    run = str(tmp_path / "run")
    short = [a if a != str(STEPS) else "4" for a in ARGS] + ["--train.progress", "off"]
    assert main(["train", *short, "--run_dir", run]) == 0
    path = os.path.join(run, "trainer_state.pt")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 100])
    capsys.readouterr()
    assert main(["train", "--resume", run, "--train.steps", "8"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lstmkit train: error:")]
    assert len(lines) == 1 and "trainer_state.pt is corrupt or truncated" in lines[0], err
    assert "Traceback" not in err
