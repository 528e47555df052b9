"""Every file of a run folder truncated, zeroed, emptied, filled with garbage or swapped for another
run's: every reader (load_run, resume, the CLI) answers one error naming the file, never a
traceback, never unpickling code. A full disk (ENOSPC) at any write step keeps the last checkpoint."""
from __future__ import annotations

import errno
import os
import shutil

import pytest

from lstmkit.cli import main
from lstmkit.train import CheckpointError, faults, load_run
from lstmkit.train import checkpoint as ckpt
from runfolder_util import resume_or_start, same_weights, train, train_losses

FILES = (ckpt.CONFIG, ckpt.MODEL, ckpt.STATE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    good, other = str(base / "good"), str(base / "other")
    train(good)
    train(other, hidden_size=5, train={"seed": 1})
    return good, other


def damaged(tmp_path, runs, name, how):
    good, other = runs
    run = str(tmp_path / "run")
    shutil.copytree(good, run)
    faults.corrupt(os.path.join(run, name), how, other=os.path.join(other, name))
    return run


@pytest.mark.parametrize("how", faults.CORRUPTIONS)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_is_named_in_one_line_by_every_reader(tmp_path, runs, capsys, name, how):
    run = damaged(tmp_path, runs, name, how)
    path = os.path.join(run, name)
    readers = [load_run] + ([] if name == ckpt.CONFIG else [lambda r: train(r, resume=True, train={"steps": 10})])
    for read in readers:  # (a Trainer given its task in Python does not read config.json)
        with pytest.raises(CheckpointError) as e:
            read(run)
        msg = str(e.value)
        assert len(msg.splitlines()) == 1
        assert path in msg or (how == "swapped" and ckpt.MODEL in msg), msg
    out = str(tmp_path / "m.onnx")
    for argv in (["train", "--resume", run, "--train.steps", "10"], ["export", run, "--onnx", out]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert path in err or (how == "swapped" and ckpt.MODEL in err), err
    assert not os.path.exists(out)
    assert ckpt.read_state(runs[0])["step"] == 8


@pytest.mark.parametrize("how", faults.CORRUPTIONS)
def test_a_damaged_metrics_log_does_not_stop_a_resume(tmp_path, runs, how):
    run = damaged(tmp_path, runs, ckpt.METRICS, how)
    load_run(run)
    assert train(run, resume=True, train={"steps": 10}).step == 10
    assert [s for s, _ in train_losses(run)][-1] == 10


def test_a_trainer_state_that_would_run_code_when_unpickled_is_refused(tmp_path, runs):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    run = damaged(tmp_path, runs, ckpt.STATE, "empty")
    import torch

    torch.save({"step": 8, "model_sha256": "x", "payload": Boom()}, os.path.join(run, ckpt.STATE))
    with pytest.raises(CheckpointError, match="trainer_state.pt is corrupt or truncated"):
        load_run(run)
    assert not (tmp_path / "pwned").exists()


def test_a_config_of_a_newer_format_or_without_a_task_is_refused_by_name(tmp_path, runs):
    import json

    run = damaged(tmp_path, runs, ckpt.METRICS, "empty")
    path = os.path.join(run, ckpt.CONFIG)
    cfg = json.load(open(path))
    json.dump(dict(cfg, format=ckpt.FORMAT + 1), open(path, "w"))
    with pytest.raises(CheckpointError, match=f"{run} was written by a newer lstmkit .*format {ckpt.FORMAT + 1}"):
        load_run(run)
    json.dump({k: v for k, v in cfg.items() if k not in ("format", "task")}, open(path, "w"))
    with pytest.raises(CheckpointError, match="config.json names no task"):
        load_run(run)
    json.dump({k: v for k, v in cfg.items() if k != "format"}, open(path, "w"))  # before the format field
    load_run(run)


def test_a_full_disk_at_any_write_step_keeps_the_last_checkpoint_and_the_run_still_ends_the_same(tmp_path, capsys):
    whole = str(tmp_path / "whole")
    labels = faults.write_steps(lambda: train(whole))
    start = str(tmp_path / "start")  # the same run stopped right after its checkpoint at step 3
    with faults.failing_at(labels.index(f"{ckpt.MODEL}: replaced"), RuntimeError("stop")), \
            pytest.raises(RuntimeError):
        train(start)
    assert ckpt.read_state(start)["step"] == 3
    for n in range(len(labels) - labels.index(f"{ckpt.MODEL}: replaced")):
        run = str(tmp_path / f"full{n}")
        shutil.copytree(start, run)
        with faults.failing_at(n, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "disk")) as hit:
            with pytest.raises((OSError, CheckpointError)) as e:
                train(run, resume=True)
        assert hit, n
        if isinstance(e.value, CheckpointError):
            assert "No space left on device" in str(e.value) and "is intact" in str(e.value)
        before = ckpt.read_state(run)["step"]
        assert before in (3, 6), (hit, before)  # the last complete checkpoint, never a broken one
        load_run(run)
        resume_or_start(run)
        assert same_weights(run, whole), hit
    run = str(tmp_path / "cli")
    shutil.copytree(start, run)
    with faults.failing_at(3, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))):
        assert main(["train", "--resume", run]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
