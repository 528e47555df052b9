"""Speed of lstmkit's xLSTM cells, measured side by side in one run (medians of interleaved repeats).

    PYTHONPATH=src python benchmarks/xlstm_speed.py                      # everything, 5 repeats
    PYTHONPATH=src python benchmarks/xlstm_speed.py --part slstm --shapes S1,S3 --repeats 9
    PYTHONPATH=src python benchmarks/xlstm_speed.py --part mlstm --lengths 64,256,1024

Parts:
  slstm   at the reference shapes S1–S5 (one layer, float32, one head), forward without grad and
          a training step (forward + backward of out.sum()), interleaved A B C A B C …:
            sLSTM-fused   lk.sLSTM(backend="fused"): the C++ kernel with hand-written BPTT
            LSTM-fused    lk.LSTM(backend="fused") of the same sizes (the classic cell's kernel)
            sLSTM-ref     lk.sLSTM(backend="reference"): the Python loop of torch ops with autograd
          printed ratios: sLSTM-fused / LSTM-fused time (the cost of exponential gating and the
          normalizer and stabilizer states; target <= 1.3) and sLSTM-ref / sLSTM-fused time.
  mlstm   lk.mLSTM's three forms as T grows (64 … 8192) at small sizes (B=2, I=H=64, 2 heads),
          forward without grad and a training step: chunkwise (chunk 64), parallel (skipped where
          its (B, NH, T, T) matrices would pass --parallel-limit elements), recurrent; ratios
          against chunkwise.

Machines are shared and noisy: compare ratios within one run, never absolute times across runs.
On a machine busier than its cores, --clock cpu times each call by the CPU time the process used
(time.process_time) instead of the wall clock, so waiting for a core counts for neither side; it is
meant for --threads 1 (with more threads it also counts the pool's threads spinning between regions).
A JSON copy of every figure goes to --json (default benchmarks/results/xlstm_speed.json), one
entry per part and thread count ("slstm threads=1", ...) with the command, clock and load average
it ran with.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import lstmkit as lk

SHAPES = {  # name: (T steps, B batch, I input, H hidden), one layer, float32
    "S1": (100, 32, 256, 256),
    "S2": (100, 64, 512, 512),
    "S3": (200, 16, 32, 128),
    "S4": (50, 128, 1024, 1024),
    "S5": (1000, 1, 8, 64),
}
MLSTM_SIZES = dict(B=2, I=64, H=64, heads=2, chunk=64)


def _step(model, x, train: bool) -> Callable[[], None]:
    def run():
        if train:
            model.zero_grad(set_to_none=True)
            out = model(x)[0]
            out.sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return run


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Median ms of each fn, timed in turns (A B C A B C …) after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append((clock() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def slstm_part(shapes: list[str], repeats: int, log=print, clock=time.perf_counter) -> list[dict]:
    rows = []
    for name in shapes:
        T, B, I, H = SHAPES[name]
        torch.manual_seed(0)
        x = torch.randn(T, B, I)
        models = {
            "sLSTM-fused": lk.sLSTM(I, H, backend="fused"),
            "LSTM-fused": lk.LSTM(I, H, backend="fused"),
            "sLSTM-ref": lk.sLSTM(I, H, backend="reference"),
        }
        for mode in ("forward", "train"):
            ms = interleaved({k: _step(m, x, mode == "train") for k, m in models.items()}, repeats, clock)
            row = dict(shape=name, T=T, B=B, I=I, H=H, mode=mode, ms=ms,
                       slstm_vs_lstm=ms["sLSTM-fused"] / ms["LSTM-fused"],
                       reference_vs_fused=ms["sLSTM-ref"] / ms["sLSTM-fused"])
            rows.append(row)
            log(f"{name} {mode:7s}  sLSTM-fused {ms['sLSTM-fused']:8.2f} ms  LSTM-fused {ms['LSTM-fused']:8.2f} ms  "
                f"sLSTM-ref {ms['sLSTM-ref']:8.2f} ms  |  sLSTM/LSTM {row['slstm_vs_lstm']:.2f}x  "
                f"ref/fused {row['reference_vs_fused']:.2f}x")
    return rows


def mlstm_part(lengths: list[int], repeats: int, parallel_limit: int, log=print, clock=time.perf_counter) -> list[dict]:
    s = MLSTM_SIZES
    rows = []
    for T in lengths:
        torch.manual_seed(0)
        x = torch.randn(T, s["B"], s["I"])
        model = lk.mLSTM(s["I"], s["H"], num_heads=s["heads"], chunk_size=s["chunk"])
        forms = ["chunkwise", "recurrent"]
        if s["B"] * s["heads"] * T * T <= parallel_limit:
            forms.insert(1, "parallel")

        def with_form(form, train):
            step = _step(model, x, train)

            def run():
                model.form = form
                step()
            return run

        for mode in ("forward", "train"):
            reps = repeats if T <= 1024 else max(1, repeats // 2)
            ms = interleaved({f: with_form(f, mode == "train") for f in forms}, reps, clock)
            ratios = {f: ms[f] / ms["chunkwise"] for f in forms}
            rows.append(dict(T=T, mode=mode, ms=ms, vs_chunkwise=ratios, **s))
            cells = "  ".join(f"{f} {ms[f]:9.2f} ms ({ratios[f]:.2f}x)" for f in forms)
            log(f"mLSTM T={T:5d} {mode:7s}  {cells}" + ("" if "parallel" in forms else "  parallel skipped (memory)"))
    return rows


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "slstm", "mlstm"], default="all")
    ap.add_argument("--shapes", default="S1,S2,S3,S4,S5", help="reference shapes for the sLSTM part")
    ap.add_argument("--lengths", default="64,256,1024,4096,8192", help="sequence lengths for the mLSTM part")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: the process's CPU time (busy machines, --threads 1)")
    ap.add_argument("--parallel-limit", type=int, default=2 ** 25, help="largest B·NH·T² the parallel form is run at")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "xlstm_speed.json")
    args = ap.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    torch.set_num_threads(args.threads)
    # One entry per part and thread count; a run keeps the other entries' last figures in the file.
    result = json.loads(args.json.read_text()) if args.json.exists() else {}
    run = dict(torch=torch.__version__, threads=args.threads, clock=args.clock, machine=platform.machine(),
               repeats=args.repeats,
               load_average_at_start=os.getloadavg()[0],
               command=" ".join(["python", "benchmarks/xlstm_speed.py", *(argv if argv is not None else sys.argv[1:])]))
    if args.part in ("all", "slstm"):
        result[f"slstm threads={args.threads}"] = dict(run, rows=slstm_part(shapes, args.repeats, clock=CLOCKS[args.clock]))
    if args.part in ("all", "mlstm"):
        result[f"mlstm threads={args.threads}"] = dict(run, rows=mlstm_part([int(v) for v in args.lengths.split(",")], args.repeats,
                                                    args.parallel_limit, clock=CLOCKS[args.clock]))
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
