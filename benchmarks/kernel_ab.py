"""A/B of one of the fused kernel's switches: the same lk.LSTM with it on and off, interleaved.

    --knob concurrency  at two threads a bidirectional layer's two directions run at once (inference
                        and training) and a unidirectional stack's layers as a wavefront (inference);
                        off (set_concurrency("off")) runs them in order, each step split across the
                        threads. Default shapes S6, S7, S8.
    --knob avx512       where the CPU has AVX-512, the register tiles take 8 rows at a time in zmm
                        registers; off (set_avx512("off")) keeps the AVX2 tiles. The results are bit
                        for bit the same; only the time moves. Default shapes S1, S3, S7.
    --knob fused_projection
                        the tiled steps take x_t W_ih^T into their own register tiles, one chain of
                        multiply-adds per pre-activation; off (set_fused_projection("off")) runs the
                        input projection as a pass of its own by chunks of steps, added into the
                        steps' products. Equal to float32's precision. Default shapes S1, S3, S7.
    --knob row_split    at two or more threads a tiled forward gives each thread its own batch rows
                        for every step, no join between steps; off (set_row_split("off")) splits each
                        step's hidden units across the threads. Bit for bit the same. Default shapes
                        S1, S2, S3, S4.
    --knob grad_tiles   backward's input and weight gradients (dX = dG W_ih, dW += dGᵀ X and dGᵀ
                        h_{t-1}, by chunks of steps) run on the register tiles; off
                        (set_grad_tiles("off")) runs them as MKL's sgemm. Equal to float32's
                        precision. Default shapes S1, S3, S7 (inference does not change).

For each shape (docs/explanation/speed.md) it times a training step (forward + backward) and a
no-grad forward with the switch off and on, alternating, and prints the medians and the ratio
(off / on; > 1: the switch makes it faster). Wall clock, or with --clock cpu this thread's CPU time
(needs --threads 1); run it on a quiet machine.

    PYTHONPATH=src python benchmarks/kernel_ab.py                                  # concurrency
    PYTHONPATH=src python benchmarks/kernel_ab.py --knob avx512 --threads 1 --clock cpu
    PYTHONPATH=src python benchmarks/kernel_ab.py --shapes S8 --repeats 30
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "src"))
sys.path.insert(0, _HERE)

import lstmkit as lk  # noqa: E402
from lstmkit.kernels import fused  # noqa: E402
from speed import SHAPES as _SIZES, STACKS  # noqa: E402

# (T, B, I, H, layers, bidirectional): speed.py's shapes with their stacks
SHAPES = {name: (*size, *STACKS.get(name, (1, False))) for name, size in _SIZES.items()}
KNOBS = {  # name: (the extension's setter, its "on" mode, default shapes)
    "concurrency": ("set_concurrency", "auto", "S6,S7,S8"),
    "avx512": ("set_avx512", "auto", "S1,S3,S7"),
    "fused_projection": ("set_fused_projection", "auto", "S1,S3,S7"),
    "row_split": ("set_row_split", "auto", "S1,S2,S3,S4"),
    "grad_tiles": ("set_grad_tiles", "auto", "S1,S3,S7"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--knob", choices=list(KNOBS), default="concurrency", help="which switch to A/B")
    p.add_argument("--shapes", help="comma-separated subset of S1..S8 (default: the knob's)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved repeats per mode (median reported)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the concurrency runs at 2 or 3)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time, or this thread's CPU time")
    args = p.parse_args(argv)
    setter_name, on_mode, default_shapes = KNOBS[args.knob]
    shapes = [s for s in (args.shapes or default_shapes).split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"--shapes takes {', '.join(SHAPES)}; got {', '.join(unknown)}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.clock == "cpu" and args.threads != 1:
        p.error(f"--clock cpu times one thread, so it needs --threads 1, got --threads {args.threads}")
    ext = fused.load_extension()
    if ext is None:
        print(f"the fused kernel is not available: {fused.build_error()}", file=sys.stderr)
        return 1
    setter = getattr(ext, setter_name)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(f"{args.knob}: threads {args.threads}, {args.clock} clock, load average {os.getloadavg()[0]:.1f}, "
          f"{args.repeats} interleaved repeats")
    for name in shapes:
        T, B, I, H, L, bidirectional = SHAPES[name]
        torch.manual_seed(0)
        model = lk.LSTM(I, H, L, bidirectional=bidirectional)
        x = torch.randn(T, B, I)
        times = {(mode, part): [] for mode in ("off", on_mode) for part in ("train", "inference")}
        try:
            for _ in range(args.repeats + 1):  # the first round warms up
                for mode in ("off", on_mode):
                    setter(mode)
                    t0 = clock()
                    out, (h, _) = model(x)
                    (out.sum() + h.sum()).backward()
                    times[mode, "train"].append(clock() - t0)
                    with torch.no_grad():
                        t0 = clock()
                        model(x)
                        times[mode, "inference"].append(clock() - t0)
        finally:
            setter(on_mode)
        for part in ("train", "inference"):
            off, on = (1e3 * statistics.median(times[m, part][1:]) for m in ("off", on_mode))
            print(f"{name} {part:9s} off {off:8.2f} ms   on {on:8.2f} ms   {off / on:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
