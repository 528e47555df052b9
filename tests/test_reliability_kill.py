"""SIGKILL at every write step of a run (config, metrics, each checkpoint's every step) or after a
random delay, then resume: the run ends with the weights, final loss and logged losses of a run
never killed. And a reader beside a live writer neither fails nor disturbs it."""
from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmkit import _io
from lstmkit.train import checkpoint as ckpt
from lstmkit.train import faults, load_run
from runfolder_util import resume_or_start, same_weights, train, train_losses

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="POSIX only")


def test_a_kill_at_every_write_step_resumes_to_the_uninterrupted_result(tmp_path):
    whole = str(tmp_path / "whole")
    labels = faults.write_steps(lambda: train(whole))
    reference = train_losses(whole)
    # config.json, metrics rows, and three checkpoints of two files each, every step of each
    assert sum("trainer_state.pt" in label for label in labels) >= 3 * 4
    assert any("metrics.jsonl" in label for label in labels) and any("config.json" in label for label in labels)
    for n, label in enumerate(labels):
        run = str(tmp_path / f"killed{n}")
        died = faults.run_killed_at(n, lambda: train(run))
        assert died == label, (n, died, label)
        result = resume_or_start(run)
        assert result.step == 8, label
        assert same_weights(run, whole), f"killed at {label!r}: weights differ after resume"
        assert train_losses(run) == reference, f"killed at {label!r}: logged losses differ"
        assert not [f for f in os.listdir(run) if ".tmp" in f], f"killed at {label!r}: temporary files left"


@settings(max_examples=8, deadline=None, database=None)
@given(fraction=st.floats(0.0, 1.0))
def test_a_kill_at_any_moment_resumes_to_the_uninterrupted_result(fraction):
    """Killed after a random delay (mid-step, mid-evaluation, mid-write): the same end."""
    with tempfile.TemporaryDirectory() as tmp:
        whole, run = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
        t0 = time.perf_counter()
        train(whole)
        faults.run_killed_after(fraction * 1.5 * (time.perf_counter() - t0), lambda: train(run))
        assert resume_or_start(run).step == 8
        assert same_weights(run, whole) and train_losses(run) == train_losses(whole)


def test_a_reader_beside_a_writer_caught_between_its_two_replaces_loads_without_disturbing_it(tmp_path):
    """load_run while the writer has committed trainer_state.pt but not yet moved the weights in:
    the reader reads the new weights from their temporary name and moves nothing."""
    run = str(tmp_path / "run")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            import torch

            torch.set_num_threads(1)

            def pause(label):
                if label == "trainer_state.pt: replaced":
                    os.write(ready_w, b"x")
                    os.read(go_r, 1)

            _io.fault_hook = pause
            train(run)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.read(ready_r, 1)  # the writer is between the replaces of its first checkpoint
    assert os.path.exists(os.path.join(run, "model.safetensors.tmp"))
    _cfg, _task, model = load_run(run)
    assert os.path.exists(os.path.join(run, "model.safetensors.tmp"))  # left for the writer to move
    os.write(go_w, b"x" * 8)  # let it go on (one byte per remaining checkpoint)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert ckpt.read_state(run)["step"] == 8
