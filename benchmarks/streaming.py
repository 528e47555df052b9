"""Per-step latency of streaming (batch-1, one step per call) inference.

Compares, for the same weights, one step of:
  lstmkit      lstmkit.interop.StreamingLSTM(engine="torch").step (weight copies, torch.lstm_cell per layer)
  lstmkit-dec  StreamingLSTM's default engine where the kernel is built, "fused": lk.LSTM.decoder()
               of a frozen copy, every layer in one call of the fused whole-stack operator
  lstmkit-ort  StreamingLSTM(engine="onnxruntime").step: the same API, one session.run per step
  lk-fused     lk.LSTM(backend="fused") forward with T = 1 (the normal module path; if built)
  torch        torch.nn.LSTM forward with T = 1 and the carried (h, c)
  onnxruntime  InferenceSession.run of lstmkit's ONNX export with T = 1 and the carried (h, c)
  ort-int8     the same after lstmkit.interop.quantize_onnx (with --int8; also prints the int8
               outputs' deviation from float32 over a 200-step stream)

The methods take turns in one run (round-robin, each timing `--steps` consecutive steps per
turn, for `--reps` turns); the figures are medians over turns, and the ratios are each
method's median over lstmkit's, so machine load drifts hit every method alike. Threads are
pinned (default 1: at batch 1 a step is far too small to split across cores).

    PYTHONPATH=src python benchmarks/streaming.py                 # two default sizes
    PYTHONPATH=src python benchmarks/streaming.py --sizes 64x256x2 --steps 300 --reps 21 --int8
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import lstmkit as lk
from lstmkit.interop import StreamingLSTM, export_onnx, quantize_onnx, to_torch


def _ort_stepper(path: str, threads: int, x3: np.ndarray, L: int, P: int, H: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {"input": x3, "h0": np.zeros((L, 1, P), np.float32), "c0": np.zeros((L, 1, H), np.float32)}

    def step():
        _, feeds["h0"], feeds["c0"] = sess.run(None, feeds)
    return sess, step


def _int8_report(f32: str, i8: str, I: int, L: int, P: int, H: int) -> None:
    """Max |y_int8 - y_float32| over a 200-step stream of random inputs, and the file sizes."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((200, 1, 1, I)).astype(np.float32)
    ys = []
    for path in (f32, i8):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        h, c = np.zeros((L, 1, P), np.float32), np.zeros((L, 1, H), np.float32)
        out = []
        for x in xs:
            y, h, c = sess.run(None, {"input": x, "h0": h, "c0": c})
            out.append(y)
        ys.append(np.concatenate(out))
    dev = float(np.abs(ys[1] - ys[0]).max())
    print(f"  int8 vs float32 over 200 steps: max |dy| = {dev:.2e} (max |y| = {float(np.abs(ys[0]).max()):.2f}); "
          f"file {os.path.getsize(i8) / 1e3:.0f} kB vs {os.path.getsize(f32) / 1e3:.0f} kB")


def _methods(I: int, H: int, L: int, proj: int, threads: int, int8: bool, tmp: str):
    torch.manual_seed(0)
    model = lk.LSTM(I, H, num_layers=L, proj_size=proj, backend="reference").eval()
    P = proj or H
    x = torch.randn(1, I)
    methods = {}

    stream = StreamingLSTM(model, engine="torch")
    st = {"s": stream.initial_state(1)}

    def lstmkit_step():
        st["s"] = stream.step(x, st["s"])[1]
    methods["lstmkit"] = lstmkit_step

    try:
        from lstmkit.kernels import fused

        if fused.load_extension() is not None:
            fmodel = lk.LSTM(I, H, num_layers=L, proj_size=proj, backend="fused").eval()
            fmodel.load_state_dict(model.state_dict())
            fs = {"s": stream.initial_state(1)}
            x3 = x.unsqueeze(0)  # (T=1, B=1, I)

            def fused_step():
                fs["s"] = fmodel(x3, fs["s"])[1]
            methods["lk-fused"] = fused_step
            dec_stream = StreamingLSTM(fmodel, engine="fused")
            ds = {"s": stream.initial_state(1)}

            def decoder_step():
                ds["s"] = dec_stream.step(x, ds["s"])[1]
            methods["lstmkit-dec"] = decoder_step
    except Exception as e:  # the fused kernel is optional
        print(f"(lk-fused skipped: {type(e).__name__}: {e})")

    theirs = to_torch(model).eval()
    ts = {"s": stream.initial_state(1)}
    x3 = x.unsqueeze(0)

    def torch_step():
        ts["s"] = theirs(x3, ts["s"])[1]
    methods["torch"] = torch_step

    try:
        import onnxruntime  # noqa: F401

        f32 = os.path.join(tmp, "lstm.onnx")
        export_onnx(model, f32, initial_state=True)
        methods["onnxruntime"] = _ort_stepper(f32, threads, x3.numpy(), L, P, H)[1]
        ort_stream = StreamingLSTM(model, engine="onnxruntime", threads=threads)
        os_ = {"s": stream.initial_state(1)}

        def lstmkit_ort_step():
            os_["s"] = ort_stream.step(x, os_["s"])[1]
        methods["lstmkit-ort"] = lstmkit_ort_step
        if int8:
            i8 = os.path.join(tmp, "lstm.int8.onnx")
            quantize_onnx(f32, i8)
            methods["ort-int8"] = _ort_stepper(i8, threads, x3.numpy(), L, P, H)[1]
    except ImportError:
        print("(onnxruntime not installed: pip install 'lstmkit[onnx]')")
    return methods


def bench(I: int, H: int, L: int, proj: int, steps: int, reps: int, threads: int, int8: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _bench(I, H, L, proj, steps, reps, threads, int8, tmp)


def _bench(I: int, H: int, L: int, proj: int, steps: int, reps: int, threads: int, int8: bool, tmp: str) -> None:
    methods = _methods(I, H, L, proj, threads, int8, tmp)
    times: dict[str, list[float]] = {name: [] for name in methods}
    with torch.inference_mode():
        for fn in methods.values():  # warm-up
            for _ in range(max(20, steps // 5)):
                fn()
        names = list(methods)
        for rep in range(reps):
            for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate who goes first
                fn = methods[name]
                t0 = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[name].append((time.perf_counter() - t0) / steps * 1e6)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"\nI={I} H={H} layers={L} proj={proj} batch=1 threads={threads}: per-step latency, "
          f"median of {reps} turns x {steps} steps")
    for name in names:
        print(f"  {name:12s} {med[name]:9.1f} us   x{med[name] / med['lstmkit']:.2f} of lstmkit")
    if "ort-int8" in methods:
        _int8_report(os.path.join(tmp, "lstm.onnx"), os.path.join(tmp, "lstm.int8.onnx"), I, L, proj or H, H)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["32x128x1", "64x256x2"],
                    help="input x hidden x layers[xproj] (default: 32x128x1 64x256x2)")
    ap.add_argument("--steps", type=int, default=200, help="consecutive steps per turn")
    ap.add_argument("--reps", type=int, default=15, help="turns per method")
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--int8", action="store_true", help="also time and check the int8-quantized ONNX export")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        parts = [int(v) for v in size.split("x")]
        I, H, L = parts[:3]
        bench(I, H, L, parts[3] if len(parts) > 3 else 0, args.steps, args.reps, args.threads, args.int8)


if __name__ == "__main__":
    main()
