"""torch.ao.quantization.quantize_dynamic on a model holding lk.LSTM, beside the same model with
torch.nn.LSTM: the int8 error against float32, and inference time.

For each size, one model (LSTM + Linear head) is built with lk.LSTM and a twin with torch.nn.LSTM
holding the same weights; both go through ``quantize_dynamic(model, {nn.LSTM, nn.Linear})``.
Printed per size:
  err lk / err torch   max |y_int8 - y_float32| over the outputs, and the same relative to max |y|
  same                 whether the two int8 models agree exactly (lstmkit hands torch's quantized
                       LSTM the same weights, so they should)
  ms                   median forward time of: lk float32 (backend auto), torch float32, int8
                       (the methods take turns in one run; ratios are over lk float32)

    PYTHONPATH=src python benchmarks/quantize_dynamic.py
    PYTHONPATH=src python benchmarks/quantize_dynamic.py --sizes 64x256x2 --T 100 --B 16 --reps 15
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

import lstmkit as lk


class Model(nn.Module):
    def __init__(self, lstm: nn.Module, hidden: int):
        super().__init__()
        self.lstm, self.head = lstm, nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


def _time(fn, x, reps_inner: int = 3) -> float:
    t0 = time.perf_counter()
    for _ in range(reps_inner):
        fn(x)
    return (time.perf_counter() - t0) / reps_inner * 1e3


def run(size: str, T: int, B: int, reps: int) -> None:
    I, H, L = (int(v) for v in size.split("x"))
    torch.manual_seed(0)
    ours = Model(lk.LSTM(I, H, num_layers=L), H).eval()
    ref = Model(nn.LSTM(I, H, num_layers=L), H).eval()
    ref.load_state_dict(ours.state_dict())
    spec = {nn.LSTM, nn.Linear}
    q_ours, q_ref = quantize_dynamic(ours, spec), quantize_dynamic(ref, spec)
    assert type(q_ours.lstm) is torch.ao.nn.quantized.dynamic.LSTM, type(q_ours.lstm)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        y = ours(x)
        y_ref = ref(x)
        yq, yq_ref = q_ours(x), q_ref(x)
        err, err_ref = (yq - y).abs().max().item(), (yq_ref - y_ref).abs().max().item()
        scale = y.abs().max().item()
        same = torch.equal(yq, yq_ref)
        methods = {"lk f32": ours, "torch f32": ref, "int8": q_ours}
        times: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(reps):  # round-robin: load drifts hit every method alike
            for name, m in methods.items():
                times[name].append(_time(m, x))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["lk f32"]
    print(f"{size:>12}  T={T} B={B}  err lk {err:.2e} ({err / scale:.1%})  err torch {err_ref:.2e} "
          f"({err_ref / scale:.1%})  same={same}  "
          + "  ".join(f"{k} {v:.2f} ms ({v / base:.2f}x)" for k, v in med.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["32x128x1", "64x256x2"], help="IxHxL")
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's move to torchao
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor")  # the same move, per call
    for size in args.sizes:
        run(size, args.T, args.B, args.reps)


if __name__ == "__main__":
    main()
