"""Eager against torch.compile for the text app's model, on lk.LSTM and on torch.nn.LSTM.

The model is the char-LM's shape: embedding -> 2-layer LSTM -> linear head. Two jobs:
a training step (forward, cross-entropy, backward; T=64, B=32) and one-step decoding (T=1 with
carried state, no grad, B=5). Four models with the same weights take turns within each repeat:
lk eager, lk compiled (fullgraph=True: lk.LSTM has no graph break), nn eager and nn compiled
(torch.nn.LSTM cannot be compiled with fullgraph=True: dynamo leaves the LSTM out of the graph,
so "compiled" compiles what surrounds it). Figures are medians; ratios in one run.

    PYTHONPATH=src python benchmarks/compile_speed.py                  # inductor, 2 threads
    PYTHONPATH=src python benchmarks/compile_speed.py --json benchmarks/results/compile_speed.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import lstmkit as lk
from decode import per_call_us  # benchmarks/decode.py: one-step calls with carried state


class TextModel(nn.Module):
    def __init__(self, lstm_cls, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = lstm_cls(emb, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.head(out), state


def train_step_ms(model, ids, targets, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        logits, _ = model(ids)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
    return (time.perf_counter() - t0) / steps * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="training steps per timing")
    ap.add_argument("--calls", type=int, default=200, help="decoding calls per timing")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V, E, H, L, T, B, B_dec = 84, 64, 256, 2, 64, 32, 5
    lk_model = TextModel(lk.LSTM, V, E, H, L)
    nn_model = TextModel(nn.LSTM, V, E, H, L)
    nn_model.load_state_dict(lk_model.state_dict())
    models = {
        "lk eager": lk_model,
        "lk compiled": torch.compile(lk_model, fullgraph=True, backend=args.backend),
        "nn eager": nn_model,
        "nn compiled": torch.compile(nn_model, backend=args.backend),
    }
    ids, targets = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    step_ids = torch.randint(0, V, (B_dec, 1))
    state = (torch.zeros(L, B_dec, H), torch.zeros(L, B_dec, H))
    print(f"text model {V}-{E}-{L}x{H}-{V}, {args.threads} thread(s), backend {args.backend}; compiling ...")
    t0 = time.perf_counter()
    for m in models.values():  # compile and warm up both jobs (decoding recompiles for T=1)
        train_step_ms(m, ids, targets, 1)
        per_call_us(m, step_ids, state, 3)
    print(f"compiled and warmed up in {time.perf_counter() - t0:.0f} s")
    train: dict = {k: [] for k in models}
    decode: dict = {k: [] for k in models}
    for _ in range(args.repeats):
        for k, m in models.items():
            train[k].append(train_step_ms(m, ids, targets, args.steps))
            decode[k].append(per_call_us(m, step_ids, state, args.calls))
    med_t = {k: statistics.median(v) for k, v in train.items()}
    med_d = {k: statistics.median(v) for k, v in decode.items()}
    print(f"{'model':<12} {'train step ms':>14} {'decode step us':>15} {'train vs nn eager':>18} {'decode vs nn eager':>19}")
    for k in models:
        print(f"{k:<12} {med_t[k]:14.1f} {med_d[k]:15.0f} {med_t['nn eager'] / med_t[k]:17.2f}x "
              f"{med_d['nn eager'] / med_d[k]:18.2f}x")
    print(f"lk compiled / lk eager time: train {med_t['lk compiled'] / med_t['lk eager']:.2f}, "
          f"decode {med_d['lk compiled'] / med_d['lk eager']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "backend": args.backend, "train_ms": med_t,
                                         "decode_us": med_d, "samples": {"train": train, "decode": decode}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
