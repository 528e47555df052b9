"""Translation figures: date normalization exact match, and gettext EN→FR BLEU beside copying the source.

    python benchmarks/translate_report.py                     # train both (one thread), then score
    python benchmarks/translate_report.py --only dates        # just the dates run
    python benchmarks/translate_report.py --reuse             # score run folders already trained here

Each run is trained through the same code path as ``lstmkit train translate`` with the
settings below (one CPU thread), into runs/translate_dates and runs/translate_gettext (or
--runs DIR); then its held-out test split is decoded greedily and with beam search. Printed:
sentence counts, exact match (dates), BLEU and the copy-the-source baseline BLEU (gettext),
and the wall time of training and of each scoring pass. A JSON copy goes to
benchmarks/results/translate.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from lstmkit.train.config import parse_run_config
from lstmkit.train.run import load_run, make_trainer

# The settings the README's figures come from; edit them here, nowhere else.
RUNS = {
    "dates": {"task": "translate", "data": "dates", "hidden_size": 128, "embedding_size": 32, "dropout": 0.0,
              "label_smoothing": 0.0, "eval_size": 500,
              "train": {"steps": 2000, "eval_every": 500, "batch_size": 64, "lr": 2e-3, "threads": 1, "seed": 0,
                        "progress": "log", "log_every": 100}},
    "gettext": {"task": "translate", "data": "gettext", "hidden_size": 256, "embedding_size": 128, "dropout": 0.2,
                "label_smoothing": 0.1, "max_vocab": 8000, "eval_size": 300,
                "train": {"steps": 3200, "eval_every": 800, "batch_size": 64, "lr": 2e-3, "threads": 1, "seed": 0,
                          "progress": "log", "log_every": 100}},
}
BEAMS = {"dates": (1, 5), "gettext": (1, 5)}


def train(name: str, run_dir: str, reuse: bool) -> float:
    """Train (unless reusing a finished run); returns training wall seconds (0 when reused)."""
    if reuse and os.path.isfile(os.path.join(run_dir, "model.safetensors")):
        return 0.0
    cfg = parse_run_config(dict(RUNS[name], run_dir=run_dir))
    t0 = time.perf_counter()
    make_trainer(cfg).fit()
    return time.perf_counter() - t0


def score(name: str, run_dir: str) -> dict:
    _, task, model = load_run(run_dir)
    out = {"run_dir": run_dir}
    for beam in BEAMS[name]:
        t0 = time.perf_counter()
        s = task.score(model, "test", beam=beam)
        s["seconds"] = round(time.perf_counter() - t0, 1)
        out[f"beam{beam}"] = s
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=sorted(RUNS), action="append", help="run only this part (repeatable)")
    p.add_argument("--runs", default="runs", help="folder for the run folders (default runs)")
    p.add_argument("--reuse", action="store_true", help="score finished run folders instead of training again")
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "translate.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {"threads": 1, "cpu_count": os.cpu_count()}
    for name in args.only or sorted(RUNS):
        run_dir = os.path.join(args.runs, f"translate_{name}")
        seconds = train(name, run_dir, args.reuse)
        r = score(name, run_dir)
        r["train_seconds"] = round(seconds, 1)
        results[name] = r
        print(f"\n== {name}  ({run_dir}; training {seconds / 60:.1f} min on 1 thread"
              f"{', reused' if not seconds else ''})")
        for beam in BEAMS[name]:
            s = r[f"beam{beam}"]
            how = "greedy" if beam == 1 else f"beam {beam}"
            line = f"  test, {how:<7} {int(s['sentences'])} sentences: exact match {100 * s['exact_match']:.2f} %"
            if "bleu" in s:
                line += f", BLEU {s['bleu']:.2f} (copy the source: {s['copy_bleu']:.2f})"
            print(line + f"  [{s['seconds']} s]")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, args.json)  # atomic: a killed run leaves the previous file intact
    print(f"\n{args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
