"""``lstmkit tasks``: train on a long-time-lag problem of Hochreiter & Schmidhuber (1997) and
score with the paper's own criterion, the LSTM beside a plain RNN and the paper's row."""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """Train an LSTM (and, by default, a plain tanh RNN) on one of the long-time-lag
problems of Hochreiter & Schmidhuber (1997) or the copy task of Arjovsky et al. (2016), then
score the test set with the paper's own criterion (e.g. adding: how many of 2,560 test
sequences have absolute error >= 0.04) and print our rows beside the paper's.

tasks: adding, multiplication, temporal_order_6a (6a), temporal_order_6b (6b), reber,
       long_lag (2a), copy

Training stops when a validation check meets the criterion, or after --budget seconds or
--steps optimizer steps. Unset settings use each task's defaults (lstmkit.paper1997.*)."""

EXAMPLES = """examples:
  lstmkit tasks adding --length 100              LSTM and RNN, T = 100, up to 10 min each
  lstmkit tasks 6a --model lstm --budget 300
  lstmkit tasks reber --model lstm --seeds 10    the paper's success rate over 10 trials"""


def register(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="the 1997 long-time-lag experiments: LSTM vs plain RNN vs the paper",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("name", help="task name (see above)")
    p.add_argument("--model", choices=("lstm", "rnn", "both"), default="both", help="what to train (default both)")
    p.add_argument("--length", type=int, default=None, help="T (adding, multiplication, copy) or the lag p (long_lag)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--seeds", type=int, default=1, help="number of trials, seeds seed … seed+N-1 (default 1)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS", help="training time per trial (default: the task's)")
    p.add_argument("--steps", type=int, default=None, help="maximum optimizer steps per trial")
    p.add_argument("--hidden", type=int, default=None, help="hidden units")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument("--batch", type=int, default=None, help="sequences per batch")
    p.add_argument("--forget-bias", type=float, default=None, help="LSTM initial forget-gate bias")
    p.add_argument("--chrono", type=int, default=None, metavar="T_MAX",
                   help="chrono initialization of the LSTM's gate biases (Tallec & Ollivier 2018); 0 turns it off")
    p.add_argument("--warmup", type=int, default=None, metavar="STEPS", help="linear learning-rate warm-up")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every row as JSON here")
    p.set_defaults(run=run)


def run(args) -> int:
    from . import CliError
    from ..paper1997 import make_task
    from ..paper1997.runner import markdown_table, run_task, summarize

    if args.seeds < 1:
        raise CliError(f"--seeds must be >= 1, got {args.seeds}")
    if args.budget is not None and args.budget <= 0:
        raise CliError(f"--budget must be positive, got {args.budget}")
    if args.chrono is not None and 0 < args.chrono < 3:
        raise CliError(f"--chrono must be 0 (off) or a longest lag T_MAX >= 3, got {args.chrono}")
    if args.warmup is not None and args.warmup < 0:
        raise CliError(f"--warmup must be >= 0, got {args.warmup}")
    task = make_task(args.name, args.length)  # one-line ValueError for bad names / lengths
    models = ("lstm", "rnn") if args.model == "both" else (args.model,)
    progress = "bar" if sys.stderr.isatty() else "off"
    summaries = []
    for model in models:
        rows = []
        for seed in range(args.seed, args.seed + args.seeds):
            row = run_task(args.name, model, args.length, seed=seed, hidden_size=args.hidden, lr=args.lr,
                           batch_size=args.batch, max_steps=args.steps, time_budget=args.budget,
                           forget_bias=args.forget_bias, chrono=args.chrono, warmup_steps=args.warmup,
                           progress=progress)
            rows.append(row)
            print(f"{task.describe()} {model.upper()} seed {seed}: {row['wrong']}/{row['n_test']} wrong, "
                  f"test loss {row['loss']:.4f}, {'solved' if row['solved'] else 'not solved'} "
                  f"({row['stop_reason']}) after {row['sequences']:,} sequences, {row['seconds']:.0f} s", flush=True)
        summaries.append(summarize(rows))
    print()
    print(markdown_table(summaries))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summaries, f, indent=1)
        print(f"\nrows written to {args.json}")
    return 0
