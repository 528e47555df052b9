"""SIGINT / SIGTERM during `lstmkit train`: a final checkpoint, a message saying how to resume,
exit 130 / 143; resumed, the run ends as if never stopped. A second SIGINT stops at once and
leaves a folder that still resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import lstmkit
from lstmkit.train import checkpoint as ckpt
from runfolder_util import ECHO_ARGS, resume_or_start, same_weights, train, train_losses

SRC = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
STEPS = 60  # long enough that the signal lands mid-run; checkpoints only every 50 steps
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")


def start(run_dir):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.Popen([sys.executable, "-m", "lstmkit", "train", *ECHO_ARGS, "--train.steps", str(STEPS),
                             "--train.checkpoint_every", "50", "--run_dir", run_dir],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(proc, run_dir):
    metrics = os.path.join(run_dir, ckpt.METRICS)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not start: {proc.communicate()}")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_final_checkpoint_and_the_run_resumes_to_the_same_result(tmp_path, sig, code):
    run, whole = str(tmp_path / "stopped"), str(tmp_path / "whole")
    proc = start(run)
    wait_for_training(proc, run)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"lstmkit train: {signal.Signals(sig).name} at step " in lines[0]
    assert f"resume with: lstmkit train --resume {run}" in lines[0]
    state = ckpt.read_state(run)
    assert 0 < state["step"] < STEPS  # the final checkpoint is mid-run, not the scheduled one
    assert not os.path.exists(os.path.join(run, ".lock"))
    assert resume_or_start(run, train={"steps": STEPS, "checkpoint_every": 50}).step == STEPS
    train(whole, train={"steps": STEPS, "checkpoint_every": 50})
    assert same_weights(run, whole) and train_losses(run) == train_losses(whole)


def test_a_second_sigint_stops_at_once_and_leaves_a_folder_that_resumes(tmp_path):
    run = str(tmp_path / "run")
    proc = start(run)
    wait_for_training(proc, run)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not [f for f in os.listdir(run) if ".tmp" in f]
    assert resume_or_start(run, train={"steps": STEPS, "checkpoint_every": 50}).step == STEPS
