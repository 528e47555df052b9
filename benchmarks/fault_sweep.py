"""The reliability sweep: every fault and bad input the run-folder tests try, counted, in one table.

    python benchmarks/fault_sweep.py                      # writes benchmarks/results/fault_sweep.md
    python benchmarks/fault_sweep.py --fuzz-examples 300 --out /tmp/sweep.md

On a tiny "echo" run (8 steps, checkpoints every 3, TBPTT, dropout) it
  - SIGKILLs a forked copy of the run at every write step (config.json, metrics.jsonl, every step of
    every checkpoint), and at 40 moments spread over the run, resumes, and compares weights and
    logged losses with the run never killed;
  - fails every write step with ENOSPC while resuming from the step-3 checkpoint, checks which
    checkpoint the folder holds, resumes, and compares again;
  - damages each file (truncated, zeroed, garbage, emptied, swapped for another run's) and asks
    load_run, `lstmkit train --resume` and `lstmkit export` to read it;
  - sends SIGINT, SIGTERM and a double SIGINT to `lstmkit train` processes;
  - runs a second writer beside a live one and after a killed one;
then runs the fuzz suite (tests/test_reliability_fuzz.py) and counts what each input kind gave.
POSIX only (fork, signals).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests")]

from lstmkit.cli import main  # noqa: E402
from lstmkit.train import CheckpointError, faults, load_run  # noqa: E402
from lstmkit.train import checkpoint as ckpt  # noqa: E402
from lstmkit.train.lock import RunLock  # noqa: E402
from runfolder_util import ECHO_ARGS, resume_or_start, same_weights, train, train_losses  # noqa: E402

Row = collections.namedtuple("Row", "fault tried outcome count")
KILL_MOMENTS = 40


def quiet(fn):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = fn()
    return rc, err.getvalue().strip()


def file_of(label: str) -> str:
    return label.split(":")[0].replace(ckpt.TMP, "")


def kill_points(work: str) -> list[Row]:
    whole = os.path.join(work, "whole")
    labels = faults.write_steps(lambda: train(whole))
    reference = train_losses(whole)
    got: collections.Counter = collections.Counter()
    for n, label in enumerate(labels):
        run = os.path.join(work, f"kill{n}")
        died = faults.run_killed_at(n, lambda: train(run))
        resume_or_start(run)
        ok = died == label and same_weights(run, whole) and train_losses(run) == reference
        got[(file_of(label), "resumed: same weights and logged losses as never killed" if ok else "DIFFERENT")] += 1
    rows = [Row(f"SIGKILL at a write step of {f}", "every step", o, c) for (f, o), c in sorted(got.items())]
    t0 = time.perf_counter()
    train(os.path.join(work, "timed"))
    seconds = time.perf_counter() - t0
    moments: collections.Counter = collections.Counter()
    for k in range(KILL_MOMENTS):
        run = os.path.join(work, f"moment{k}")
        killed = faults.run_killed_after(seconds * 1.2 * k / KILL_MOMENTS, lambda: train(run))
        resume_or_start(run)
        ok = same_weights(run, whole) and train_losses(run) == reference
        moments[("killed" if killed else "finished first") + ("; resumed: same weights and logged losses" if ok
                                                                else "; DIFFERENT")] += 1
    rows += [Row("SIGKILL at an even spread of moments over the run", f"{KILL_MOMENTS} moments", o, c)
             for o, c in sorted(moments.items())]
    return rows


def full_disk(work: str) -> list[Row]:
    whole = os.path.join(work, "whole")
    labels = faults.write_steps(lambda: train(whole))
    start = os.path.join(work, "start")
    first = labels.index(f"{ckpt.MODEL}: replaced")
    with faults.failing_at(first, RuntimeError("stop")), contextlib.suppress(RuntimeError):
        train(start)
    got: collections.Counter = collections.Counter()
    for n in range(len(labels) - first - 1):
        run = os.path.join(work, f"full{n}")
        shutil.copytree(start, run)
        with faults.failing_at(n, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) as hit:
            try:
                train(run, resume=True)
                what = "NOT RAISED"
            except (OSError, CheckpointError) as e:
                what = "one-line error" if len(str(e).splitlines()) == 1 else "MULTI-LINE"
        kept = ckpt.read_state(run)["step"]
        resume_or_start(run)
        same = same_weights(run, whole)
        got[(file_of(hit[0]) if hit else "?", f"{what}; last complete checkpoint kept; resumed to the same weights"
             if same and what == "one-line error" and kept in (3, 6) else f"{what}, kept {kept}, same={same}")] += 1
    return [Row(f"ENOSPC at a write step of {f}", "every step after step 3", o, c) for (f, o), c in sorted(got.items())]


def damaged_files(work: str) -> list[Row]:
    good, other = os.path.join(work, "good"), os.path.join(work, "other")
    train(good)
    train(other, hidden_size=5, train={"seed": 1})
    got: collections.Counter = collections.Counter()
    for name in (ckpt.CONFIG, ckpt.MODEL, ckpt.STATE, ckpt.METRICS):
        for how in faults.CORRUPTIONS:
            run = os.path.join(work, f"bad-{name}-{how}")
            shutil.copytree(good, run)
            faults.corrupt(os.path.join(run, name), how, other=os.path.join(other, name))
            readers = {"load_run": lambda: load_run(run),
                       "lstmkit train --resume": lambda: quiet(lambda: main(["train", "--resume", run,
                                                                             "--train.steps", "10"])),
                       "lstmkit export": lambda: quiet(lambda: main(["export", run, "--onnx", run + ".onnx"]))}
            for reader, fn in readers.items():
                try:
                    r = fn()
                    rc, err = r if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], int) else (0, "")
                except CheckpointError as e:
                    rc, err = 2, str(e)
                if rc == 0:
                    outcome = "read and resumed (a log, not the checkpoint)" if name == ckpt.METRICS else "ACCEPTED"
                elif len(err.splitlines()) == 1 and (name in err or (how == "swapped" and ckpt.MODEL in err)):
                    outcome = "one-line error naming the file"
                else:
                    outcome = f"UNCLEAR: {err[:80]}"
                got[(name, outcome)] += 1
    return [Row(f"{name} damaged", f"{len(faults.CORRUPTIONS)} ways × 3 readers", o, c)
            for (name, o), c in sorted(got.items())]


def signals(work: str) -> list[Row]:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), OMP_NUM_THREADS="1")
    rows = []
    for label, sigs, code in (("SIGINT during training", [signal.SIGINT], 130),
                              ("SIGTERM during training", [signal.SIGTERM], 143),
                              ("two SIGINTs during training", [signal.SIGINT, signal.SIGINT], 130)):
        run = os.path.join(work, f"sig{code}{len(sigs)}")
        proc = subprocess.Popen([sys.executable, "-m", "lstmkit", "train", *ECHO_ARGS, "--train.steps", "60",
                                 "--train.checkpoint_every", "50", "--run_dir", run], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        metrics = os.path.join(run, ckpt.METRICS)
        while proc.poll() is None and not (os.path.exists(metrics) and os.path.getsize(metrics)):
            time.sleep(0.05)
        for s in sigs:
            proc.send_signal(s)
        _, err = proc.communicate(timeout=120)
        step = ckpt.read_state(run)["step"] if ckpt.has_checkpoint(run) else 0
        resumed = resume_or_start(run, train={"steps": 60, "checkpoint_every": 50}).step == 60
        ok = proc.returncode == code and len(err.strip().splitlines()) == 1 and resumed
        rows.append(Row(label, "1 run", f"exit {proc.returncode}, one line{', says how to resume' if 'resume with' in err else ''}"
                        f", checkpoint at step {step}, resumed to the end" if ok else f"UNEXPECTED: {err[:80]}", 1))
    return rows


def locks(work: str) -> list[Row]:
    run = os.path.join(work, "locked")
    train(run)
    hold = ("import sys, time; from lstmkit.train.lock import RunLock; RunLock(sys.argv[1], 'sweep').acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", hold, run], env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src")),
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    rc, err = quiet(lambda: main(["train", "--resume", run, "--train.steps", "12"]))
    refused = rc == 2 and f"pid {proc.pid}" in err and len(err.splitlines()) == 1
    proc.kill()
    proc.wait()
    lock = RunLock(run).acquire()
    taken = lock.taken_over is not None and lock.taken_over.get("pid") == proc.pid
    lock.release()
    rc2, _ = quiet(lambda: main(["train", "--resume", run, "--train.steps", "12"]))
    return [Row("a second writer while the first lives", "1", "refused in one line naming the holder's pid"
                if refused else f"UNEXPECTED: {err}", 1),
            Row("the lock of a SIGKILLed writer", "1", "taken over, the run resumed" if taken and rc2 == 0
                else "UNEXPECTED", 1)]


def fuzz(examples: int) -> list[Row]:
    os.environ["LSTMKIT_FUZZ_EXAMPLES"] = str(examples)
    import test_reliability_fuzz as fz

    for name in sorted(dir(fz)):
        if name.startswith("test_"):
            getattr(fz, name)()
    shutil.rmtree(fz.WORK, ignore_errors=True)
    per_kind: collections.Counter = collections.Counter()
    for (kind, _), n in fz.OUTCOMES.items():
        per_kind[kind] += n
    return [Row(f"fuzzed {kind}", f"{per_kind[kind]} inputs", outcome, n)
            for (kind, outcome), n in sorted(fz.OUTCOMES.items())]


def table(rows: list[Row], seconds: float, examples: int) -> str:
    lines = ["# Fault sweep", "",
             f"`python benchmarks/fault_sweep.py --fuzz-examples {examples}`: {sum(r.count for r in rows)} faults and "
             f"bad inputs in {seconds:.0f} s. A fault passes when its outcome is the promised one: resumed to the "
             "result of an uninterrupted run, or refused with one line naming the file or the holder; "
             "an input passes when it gives a checked result or a one-line error (no traceback).", "",
             "| fault or input | tried | outcome | count |", "|---|---|---|---:|"]
    lines += [f"| {r.fault} | {r.tried} | {r.outcome} | {r.count} |" for r in rows]
    bad = [r for r in rows if any(w in r.outcome for w in ("UNEXPECTED", "UNCLEAR", "DIFFERENT", "ACCEPTED", "MULTI"))]
    lines += ["", f"Unexpected outcomes: {sum(r.count for r in bad)}."]
    return "\n".join(lines) + "\n"


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fuzz-examples", type=int, default=200, help="inputs per fuzzed format [200]")
    p.add_argument("--out", default=os.path.join(HERE, "results", "fault_sweep.md"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as work:
        for part in (kill_points, full_disk, damaged_files, signals, locks):
            sub = os.path.join(work, part.__name__)
            os.makedirs(sub)
            rows += part(sub)
            print(f"{part.__name__}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    rows += fuzz(args.fuzz_examples)
    text = table(rows, time.perf_counter() - t0, args.fuzz_examples)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from lstmkit._io import atomic_write_text

    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run())
