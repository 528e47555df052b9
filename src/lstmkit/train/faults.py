"""Fault injection for run folders: what the reliability tests and benchmarks/fault_sweep.py do to them.

    >>> from lstmkit.train import faults
    >>> labels = faults.write_steps(lambda: train(run_dir))          # doctest: +SKIP
    >>> faults.run_killed_at(5, lambda: train(run_dir))              # doctest: +SKIP
    'trainer_state.pt: half written'

Every step of a run-folder write calls lstmkit._io.write_step(label). write_steps lists the
steps a function goes through; run_killed_at runs it in a forked child that SIGKILLs itself at
the n-th step (no cleanup runs: exactly a kill -9 or a power cut at that point), run_killed_after
kills it after a delay, wherever it is; failing_at makes
the n-th step raise (e.g. OSError(ENOSPC): a full disk). corrupt damages a file the ways disks,
copies and users do. POSIX only (fork, SIGKILL).
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from typing import Callable, Iterator, Optional

from .. import _io

CORRUPTIONS = ("truncated", "zeroed", "garbage", "empty", "swapped")


def write_steps(fn: Callable[[], object]) -> list[str]:
    """The labels of the write steps fn passes through, in order (fn runs once, normally)."""
    seen: list[str] = []
    previous, _io.fault_hook = _io.fault_hook, seen.append
    try:
        fn()
    finally:
        _io.fault_hook = previous
    return seen


def run_killed_at(n: int, fn: Callable[[], object]) -> Optional[str]:
    """Run fn in a forked child that is SIGKILLed at its n-th write step (0-based).

    Returns the label of the step it died at, or None if fn finished before step n.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here, whatever happens
        code = 0
        try:
            os.close(read)
            import torch

            torch.set_num_threads(1)  # a forked OpenMP pool must not be used
            count = [0]

            def hook(label: str) -> None:
                if count[0] == n:
                    os.write(write, label.encode())
                    os.kill(os.getpid(), signal.SIGKILL)
                count[0] += 1

            _io.fault_hook = hook
            fn()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        label = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return label
    if os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"the child run failed (exit {os.WEXITSTATUS(status)}) before write step {n}")
    return None


def run_killed_after(seconds: float, fn: Callable[[], object]) -> bool:
    """Run fn in a forked child and SIGKILL it after seconds (wherever it is); True if it was killed."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            import torch

            torch.set_num_threads(1)
            fn()
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WEXITSTATUS(status) != 0:
                raise RuntimeError(f"the child run failed (exit {os.WEXITSTATUS(status)})")
            return False
        time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


@contextlib.contextmanager
def failing_at(n: int, error: BaseException) -> Iterator[list[str]]:
    """Within the block, the n-th write step (0-based) raises error; yields [label of that step]."""
    count, hit = [0], []

    def hook(label: str) -> None:
        if count[0] == n:
            hit.append(label)
            count[0] += 1
            raise error
        count[0] += 1

    previous, _io.fault_hook = _io.fault_hook, hook
    try:
        yield hit
    finally:
        _io.fault_hook = previous


def corrupt(path: str, how: str, other: Optional[str] = None, seed: int = 0) -> None:
    """Damage path: "truncated" (half kept), "zeroed" (same size, all 0), "garbage" (same size,
    random bytes), "empty" (0 bytes), "swapped" (replaced by other, the same file of another run)."""
    data = open(path, "rb").read()
    if how == "truncated":
        new = data[: len(data) // 2]
    elif how == "zeroed":
        new = bytes(len(data))
    elif how == "garbage":
        new = random.Random(seed).randbytes(max(len(data), 16))
    elif how == "empty":
        new = b""
    elif how == "swapped":
        if other is None:
            raise ValueError("corrupt(..., 'swapped') needs the other run's file")
        new = open(other, "rb").read()
    else:
        raise ValueError(f"how must be one of {CORRUPTIONS}, got {how!r}")
    with open(path, "wb") as f:
        f.write(new)
