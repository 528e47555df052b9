"""The A/B of the stack's concurrency: the same lk.LSTM with it on and off, interleaved.

At two threads the fused kernel runs a bidirectional layer's two directions at once (inference and
training) and a unidirectional stack's layers as a wavefront (inference); set_concurrency("off")
runs the layers and directions in order instead, each step split across the threads. This times
both, alternating, for the stacked shapes S6–S8 (docs/explanation/speed.md), and prints the
medians and the ratio (in order / concurrent; > 1: the concurrency is faster). Wall clock; run it
on a quiet machine.

    PYTHONPATH=src python benchmarks/stack_concurrency.py                 # S6, S7, S8, 15 repeats
    PYTHONPATH=src python benchmarks/stack_concurrency.py --shapes S8 --repeats 30
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import lstmkit as lk  # noqa: E402
from lstmkit.kernels import fused  # noqa: E402

SHAPES = {"S6": (100, 32, 256, 256, 2, True), "S7": (100, 32, 256, 256, 2, False), "S8": (50, 16, 64, 128, 3, True)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="S6,S7,S8", help="comma-separated subset of S6,S7,S8")
    p.add_argument("--repeats", type=int, default=15, help="interleaved repeats per mode (median reported)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the concurrency runs at 2 or 3)")
    args = p.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"--shapes takes {', '.join(SHAPES)}; got {', '.join(unknown)}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    ext = fused.load_extension()
    if ext is None:
        print(f"the fused kernel is not available: {fused.build_error()}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}, {args.repeats} interleaved repeats")
    for name in shapes:
        T, B, I, H, L, bidirectional = SHAPES[name]
        torch.manual_seed(0)
        model = lk.LSTM(I, H, L, bidirectional=bidirectional)
        x = torch.randn(T, B, I)
        times = {(mode, part): [] for mode in ("off", "auto") for part in ("train", "inference")}
        try:
            for _ in range(args.repeats + 1):  # the first round warms up
                for mode in ("off", "auto"):
                    ext.set_concurrency(mode)
                    t0 = time.perf_counter()
                    out, (h, _) = model(x)
                    (out.sum() + h.sum()).backward()
                    times[mode, "train"].append(time.perf_counter() - t0)
                    with torch.no_grad():
                        t0 = time.perf_counter()
                        model(x)
                        times[mode, "inference"].append(time.perf_counter() - t0)
        finally:
            ext.set_concurrency("auto")
        for part in ("train", "inference"):
            off, on = (1e3 * statistics.median(times[m, part][1:]) for m in ("off", "auto"))
            print(f"{name} {part:9s} in order {off:8.2f} ms   concurrent {on:8.2f} ms   {off / on:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
