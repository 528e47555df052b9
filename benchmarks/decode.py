"""One-step calls (T = 1, carried state, no grad): the decoding loop of text generation and beam search.

lk.LSTM (auto backend: the fused kernel on CPU) against torch.nn.LSTM with the same weights, and
lk.LSTM with layer_norm=True (no torch counterpart), at a few batch sizes (beam widths, streams).
Methods take turns within each repeat; figures are medians, ratios are nn.LSTM time / lk time.

    PYTHONPATH=src python benchmarks/decode.py                       # 256 -> 512, batches 1, 5, 32
    PYTHONPATH=src python benchmarks/decode.py --size 512x1024 --batches 8 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lstmkit as lk


def per_call_us(model, x, state, calls: int) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(calls):
            _, state = model(x, state)
        return (time.perf_counter() - t0) / calls * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x512", help="input_size x hidden_size (default 256x512)")
    ap.add_argument("--batches", default="1,5,32", help="comma-separated batch sizes (default 1,5,32)")
    ap.add_argument("--calls", type=int, default=500, help="calls per timing (default 500)")
    ap.add_argument("--repeats", type=int, default=7, help="timings per method (default 7)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args(argv)
    I, H = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nn = torch.nn.LSTM(I, H).eval()
    lk_plain = lk.LSTM(I, H).eval()
    lk_plain.load_state_dict(nn.state_dict())
    lk_ln = lk.LSTM(I, H, layer_norm=True).eval()
    print(f"one-step calls, {I} -> {H}, {args.threads} thread(s), {args.calls} calls per timing, median of {args.repeats}")
    print(f"{'batch':>5} {'nn.LSTM us':>11} {'lk us':>8} {'lk LayerNorm us':>16} {'nn / lk':>8}")
    for B in (int(b) for b in args.batches.split(",")):
        x = torch.randn(1, B, I)
        state = (torch.zeros(1, B, H), torch.zeros(1, B, H))
        models = {"nn": nn, "lk": lk_plain, "ln": lk_ln}
        for m in models.values():  # warm-up: kernel build, weight caches
            per_call_us(m, x, state, 20)
        samples: dict = {k: [] for k in models}
        for _ in range(args.repeats):
            for k, m in models.items():
                samples[k].append(per_call_us(m, x, state, args.calls))
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"{B:5d} {med['nn']:11.0f} {med['lk']:8.0f} {med['ln']:16.0f} {med['nn'] / med['lk']:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
