"""``lstmkit demo``: an LSTM and a plain RNN side by side on a long-time-lag task."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

DEFAULT_TASK, DEFAULT_LENGTH, DEFAULT_BUDGET = "adding", 50, 90.0

DESCRIPTION = f"""Train an LSTM and a plain (tanh) RNN on the same long-time-lag problem of
Hochreiter & Schmidhuber (1997), then print a table of both results and the path of a
learning-curve plot. Default: the adding problem (Experiment 4) at T = {DEFAULT_LENGTH}: each step
carries a value and a marker; at the end, output 0.5 + (X1 + X2)/4 of the two marked values, the
first of them at least {DEFAULT_LENGTH // 2} steps back. A sequence counts as wrong if the error
exceeds 0.04, scored on the paper's 2,560 test sequences. Each model trains until it is
solved or for {DEFAULT_BUDGET:.0f} s: 2 to 3 minutes in all on 2 CPU cores. The LSTM bridges the lag;
the RNN's error signal vanishes across it."""


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="LSTM vs plain RNN on a long-time-lag task (a few minutes)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                              allow_abbrev=False)
    p.add_argument("--task", default=DEFAULT_TASK, help=f"a task of lstmkit.paper1997 (default {DEFAULT_TASK})")
    p.add_argument("--length", type=int, default=None,
                   help=f"sequence length / lag (default {DEFAULT_LENGTH} for {DEFAULT_TASK}, the task's own otherwise)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, metavar="SECONDS",
                   help=f"training time per model, seconds (default {DEFAULT_BUDGET:.0f})")
    p.add_argument("--steps", type=int, default=None, help="maximum optimizer steps per model (default: the task's)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and weights (default 0)")
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="folder for both runs and the plot "
                   "(default runs/demo; its lstm/ and rnn/ runs are replaced)")
    p.set_defaults(run=run)


def _fresh(path: str) -> None:
    """Remove an earlier demo run at path (only if it is a run folder), so the demo can rerun."""
    from ..train.lock import holder
    from . import CliError

    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")) and os.listdir(path):
            raise CliError(f"{path} exists and is not a run folder; choose another --out")
        owner = holder(path)
        if owner is not None:
            raise CliError(f"{path} is being written by pid {owner.get('pid')} ({owner.get('command', '')}); "
                           "wait for it or choose another --out")
        shutil.rmtree(path)


def run(args) -> int:
    from . import CliError

    try:
        from ..paper1997 import make_task
        from ..paper1997.runner import run_task
    except ImportError as e:  # pragma: no cover - the tasks package ships with lstmkit
        raise CliError(f"the demo needs lstmkit.paper1997 ({e})") from None
    import torch

    from ..train.curves import plot_runs

    if args.budget <= 0:
        raise CliError(f"--budget must be positive, got {args.budget}")
    length = args.length if args.length is not None else (DEFAULT_LENGTH if args.task == DEFAULT_TASK else None)
    task = make_task(args.task, length)  # ValueError (one line) for an unknown task or bad length
    progress = "bar" if sys.stderr.isatty() else "log"
    print(f"lstmkit demo: {task.describe()} — LSTM vs plain RNN, up to {args.budget:.0f} s each "
          f"(seed {args.seed})", flush=True)
    rows, dirs = [], {}
    t0 = time.perf_counter()
    # These nets are small: one CPU thread per op beats several (whose hand-offs cost more than
    # the work, and stall when other processes hold the cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind, label in (("lstm", "LSTM"), ("rnn", "RNN")):
            run_dir = os.path.join(args.out, kind)
            _fresh(run_dir)
            print(f"\n== {label} ==", flush=True)
            row = run_task(args.task, kind, length, seed=args.seed, time_budget=args.budget, max_steps=args.steps,
                           run_dir=run_dir, progress=progress)
            rows.append((label, row))
            dirs[label] = run_dir
    finally:
        torch.set_num_threads(threads)
    curve = plot_runs(dirs, os.path.join(args.out, "learning_curves.png"), metric="wrong_fraction",
                      title=f"{task.describe()}: LSTM vs plain RNN", metric_label="fraction of sequences wrong")

    print(f"\n{task.describe()}: test set of {rows[0][1]['n_test']} sequences "
          f"({time.perf_counter() - t0:.0f} s in all)\n")
    head = f"{'model':<6} {'steps':>6} {'sequences':>10} {'seconds':>8} {'wrong':>12} {'test loss':>10}  solved"
    print(head)
    print("-" * len(head))
    for label, r in rows:
        wrong = f"{r['wrong']}/{r['n_test']}"
        print(f"{label:<6} {r['steps']:>6} {r['sequences']:>10} {r['seconds']:>8.0f} {wrong:>12} "
              f"{r['loss']:>10.4f}  {'yes' if r['solved'] else 'no'} ({r['stop_reason']})")
    print("\nwrong: sequences the paper's criterion rejects (for adding: |error| at the end > 0.04)")
    paper = rows[0][1]["paper"]
    if paper.get("source") and (paper.get("wrong") is not None or paper.get("success_rate") is not None):
        print(f"\npaper ({paper['source']}): LSTM {paper['result']}" + (f"; {paper['rnn']}" if paper.get("rnn") else ""))
    print(f"\nrun folders: {dirs['LSTM']}, {dirs['RNN']}")
    print(f"learning curves: {curve}" if curve else "learning curves: not drawn (matplotlib is not installed)")
    return 0
