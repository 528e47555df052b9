"""SIGKILL at every write step of a run (config, metrics, each checkpoint's every step), then
resume: the run ends with the weights, final loss and logged losses of a run never killed."""
from __future__ import annotations

import os
import signal

import pytest

from lstmkit.train import faults
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
