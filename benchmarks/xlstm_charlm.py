"""Character LM at equal training time: RNN, LSTM, sLSTM, mLSTM on the embedded Shakespeare slice.

    PYTHONPATH=src python benchmarks/xlstm_charlm.py                  # 200 CPU-seconds each, 1 thread
    PYTHONPATH=src python benchmarks/xlstm_charlm.py --budget 60 --models lstm,slstm

Each model is ``lstmkit train text --model M`` with the task's defaults but one layer of
--hidden_size [256] cells (sLSTM / mLSTM with 4 heads; embedding 64, dropout 0.1, 32 streams × 64
characters, AdamW 3e-3, 100 warm-up steps, cosine to 5 %), on --threads threads, one model at a
time. Equal time, not equal steps: the cosine schedule needs its step count in advance, so each
model's step count is --budget divided by its measured seconds per step. Time is CPU time of
the training process (on one thread: the wall-clock time the run takes on an otherwise idle
core), because on a shared machine wall-clock time measures the other jobs as much as the model:
a calibration in wall-clock seconds followed by a run during which the load changed gave one
model twice its share. The seconds per step are measured in this process just before the
model's run (--calibrate steps of the same forward, backward, clipping and AdamW step on the
same batches, after 3 warm-up steps). Each run's CPU and wall-clock time (the whole process:
start-up, training, the final evaluation and the n-gram baseline) are recorded beside its
validation nats/char, with the machine, threads and the load average before and after, in --json
and the Markdown table next to it (written atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lstmkit._io import atomic_write_text
from lstmkit.apps.text import TextConfig, TextTask

MODELS = ("rnn", "lstm", "slstm", "mlstm")
ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(model_name: str, hidden: int, threads: int, steps: int) -> tuple[float, float]:
    """CPU and wall-clock seconds of one training step of the text task's model, as the Trainer runs it."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    task = TextTask(TextConfig(model=model_name, hidden_size=hidden))
    model = task.build_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    state = None

    def step(k: int):
        nonlocal state
        batch = task.global_batch(k, 32)
        loss, state = task.loss(model, batch, state)
        state = tuple(s.detach() for s in state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for k in range(3):
        step(k)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for k in range(3, 3 + steps):
        step(k)
    return (time.process_time() - cpu0) / steps, (time.perf_counter() - wall0) / steps


def train(model_name: str, steps: int, args, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "lstmkit", "train", "text", "--model", model_name, "--hidden_size", str(args.hidden_size),
           "--run_dir", str(run_dir), "--train.steps", str(steps), "--train.eval_every", str(steps),
           "--train.threads", str(args.threads), "--train.progress", "off", "--train.plot", "false"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if '"split": "eval"' in line]
    last = evals[-1]
    ngram = next((v for k, v in last.items() if re.fullmatch(r"order\d+_ngram_loss", k)), None)
    return dict(model=model_name, steps=steps, valid_nats=last["loss"], bits_per_char=last["bits_per_char"],
                ngram_nats=ngram, wall_s=round(wall, 1),
                cpu_s=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
                command=" ".join(["lstmkit"] + cmd[3:]))


def markdown(result: dict) -> str:
    a = result["args"]
    lines = [f"# Character LM at equal training time ({a['budget']:.0f} CPU-seconds per model)", "",
             f"`{result['command']}`", "",
             f"Machine: {result['machine']}; torch {result['torch']}; {a['threads']} thread(s) per run, one run at a "
             "time. The machine was shared with other engineers' jobs during the runs (load averages below, on "
             f"{os.cpu_count()} cores), so the budget is CPU time (on one thread: the wall-clock time of an idle "
             "core), not wall-clock time: each model's step count is the budget over its CPU seconds per step, "
             f"measured just before its run ({a['calibrate']} steps). The whole process's CPU and wall-clock "
             "time (start-up, training, evaluation, n-gram) are listed.", "",
             f"Every run: `lstmkit train text --model M --hidden_size {a['hidden_size']} --train.steps N "
             f"--train.eval_every N --train.threads {a['threads']}` (the task's other defaults).", "",
             "| model | CPU s/step | steps | valid nats/char | bits/char | process CPU s | process wall s | load before → after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['cpu_s_per_step']:.3f} | {r['steps']} | {r['valid_nats']:.3f} | "
                     f"{r['bits_per_char']:.3f} | {r['cpu_s']} | {r['wall_s']} | {r['load_before']:.1f} → {r['load_after']:.1f} |")
    ngram = next((r["ngram_nats"] for r in result["rows"] if r["ngram_nats"] is not None), None)
    if ngram is not None:
        lines.append(f"| order-3 n-gram | | | {ngram:.3f} | | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--budget", type=float, default=200.0, help="training CPU-seconds per model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--calibrate", type=int, default=20, help="timed steps that set each model's step count")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "xlstm_charlm.json")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        p.error(f"--models: expected names from {', '.join(MODELS)}, got {', '.join(bad)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="xlstm_charlm_") as tmp:
        for name in models:
            load_before = os.getloadavg()[0]
            cpu, wall = seconds_per_step(name, args.hidden_size, args.threads, args.calibrate)
            steps = max(1, round(args.budget / cpu))
            print(f"{name}: {cpu:.3f} CPU s/step ({wall:.3f} wall) -> {steps} steps", flush=True)
            row = train(name, steps, args, Path(tmp) / name)
            row.update(cpu_s_per_step=cpu, wall_s_per_step_calibration=wall, load_before=load_before,
                       load_after=os.getloadavg()[0])
            print(f"{name}: valid {row['valid_nats']:.3f} nats/char, {row['wall_s']} s wall, {row['cpu_s']} s CPU", flush=True)
            rows.append(row)
    result = dict(command="python benchmarks/xlstm_charlm.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  machine=f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or platform.platform()})",
                  torch=torch.__version__, args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  rows=rows)
    atomic_write_text(str(args.json), json.dumps(result, indent=1))
    atomic_write_text(str(args.json.with_suffix(".md")), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
