"""The long-time-lag table of Hochreiter & Schmidhuber (1997), LSTM beside a plain RNN, in one run.

Runs every entry below one after the other in this process (never two trainings at once) with
lstmkit.paper1997.runner (the Trainer underneath), scores each with the paper's own criterion, and
writes a Markdown table and the raw rows as JSON. The files always hold exactly the rows of one
run: a run replaces them, it never merges with an earlier one. Each trial stops when solved or
after its time budget (a plain RNN's also at its sequence cap, RNN_FACTOR); the budgets are
caps, adding up to the hours printed by ``--plan``, while the whole table took 42 minutes at one thread on a
2-core machine (the copy task's two rows and adding at T = 1000 the longest).

    python benchmarks/paper_1997.py                  # the whole table
    python benchmarks/paper_1997.py --quick          # a subset in under 10 minutes
    python benchmarks/paper_1997.py --plan           # what a run would do, and its longest duration
    python benchmarks/paper_1997.py --tasks 2a 6a --out /tmp/t   # some entries (their own table)
    python benchmarks/paper_1997.py --render         # rewrite the .md from the .json

Wall times depend on the machine and its load, so the files record the machine, the torch
threads, and the 1-minute load average (os.getloadavg) at the start and end of the run and of
every row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from typing import NamedTuple, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from lstmkit.paper1997 import make_task  # noqa: E402
from lstmkit.paper1997.runner import markdown_table, recipe, run_task, summarize  # noqa: E402

MODELS = ("lstm", "rnn")


class Trials(NamedTuple):
    """How one model is run on an entry: seeds 0 … seeds - 1, each up to budget seconds (a
    safety cap: a trial stops when solved, and a plain RNN's also at its sequence cap)."""

    seeds: int
    budget: float


# A plain RNN trial gets RNN_FACTOR times the training sequences the LSTM needed on the same
# entry in this run (its slowest solved seed), or, without an LSTM row to go by, that many
# times the paper's LSTM figure: the question is whether it learns the task given the LSTM's
# data and more, not whether it learns it eventually.
RNN_FACTOR = 2


class Entry(NamedTuple):
    task: str
    length: Optional[int]
    runs: dict  # model → Trials


# The full table. Budgets are wall-clock caps per trial on a quiet 2-core machine; a trial stops
# earlier when solved. The paper ran 10 trials of 2a and Reber (success rates), one elsewhere.
ENTRIES = {
    "adding100": Entry("adding", 100, {"lstm": Trials(1, 600), "rnn": Trials(1, 600)}),
    "adding500": Entry("adding", 500, {"lstm": Trials(1, 3600)}),
    "adding1000": Entry("adding", 1000, {"lstm": Trials(1, 7200)}),
    "multiplication": Entry("multiplication", 100, {"lstm": Trials(1, 600)}),
    "6a": Entry("temporal_order_6a", None, {"lstm": Trials(1, 600), "rnn": Trials(1, 600)}),
    "6b": Entry("temporal_order_6b", None, {"lstm": Trials(1, 600)}),
    "reber": Entry("reber", None, {"lstm": Trials(10, 180), "rnn": Trials(10, 180)}),
    "2a": Entry("long_lag", 100, {"lstm": Trials(10, 120), "rnn": Trials(10, 60)}),
    "copy": Entry("copy", 100, {"lstm": Trials(1, 2400), "rnn": Trials(1, 600)}),
}
# --quick: the entries that finish in minutes (2a's ten LSTM trials take ~10 s each on a quiet
# core), with shorter caps for the models that are not expected to solve them.
QUICK = {
    "2a": {"lstm": Trials(10, 45), "rnn": Trials(2, 20)},
    "6a": {"lstm": Trials(1, 120), "rnn": Trials(1, 20)},
    "6b": {"lstm": Trials(1, 90)},
}

# What a reader needs beside a row: why the recipe is what it is, and anything that makes the row
# not comparable to the paper. Printed under the table, followed by each row's recipe, which is
# read from the row itself (runner.recipe).
NOTES = {
    "adding500": "forget bias 7: σ(7)^525 ≈ 0.6 of the error reaches a mark 525 steps back (σ(5)^525 ≈ 0.03); "
                 "the rate decays and training stops only at a check of 2,560 validation sequences with every "
                 "error below 0.03, a margin under the paper's 0.04 (at a constant rate, stopping at the first "
                 "check with none wrong, 12 of the 2,560 test sequences were wrong).",
    "adding1000": "a curriculum, unlike the paper: the LSTM trains at T = 100, then 200, then 400 (each until a "
                  "check of 512 sequences at that length has at most 1 % wrong), then at T = 1000; 'training "
                  "sequences' counts all of them, the shorter ones included (the table says how many "
                  "were shorter). Trained at T = 1000 from the start, it was still at the mean after 563,200 "
                  "sequences; moved straight from T = 100 to 1000, its errors at 1000 reached 1.7 (the cells "
                  "drift over the extra steps). Otherwise the T = 500 recipe.",
    "reber": "trained online on freshly generated strings (the paper drew from a fixed set of 256); the "
             "criterion is the paper's, on the trial's 256 'training' + 256 test strings: every next-symbol "
             "top-k set exactly right. The plain RNN gets the same online strings and, unlike the paper's "
             "Elman nets, full backpropagation through time with Adam; the lag here is short (the inner "
             "string B … E, 8 symbols on average).",
    "copy": "trained on delays drawn per batch uniformly from 1 … 100 (a mixed curriculum), tested at 100 "
            "only. 'solved' means test loss below a tenth of the memoryless baseline; 'wrong' counts a "
            "sequence if any of its 10 recalled symbols is. The RNN row uses the same mixed delays.",
    "2a": "the criterion is the paper's: at every step of both sequences every output unit (softmax "
          "probability) within 0.25 of its target. Why an earlier version never solved it (the final step "
          "stayed at chance, ln 2, after 308,800 sequences): (1) the loss averaged the cross-entropy over the "
          "p = 100 steps, so the one step that needs the lag was 1 % of it; the 99 deterministic steps were "
          "learned within ~100 updates in a way that wiped the first symbol out of the cells (the final "
          "step's loss gradient at the cell state after step 1 fell from 0.19 to 1e-5 by update 100 and "
          "stayed there), and the final step's share never rebuilt the path; with the mean even p = 20 "
          "stays at chance. The loss now weighs the final step as much as all deterministic steps "
          "together. (2) The input gates started "
          "at lk.LSTM's default (i ≈ 0.5) with the forget gate near 1 (bias 5): every cell integrated its "
          "gate's bias-driven input over the 100 steps to |c| ≈ 7 (up to 25), tanh' ≈ 0.1, and the first "
          "symbol's trace was squashed away (even a loss on the final step alone then failed for some "
          "seeds). Input gates now start shut, σ(-2) ≈ 0.12, the paper's cure for state drift (Section "
          "5.4); shut this far they still let x / y in: the gate learns to open for them. Either fix alone "
          "leaves p = 100 unsolved. Checked and not the cause: the generator (Section 5.2: p + 1 "
          "one-hot symbols, the two sequences (x, a_1 … a_{p-1}, x) and (y, a_1 … a_{p-1}, y) with probability "
          "0.5 each, the next symbol as every step's target), the linear-softmax output layer, the learning "
          "rate (3e-3 solves it too, more slowly).",
}
GENERAL_NOTES = [
    "- Every trial ran in the one process of this run, one after the other, with the torch threads "
    "given above; 'wall time' sums a row's trials. A busy machine stretches wall times (and cuts what a "
    "time budget allows), not the sequence counts a solved trial needed.",
]


def plan(keys: list[str], models: list[str], quick: bool) -> list[tuple[str, str, Trials]]:
    """(entry, model, trials) in run order."""
    out = []
    for key in keys:
        runs = QUICK[key] if quick else ENTRIES[key].runs
        out += [(key, m, runs[m]) for m in MODELS if m in runs and m in models]
    return out


def rnn_sequences(rows: list[dict], key: str, entry: Entry) -> tuple[Optional[int], str]:
    """The plain RNN's sequence cap on entry key (see RNN_FACTOR) and whose figure it doubles;
    None: its time budget only."""
    lstm = next((s for s in rows if s["entry"] == key and s["model"] == "lstm"), None)
    solved = [r["sequences"] for r in (lstm["runs"] if lstm else []) if r["solved"]]
    if solved:
        return RNN_FACTOR * max(solved), "the LSTM's in this run"
    paper = make_task(entry.task, entry.length).reference.train_sequences
    return (RNN_FACTOR * paper, "the paper's LSTM's") if paper else (None, "")


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def machine() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def recipe_lines(s: dict) -> list[str]:
    """The settings of a row (its first trial's; every trial of a row shares them) and its stop
    rule; none for a row of a file written before rows recorded them."""
    if "hidden_size" not in s["runs"][0]:
        return []
    line = f"- {s['describe']} {s['model'].upper()} recipe: {recipe(s['runs'][0])}"
    if s.get("sequence_cap"):
        line += (f"; stopped, if not solved, at {s['sequence_cap']:,} training sequences ({RNN_FACTOR}x "
                 f"{s['sequence_cap_of']})")
    return [line + "."]


def seed_lines(s: dict) -> list[str]:
    """One line per multi-seed row: which seeds solved, and after how many sequences."""
    if len(s["runs"]) < 2:
        return []
    runs = ", ".join(f"{r['seed']}: {'solved' if r['solved'] else 'not solved'} after {r['sequences']:,}"
                     for r in s["runs"])
    return [f"- {s['describe']} {s['model'].upper()}, per seed (training sequences): {runs}."]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"the subset {', '.join(QUICK)} with short budgets (< 10 min)")
    p.add_argument("--tasks", nargs="+", choices=list(ENTRIES), help="entries to run (default: all, or the --quick set)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to run (default both)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for paper_1997.md / .json")
    p.add_argument("--progress", action="store_true", help="log each trial's progress to stderr")
    p.add_argument("--plan", action="store_true", help="print the trials and the longest duration, run nothing")
    p.add_argument("--render", action="store_true", help="rewrite paper_1997.md from paper_1997.json, run nothing")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    md_path, json_path = os.path.join(args.out, "paper_1997.md"), os.path.join(args.out, "paper_1997.json")
    if args.render:
        if not os.path.exists(json_path):
            p.error(f"--render: no results file {json_path}")
        with open(json_path, encoding="utf-8") as f:
            _write(json.load(f), md_path, json_path)
        return 0
    if args.quick and args.tasks and set(args.tasks) - set(QUICK):
        p.error(f"--quick covers {', '.join(QUICK)}; got {', '.join(sorted(set(args.tasks) - set(QUICK)))}")
    keys = args.tasks or list(QUICK if args.quick else ENTRIES)
    trials = plan(keys, args.models, args.quick)
    if not trials:
        p.error("nothing to run: those entries have no rows for the chosen models")
    longest = sum(t.seeds * t.budget for _, _, t in trials)
    if args.plan:
        for key, model, t in trials:
            rule = f", or at {RNN_FACTOR}x the LSTM's training sequences" if model == "rnn" else ""
            print(f"{key:15s} {model:4s} {t.seeds:2d} trial(s) x up to {t.budget:.0f} s{rule}")
        print(f"at most {longest / 60:.0f} min of training (trials stop earlier when solved, plain RNN trials "
              f"also at their sequence cap)")
        return 0

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    run = {"mode": "quick" if args.quick else ("subset" if args.tasks else "full"), "entries": keys,
           "machine": machine(), "threads": args.threads, "started": now(), "load_at_start": load(),
           "finished": None, "load_at_end": None, "max_minutes": round(longest / 60, 1), "rows": []}
    for key, model, t in trials:
        entry = ENTRIES[key]
        started, load0, rows = now(), load(), []
        cap, cap_source = rnn_sequences(run["rows"], key, entry) if model == "rnn" else (None, "")
        batch = make_task(entry.task, entry.length).defaults.batch_size
        for seed in range(t.seeds):
            row = run_task(entry.task, model, entry.length, seed=seed, time_budget=t.budget,
                           max_steps=-(-cap // batch) if cap else None,
                           progress="log" if args.progress else "off")
            rows.append(row)
            print(f"{key} {model} seed {seed}: {row['wrong']}/{row['n_test']} wrong, loss {row['loss']:.4f}, "
                  f"{'solved' if row['solved'] else 'NOT solved'} ({row['stop_reason']}), "
                  f"{row['sequences']:,} sequences, {row['seconds']:.0f} s", flush=True)
        s = summarize(rows)
        s.update(entry=key, budget_per_trial=t.budget, sequence_cap=cap, sequence_cap_of=cap_source,
                 threads=args.threads, started=started,
                 load_at_start=load0, load_at_end=load())
        run["rows"].append(s)
        _write(run, md_path, json_path)  # after every row: a killed run keeps what it did, marked unfinished
    run.update(finished=now(), load_at_end=load())
    _write(run, md_path, json_path)
    print(open(md_path, encoding="utf-8").read())
    return 0


def header(run: dict) -> list[str]:
    m = run["machine"]
    state = (f"finished {run['finished']}" if run["finished"] else
             f"UNFINISHED: {len(run['rows'])} rows written, the run was still going or was stopped")
    what = {"quick": "a `--quick` run (the subset " + ", ".join(run["entries"]) + ", short budgets), not the "
                     "whole table",
            "subset": "a run of the entries " + ", ".join(run["entries"]) + " only",
            "full": "a full run of every entry"}[run["mode"]]
    loads = ", ".join(f"{s['entry']}/{s['model']} {s['load_at_start']:.1f}→{s['load_at_end']:.1f}" for s in run["rows"])
    return [
        "# Hochreiter & Schmidhuber (1997) long-time-lag experiments: LSTM vs plain RNN",
        "",
        f"Generated by `benchmarks/paper_1997.py{' --quick' if run['mode'] == 'quick' else ''}`: {what}; every row "
        "below comes from this one run.",
        f"Machine: {m['processor']}, {m['cpus']} CPUs visible, {m['platform']}, Python {m['python']}, torch "
        f"{m['torch']}; {run['threads']} torch thread(s). Started {run['started']}, {state}; "
        f"{sum(s['seconds'] for s in run['rows']) / 60:.1f} min of training.",
        f"1-minute load average (os.getloadavg) at the start / end of the run: {run['load_at_start']:.1f} / "
        + (f"{run['load_at_end']:.1f}" if run["load_at_end"] is not None else "—")
        + f"; per row, start→end: {loads}.",
        *missing_line(run),
        "Time budget per trial: " + ", ".join(f"{s['entry']}/{s['model']} {s['budget_per_trial']:.0f} s"
                                             for s in run["rows"]) + ".",
        "",
        "Training: Adam(W) on mini-batches, gradient clipping; stop at the first validation check that meets",
        "the criterion. 'training sequences' counts sequences seen up to that check (the paper: online SGD,",
        "one sequence per update).",
    ]


def missing_line(run: dict) -> list[str]:
    """For a partial run: the entries it leaves out and what the full run costs at most."""
    missing = [key for key in ENTRIES if key not in run["entries"]]
    if run["mode"] == "full" or not missing:
        return []
    full = sum(t.seeds * t.budget for _, _, t in plan(list(ENTRIES), list(MODELS), quick=False))
    return [f"Not in this run: {', '.join(missing)}; the full table (`python benchmarks/paper_1997.py`) is capped "
            f"at {full / 60:.0f} min of training (trials stop earlier when solved, plain RNN trials also at their "
            f"sequence cap); it took 42 min at one thread on a 2-core machine."]


def _write(run: dict, md_path: str, json_path: str) -> None:
    rows = run["rows"]
    notes = [f"- {s['describe']}: {NOTES[s['entry']]}" for s in rows if s["model"] == "lstm" and NOTES.get(s["entry"])]
    notes += [line for s in rows for line in recipe_lines(s)]
    notes += [line for s in rows for line in seed_lines(s)] + GENERAL_NOTES
    text = "\n".join([*header(run), "", markdown_table(rows), "", "Notes:", *notes, ""])
    _atomic(md_path, text)
    _atomic(json_path, json.dumps(run, indent=1))


def _atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
