"""One writer per run folder: a second writer is refused naming the holder; a killed holder's
lock is taken over."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import lstmkit
from lstmkit.cli import main
from lstmkit.train import checkpoint as ckpt
from lstmkit.train.lock import LOCK, RunLock, RunLockedError, holder
from runfolder_util import ECHO_ARGS, train

SRC = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
HOLD = ("import sys, time; from lstmkit.train.lock import RunLock; RunLock(sys.argv[1], 'holder test').acquire(); "
        "print('locked', flush=True); time.sleep(120)")


def hold_lock(run_dir):
    """A real process holding run_dir's lock (until killed)."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, run_dir], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    run = str(tmp_path / "run")
    with RunLock(run, "first"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}.*first"):
            RunLock(run, "second").acquire()
        assert holder(run)["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(run, LOCK))  # released: the folder is left clean
    with RunLock(run):
        pass


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_train_refuses_while_another_process_holds_the_folder_then_takes_over_when_it_is_killed(tmp_path, capsys):
    run = str(tmp_path / "run")
    train(run)
    proc = hold_lock(run)
    try:
        for how in (["--run_dir", run], ["--resume", run]):  # a second run, or a resume, while it is held
            assert main(["train", *ECHO_ARGS, "--train.steps", "12", *how]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert f"{run} is being written by another process (pid {proc.pid} on " in err and "holder test" in err
        assert ckpt.read_state(run)["step"] == 8  # nothing was written
    finally:
        proc.kill()
        proc.wait()
    # The holder died by SIGKILL: its lock file is still there, and free.
    assert os.path.exists(os.path.join(run, LOCK)) and holder(run) is None
    lock = RunLock(run).acquire()
    assert lock.taken_over["pid"] == proc.pid
    lock.release()
    proc = hold_lock(run)
    proc.kill()
    proc.wait()
    assert main(["train", *ECHO_ARGS, "--train.steps", "12", "--resume", run]) == 0
    assert ckpt.read_state(run)["step"] == 12


def test_temporary_files_of_killed_writers_are_cleared_by_the_next_writer(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run / f".trainer_state.pt.{dead.pid}.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(str(run))
    assert not stale.exists()


def test_without_flock_the_lock_is_an_exclusive_file_whose_dead_owner_is_replaced(tmp_path, monkeypatch):
    """File systems without flock (some network mounts): O_EXCL creation, the owner's pid checked."""
    import errno

    from lstmkit.train import lock as lock_module

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    run = str(tmp_path / "run")
    first = RunLock(run, "first").acquire()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}.*first"):
        RunLock(run, "second").acquire()
    first.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(os.path.join(run, LOCK), "w") as f:  # a lock left by a process that died
        f.write(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0, "command": "gone"}))
    taken = RunLock(run).acquire()
    assert taken.taken_over["pid"] == dead.pid
    taken.release()
    assert not os.path.exists(os.path.join(run, LOCK))
