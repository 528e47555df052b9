"""``lstmkit gradients``: the vanishing gradient made visible — ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖
against the lag, for an LSTM and a plain RNN, untrained and trained, as one PNG."""
from __future__ import annotations

import argparse
import json
import os

DESCRIPTION = """Measure how much of the error at a sequence's last step reaches each earlier
step: the norm of dL/dh_t (and of dL/dc_t, the LSTM's memory cell) against the lag T-1-t, for
an LSTM and a plain tanh RNN, before and after training on the task. The gradients are the
total derivatives through every later step, taken with torch.autograd.grad on an explicit
unrolled loop that reproduces the model's forward (see lstmkit.paper1997.gradients)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("gradients", help="gradient flow vs lag, LSTM vs plain RNN, as a PNG",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                              allow_abbrev=False)
    p.add_argument("--task", default="adding", help="task whose sequences and loss are used (default adding)")
    p.add_argument("--length", type=int, default=100, help="T or lag where the task has one (default 100)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default: the task's)")
    p.add_argument("--budget", type=float, default=120.0, metavar="SECONDS",
                   help="training time per model for the 'trained' curves (default 120); 0 skips training")
    p.add_argument("--sequences", type=int, default=64, help="sequences the norms are averaged over (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    p.add_argument("--out", default="gradient_flow.png", help="PNG path (default gradient_flow.png); a .json beside it")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from . import CliError
    from ..paper1997 import TASKS, make_task
    from ..paper1997.gradients import plot_gradient_flow, task_gradient_flow
    from ..paper1997.model import build_model
    from ..paper1997.runner import train_task

    if args.budget < 0:
        raise CliError(f"--budget must be >= 0, got {args.budget}")
    key = args.task
    task = make_task(key, None if TASKS.get(key, (None, 0))[1] is None else args.length)
    length = getattr(task, "T", getattr(task, "p", None))
    hidden = args.hidden or task.defaults.hidden_size
    curves, rows = {}, {}
    for kind, label in (("lstm", "LSTM"), ("rnn", "RNN")):
        torch.manual_seed(args.seed)
        model = build_model(kind, task, hidden)
        curves[f"{label} untrained"] = task_gradient_flow(model, task, args.sequences, args.seed)
        if args.budget > 0:
            row, trained = train_task(key, kind, length, seed=args.seed, hidden_size=hidden, time_budget=args.budget)
            rows[label] = row
            curves[f"{label} trained"] = task_gradient_flow(trained, task, args.sequences, args.seed)
            print(f"{label}: trained {row['sequences']:,} sequences in {row['seconds']:.0f} s, "
                  f"{row['wrong']}/{row['n_test']} test sequences wrong", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot_gradient_flow(curves, args.out, title=f"gradient flow on {task.describe()}, loss at the last step")
    n = len(next(iter(curves.values()))["h"])
    lags = sorted({0, 10, 25, 50, 100, 250, 500, n - 1} & set(range(n)))
    print("\nmean ‖dL/dh_t‖ (‖dL/dc_t‖ for the LSTM cell) at lag:")
    print(f"{'curve':<16}" + "".join(f"{lag:>11}" for lag in lags))
    for label, r in curves.items():
        for what in ("h", "c"):
            if r[what] is None:
                continue
            v = r[what].flip(0)  # index = lag
            print(f"{label + ' ' + what:<16}" + "".join(f"{float(v[lag]):>11.2e}" for lag in lags))
    data = {label: {k: (v.tolist() if v is not None else None) for k, v in r.items()} for label, r in curves.items()}
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"task": task.describe(), "curves": data, "training": rows}, f)
    print(f"\nplot: {args.out}")
    return 0
