"""Parity length generalization (the xLSTM paper's formal-language test) for RNN, LSTM, sLSTM, mLSTM.

    PYTHONPATH=src python benchmarks/xlstm_parity.py                       # all four, 1 seed
    PYTHONPATH=src python benchmarks/xlstm_parity.py --models slstm,lstm --steps 3000 --seeds 0,1,2

Task: a sequence of bits (one-hot, 2 inputs); the target is its parity (sum mod 2), read at the
sequence's own last step. Training, by default (--supervise every), also asks for the parity of
every prefix at every step — denser supervision than the paper's one label per sequence, which
none of the four cells learned from in 3,000 steps here (all at chance); --supervise last trains
on the final label only; --curriculum STEPS starts training on lengths 3–4 and grows the
longest to 40 over the first STEPS steps (the tried remedy for final-label supervision).
Accuracy is always that of the final label. Training lengths are drawn uniformly from 3–40, test lengths from
40–256 (longer than anything seen in training: the test is whether the cell learned to track
the state, not to count to 40). Each model: one recurrent layer of --hidden units, a linear
readout of 2 classes, AdamW, cross-entropy, --steps batches of --batch sequences; test accuracy
over --test sequences (chance 0.5). Prints a table and writes JSON (atomically) to --json, and the
table as Markdown next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import lstmkit as lk

MODELS = ("rnn", "lstm", "slstm", "mlstm")


def parity_batch(n: int, lo: int, hi: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (n, T, 2) one-hot bits right-padded with zeros, lengths (n,), prefix parities (n, T)
    (padding: -100, cross_entropy's ignore_index); the sequence's parity is at its last step."""
    lengths = torch.randint(lo, hi + 1, (n,), generator=gen)
    T = int(lengths.max())
    bits = torch.randint(0, 2, (n, T), generator=gen)
    live = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (n, T)
    bits = bits * live
    x = F.one_hot(bits, 2).float() * live.unsqueeze(-1)
    prefix = torch.where(live, bits.cumsum(1) % 2, torch.full_like(bits, -100))
    return x, lengths, prefix


class Classifier(nn.Module):
    """One recurrent layer read at each sequence's last step, then a linear layer to 2 classes."""

    def __init__(self, kind: str, hidden: int, heads: int) -> None:
        super().__init__()
        if kind == "rnn":
            self.cell = lk.RNN(2, hidden, batch_first=True)
        elif kind == "lstm":
            self.cell = lk.LSTM(2, hidden, batch_first=True)
        elif kind == "slstm":
            self.cell = lk.sLSTM(2, hidden, batch_first=True, num_heads=heads)
        else:
            self.cell = lk.mLSTM(2, hidden, batch_first=True, num_heads=heads)
        self.readout = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits of every step's prefix parity: (B, T, 2)."""
        return self.readout(self.cell(x, lengths=lengths)[0])


def last_step(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, 2) -> (B, 2): each sequence's own last step."""
    return logits[torch.arange(logits.shape[0]), lengths - 1]


def curriculum_max_length(step: int, steps: int, lo: int = 4, hi: int = 40) -> int:
    """The longest training length at a step: lo at the start, growing linearly to hi over the
    first ``steps`` steps (hi throughout when steps is 0: no curriculum)."""
    if steps <= 0:
        return hi
    return min(hi, lo + (hi - lo) * step // steps)


def run(kind: str, seed: int, args) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Classifier(kind, args.hidden, args.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    t0 = time.perf_counter()
    losses = []
    for step in range(args.steps):
        x, lengths, y = parity_batch(args.batch, 3, curriculum_max_length(step, args.curriculum), gen)
        logits = model(x, lengths)
        if args.supervise == "every":
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        else:
            loss = F.cross_entropy(last_step(logits, lengths), last_step(y.unsqueeze(-1), lengths).squeeze(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    test_gen = torch.Generator().manual_seed(10_000 + seed)
    correct = {"train_range": 0, "test": 0}
    with torch.no_grad():
        for name, lo, hi in (("train_range", 3, 40), ("test", 40, 256)):
            for _ in range(args.test // 256):
                x, lengths, y = parity_batch(256, lo, hi, test_gen)
                guess = last_step(model(x, lengths), lengths).argmax(-1)
                correct[name] += int((guess == y[torch.arange(256), lengths - 1]).sum())
    n = (args.test // 256) * 256
    return dict(model=kind, seed=seed, supervise=args.supervise, curriculum=args.curriculum, train_seconds=round(seconds, 1), final_loss=statistics.mean(losses[-50:]),
                acc_train_lengths=correct["train_range"] / n, acc_test_40_256=correct["test"] / n, n_test=n)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Parity: train lengths 3–40, test lengths 40–256", "", f"`{command}`", "",
             "Accuracy of the final parity (chance 0.5); see the script's docstring for the setup.", "",
             "| model | seed | accuracy 3–40 | accuracy 40–256 | final train loss | train s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['seed']} | {r['acc_train_lengths']:.3f} | {r['acc_test_40_256']:.3f} | "
                     f"{r['final_loss']:.3f} | {r['train_seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4, help="heads of sLSTM and mLSTM")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--supervise", choices=["every", "last"], default="every",
                    help="train on every prefix's parity (default) or on the final one only")
    ap.add_argument("--curriculum", type=int, default=0, metavar="STEPS",
                    help="grow the longest training length from 4 to 40 over the first STEPS steps (0: none)")
    ap.add_argument("--test", type=int, default=1024, help="test sequences per length range (multiple of 256)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "xlstm_parity.json")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    if args.test < 256:
        ap.error(f"--test must be at least 256, got {args.test}")
    torch.set_num_threads(args.threads)
    command = " ".join(["python", "benchmarks/xlstm_parity.py", *(argv if argv is not None else sys.argv[1:])])
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for kind in models:
            r = run(kind, seed, args)
            rows.append(r)
            print(f"{kind:6s} seed {seed}: accuracy 3–40 {r['acc_train_lengths']:.3f}, 40–256 {r['acc_test_40_256']:.3f} "
                  f"(loss {r['final_loss']:.3f}, {r['train_seconds']} s)", flush=True)
    write_atomic(args.json, json.dumps(dict(command=command, torch=torch.__version__, rows=rows), indent=1))
    write_atomic(args.json.with_suffix(".md"), markdown(rows, command))
    print(f"wrote {args.json} and {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
