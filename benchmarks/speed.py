"""Speed of lstmkit's LSTM backends against torch.nn.LSTM, measured side by side in one run.

    python benchmarks/speed.py                       # S1–S8 and decoding, 5 interleaved repeats
    python benchmarks/speed.py --shapes S1,S3 --repeats 9 --json speed.json
    python benchmarks/speed.py --shapes S6,S7,S8,decode --compare benchmarks/results/speed.json
    python benchmarks/speed.py --shapes S1,S3 --threads 1 --variants all   # the LSTM variants

The shapes (T steps, B batch, I input, H hidden; float32) stand for the models people run:
S1 typical training, S2 large training, S3 a small model on long sequences, S4 GEMM-bound,
S5 single-sequence streaming, S6 a 2-layer bidirectional encoder / classifier, S7 a 2-layer
language model, S8 a small 3-layer bidirectional stack; "decode" is one-step calls with carried
state and no grad (generation, beam search) at batches 1, 5 and 32, one and two layers, timed for
lk.LSTM called with T = 1 ("fused"), its one-step decoder (lstm.decoder(), "decoder"),
torch.nn.LSTM and onnxruntime running lstmkit's ONNX export of the same weights (numpy state fed
straight back; skipped when onnxruntime is not installed).

For each shape (docs/explanation/speed.md) and each mode — forward without grad, and a training
step (forward + backward of out.sum()) — it times, interleaved A B C … A B C … and reports medians:

    fused            lk.LSTM(backend="fused"): the C++ kernel with hand-written BPTT
    fused+gates      the same with return_gates=True (every step's i, f, g, o, c, h)
    fused-untiled    fused with its tiled steps off (set_tiled("off")): a BLAS GEMM per step, then a
                     row-split gate pass — the A/B of the register-tiled steps fused runs by default
    fused-in-order   (stacks) fused with the stack's concurrency off (set_concurrency("off")): the
                     layers and directions one after the other, each step split across the threads —
                     the A/B of running directions at once and layers as a wavefront
    reference        lk.LSTM(backend="reference"): a Python loop of torch ops with autograd
    nn.LSTM          torch.nn.LSTM, which runs oneDNN on CPU (the baseline of every ratio)
    nn.LSTM-nomkldnn torch.nn.LSTM inside torch.backends.mkldnn.flags(enabled=False)
    LSTMCell-loop    the nn.LSTMCell loop users write today to keep every cell state

Columns: ms (median), GFLOP/s counting the GEMM FLOPs only (forward 2·T·B·4H·(I+H), training
3× that), % of the float32 sgemm peak measured at the start of this run (torch.mm, 2048²),
ratio = nn.LSTM time / this time (> 1 is faster than nn.LSTM), and for training the peak
memory of one step: the rise of the process's peak RSS over its RSS just before the step,
in a fresh subprocess per approach after one warm-up step (torch's CPU allocator has no peak
counter, and tracemalloc does not see tensor memory; see peak_train_memory_mb). Machines are shared and noisy: compare
ratios within one run, never absolute times across runs.

With --variants, each variant (VARIANTS) is timed instead, interleaved with the plain fused LSTM
of the same shape and weights: "fused+<variant>" vs "fused" (the variant's overhead; target
<= 1.25x) and "reference+<variant>" (a Python loop of torch ops with autograd: what users write
today to get that variant) vs "fused+<variant>". The modules are in training mode in both
modes, so the stochastic variants sample fresh masks every call (part of their cost).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable, Optional

import torch

SHAPES = {  # name: (T steps, B batch, I input, H hidden), float32
    "S1": (100, 32, 256, 256),
    "S2": (100, 64, 512, 512),
    "S3": (200, 16, 32, 128),
    "S4": (50, 128, 1024, 1024),
    "S5": (1000, 1, 8, 64),
    "S6": (100, 32, 256, 256),
    "S7": (100, 32, 256, 256),
    "S8": (50, 16, 64, 128),
}
STACKS = {"S6": (2, True), "S7": (2, False), "S8": (3, True)}  # name: (layers, bidirectional); others 1 layer
DECODE = dict(I=256, H=512, batches=(1, 5, 32), layers=(1, 2), calls=200)  # the "decode" shape
# --variants: lk.LSTM keyword arguments of each variant, and of all the fused ones together.
VARIANTS = {
    "peephole": dict(peephole=True),
    "coupled": dict(coupled=True),
    "zoneout": dict(zoneout=0.1),
    "recurrent_dropout": dict(recurrent_dropout=0.25),
    "input_dropout": dict(input_dropout=0.25),
    "weight_drop": dict(weight_drop=0.25),
    "layer_norm": dict(layer_norm=True),
    "combined": dict(peephole=True, zoneout=0.1, recurrent_dropout=0.25),
}
APPROACHES = ("fused", "fused+gates", "fused-untiled", "reference", "nn.LSTM", "nn.LSTM-nomkldnn", "LSTMCell-loop")
STACK_APPROACHES = ("fused", "fused+gates", "fused-in-order", "reference", "nn.LSTM", "nn.LSTM-nomkldnn")  # no cell loop
BASELINE = "nn.LSTM"


def forward_flops(T: int, B: int, I: int, H: int, layers: int = 1, bidirectional: bool = False) -> float:
    D = 2 if bidirectional else 1
    return sum(2.0 * T * B * 4 * H * ((I if k == 0 else D * H) + H) * D for k in range(layers))


def approaches_for(name: str) -> tuple:
    return STACK_APPROACHES if name in STACKS else APPROACHES


# What the timings read: wall time, or with --clock cpu this thread's CPU time, which a busy
# machine's time slicing leaves out (one thread only: the work of other threads is not in it).
CLOCK = time.perf_counter


def measure_sgemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 n×n matrix product with torch.mm on this machine, now (best of repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK()
        torch.mm(a, b)
        best = min(best, CLOCK() - t0)
    return 2.0 * n**3 / best / 1e9


def _make(approach: str, T: int, B: int, I: int, H: int, seed: int = 0, layers: int = 1, bidirectional: bool = False):
    """step(train: bool) for one approach, with weights shared through nn.LSTM's."""
    import lstmkit as lk

    torch.manual_seed(seed)
    base = torch.nn.LSTM(I, H, layers, bidirectional=bidirectional)
    x = torch.randn(T, B, I)

    if approach in ("nn.LSTM", "nn.LSTM-nomkldnn"):
        model = base
        mkldnn = approach == "nn.LSTM"

        def run(train: bool):
            with torch.backends.mkldnn.flags(enabled=mkldnn):
                out, _ = model(x)
                if train:
                    out.sum().backward()
        return run

    if approach == "LSTMCell-loop":
        cell = torch.nn.LSTMCell(I, H)
        cell.load_state_dict({k.replace("_l0", ""): v for k, v in base.state_dict().items()})

        def run(train: bool):
            h, c = torch.zeros(B, H), torch.zeros(B, H)
            hs, cs = [], []
            for x_t in x.unbind(0):
                h, c = cell(x_t, (h, c))
                hs.append(h)
                cs.append(c)
            out, cells = torch.stack(hs), torch.stack(cs)  # (T, B, H) each: every hidden and cell state
            if train:
                out.sum().backward()
        return run

    backend = "reference" if approach == "reference" else "fused"
    gates = approach == "fused+gates"
    model = lk.LSTM(I, H, layers, bidirectional=bidirectional, backend=backend)
    model.load_state_dict(base.state_dict())
    ext = lk.kernels.fused.load_extension() if approach in ("fused-untiled", "fused-in-order") else None
    knob = None if ext is None else ext.set_tiled if approach == "fused-untiled" else ext.set_concurrency

    def run(train: bool):
        if knob is not None:
            knob("off")
        try:
            res = model(x, return_gates=gates)
            if train:
                res[0].sum().backward()
        finally:
            if knob is not None:
                knob("auto")
    return run


def _timed(fn: Callable[[bool], None], train: bool) -> float:
    if train:
        t0 = CLOCK()
        fn(True)
        return CLOCK() - t0
    with torch.no_grad():
        t0 = CLOCK()
        fn(False)
        return CLOCK() - t0


def time_shape(name: str, repeats: int, approaches=None, log=print) -> dict:
    """Median seconds per (mode, approach), interleaving approaches within each repeat."""
    T, B, I, H = SHAPES[name]
    layers, bidirectional = STACKS.get(name, (1, False))
    approaches = approaches or approaches_for(name)
    runs = {a: _make(a, T, B, I, H, layers=layers, bidirectional=bidirectional) for a in approaches}
    medians: dict = {}
    for mode in ("forward", "train"):
        train = mode == "train"
        samples: dict = {a: [] for a in approaches}
        for a in approaches:  # warm-up: oneDNN primitive caches, kernel build, allocator
            _timed(runs[a], train)
        for _ in range(repeats):
            for a in approaches:
                samples[a].append(_timed(runs[a], train))
        medians[mode] = {a: statistics.median(s) for a, s in samples.items()}
        log(f"  {name} {mode}: " + ", ".join(f"{a} {1e3 * t:.1f} ms" for a, t in medians[mode].items()))
    return medians


def _make_variant(approach: str, T: int, B: int, I: int, H: int, seed: int = 0):
    """A step(train) for "fused" (plain) or "<backend>+<variant>", all sharing one set of weights."""
    import lstmkit as lk

    backend, _, variant = approach.partition("+")
    torch.manual_seed(seed)
    x = torch.randn(T, B, I)
    model = lk.LSTM(I, H, backend=backend, **VARIANTS.get(variant, {})).train()

    def run(train: bool):
        out, _ = model(x)
        if train:
            out.sum().backward()
    return run


def time_variants(name: str, variants, repeats: int, log=print) -> list:
    """Rows of median ms per (mode, variant): plain fused, fused+variant, reference+variant, interleaved."""
    from lstmkit.kernels import select_backend

    T, B, I, H = SHAPES[name]
    rows = []
    for variant in variants:
        fused_ok = select_backend("auto", _variant_spec(variant)).name == "fused"
        approaches = ["fused", f"fused+{variant}", f"reference+{variant}"] if fused_ok else ["fused", f"reference+{variant}"]
        runs = {a: _make_variant(a, T, B, I, H) for a in approaches}
        for mode in ("forward", "train"):
            train = mode == "train"
            samples: dict = {a: [] for a in approaches}
            for a in approaches:  # warm-up
                _timed(runs[a], train)
            for _ in range(repeats):
                for a in approaches:
                    samples[a].append(_timed(runs[a], train))
            med = {a: 1e3 * statistics.median(v) for a, v in samples.items()}
            fv = med.get(f"fused+{variant}")
            row = dict(shape=name, mode=mode, variant=variant, fused_ms=med["fused"], fused_variant_ms=fv,
                       reference_variant_ms=med[f"reference+{variant}"],
                       overhead_vs_fused=None if fv is None else fv / med["fused"],
                       speedup_vs_python_loop=None if fv is None else med[f"reference+{variant}"] / fv)
            rows.append(row)
            log(f"  {name} {mode} {variant}: " + ", ".join(f"{a} {t:.1f} ms" for a, t in med.items()))
    return rows


def _variant_spec(variant: str):
    import lstmkit as lk
    from lstmkit.kernels import RunSpec

    probe = lk.LSTM(2, 2, **VARIANTS[variant]).train()
    return RunSpec(cell="lstm", num_layers=1, bidirectional=False, bias=True, proj_size=0, dropout=0.0,
                              training=True, record=False, device_type="cpu", dtype=torch.float32,
                              variants=probe._variants())


def format_variant_table(rows: list) -> str:
    head = (f"{'shape':5} {'mode':7} {'variant':17} {'fused ms':>9} {'fused+v ms':>10} {'ref+v ms':>9} "
            f"{'v/plain':>8} {'ref/fused':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        fv = "-" if r["fused_variant_ms"] is None else f"{r['fused_variant_ms']:.2f}"
        ov = "(ref)" if r["overhead_vs_fused"] is None else f"{r['overhead_vs_fused']:.2f}x"
        sp = "-" if r["speedup_vs_python_loop"] is None else f"{r['speedup_vs_python_loop']:.2f}x"
        lines.append(f"{r['shape']:5} {r['mode']:7} {r['variant']:17} {r['fused_ms']:9.2f} {fv:>10} "
                     f"{r['reference_variant_ms']:9.2f} {ov:>8} {sp:>9}")
    return "\n".join(lines)


_MEMORY_CHILD = r"""
import sys, torch
sys.path[:0] = {paths!r}
torch.set_num_threads({threads})
from speed import _make
run = _make({approach!r}, {T}, {B}, {I}, {H}, layers={layers}, bidirectional={bidirectional})
run(True)  # warm-up: kernel loading, library workspaces and thread pools are not the step's memory
def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
before = status_kb("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
run(True)
print(max(0, status_kb("VmHWM") - before))
"""


def peak_train_memory_mb(approach: str, shape: str) -> Optional[float]:
    """Peak RSS rise (MB) of one training step in a fresh subprocess; None where unmeasurable.

    Linux only: the step's peak is VmHWM after resetting it through /proc/self/clear_refs, minus
    VmRSS before; MALLOC_MMAP_THRESHOLD_ makes every large buffer an mmap that is returned on
    free, so memory cached by earlier steps does not hide the step's own allocations.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    T, B, I, H = SHAPES[shape]
    layers, bidirectional = STACKS.get(shape, (1, False))
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [here] + [p for p in sys.path if p]
    code = _MEMORY_CHILD.format(paths=paths, threads=torch.get_num_threads(), approach=approach, T=T, B=B, I=I, H=H,
                                layers=layers, bidirectional=bidirectional)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    if res.returncode != 0:
        return None
    return int(res.stdout.strip().splitlines()[-1]) / 1024


def run_benchmark(shapes, repeats: int, memory: bool = True, log=print) -> dict:
    peak = measure_sgemm_peak()
    log(f"float32 sgemm peak (torch.mm 2048², best of 5): {peak:.0f} GFLOP/s; threads: {torch.get_num_threads()}")
    rows = []
    for name in shapes:
        if name == "decode":
            rows += time_decode(repeats, log=log)
            continue
        T, B, I, H = SHAPES[name]
        layers, bidirectional = STACKS.get(name, (1, False))
        medians = time_shape(name, repeats, log=log)
        mem = {a: peak_train_memory_mb(a, name) for a in approaches_for(name)} if memory else {}
        for mode, by_approach in medians.items():
            flops = forward_flops(T, B, I, H, layers, bidirectional) * (3 if mode == "train" else 1)
            for a, secs in by_approach.items():
                gflops = flops / secs / 1e9
                rows.append(dict(
                    shape=name, T=T, B=B, I=I, H=H, layers=layers, bidirectional=bidirectional, mode=mode,
                    approach=a, ms=1e3 * secs,
                    gflops=gflops, pct_peak=100 * gflops / peak, ratio_vs_nn_lstm=by_approach[BASELINE] / secs,
                    peak_train_mb=mem.get(a) if mode == "train" else None,
                ))
    meta = dict(
        sgemm_peak_gflops=peak, torch=torch.__version__, threads=torch.get_num_threads(), repeats=repeats,
        python=platform.python_version(), machine=platform.machine(), processor=platform.processor(),
        time=time.strftime("%Y-%m-%d %H:%M:%S"), clock="cpu (thread)" if CLOCK is time.thread_time else "wall",
        load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        memory_method="peak RSS rise of a second training step in a fresh subprocess (VmHWM reset via /proc/self/clear_refs; MALLOC_MMAP_THRESHOLD_=64k)",
    )
    return dict(meta=meta, rows=rows)


def ort_decoder(model, threads: int):
    """lstmkit's ONNX export of `model` (initial state as inputs) in an onnxruntime session, as a
    callable (x, (h, c)) -> (y, (h, c)) on numpy arrays: a decoding loop on onnxruntime feeds each
    call's state outputs straight back, so no tensor conversion is timed. None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from lstmkit.interop import export_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    # Its pool threads spin-wait after each run by default: with more than one thread they would
    # hold a core through the other approaches' turns and slow them (lk 1-layer B=1: 148 -> 355 us).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(export_onnx(model, initial_state=True).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])

    def step(x, state):
        y, h, c = session.run(None, {"input": x, "h0": state[0], "c0": state[1]})
        return y, (h, c)

    return step


def time_decode(repeats: int, log=print) -> list:
    """One-step calls (T=1, carried state, no grad): lk.LSTM (fused), its decoder, torch.nn.LSTM and onnxruntime
    running lstmkit's ONNX export of the same weights (when installed), interleaved."""
    import lstmkit as lk

    I, H, rows = DECODE["I"], DECODE["H"], []
    for layers in DECODE["layers"]:
        torch.manual_seed(0)
        base = torch.nn.LSTM(I, H, layers).eval()
        fused = lk.LSTM(I, H, layers, backend="fused").eval()
        fused.load_state_dict(base.state_dict())
        decoder = fused.decoder()  # the lean path: plan, route and returned state kept between calls
        models = {"fused": fused, "decoder": decoder, BASELINE: base}
        ort_step = ort_decoder(fused, torch.get_num_threads())
        if ort_step is not None:
            models["onnxruntime"] = ort_step
        for B in DECODE["batches"]:
            x = torch.randn(1, B, I)
            state0 = (torch.zeros(layers, B, H), torch.zeros(layers, B, H))
            x_np, state0_np = x.numpy(), tuple(s.numpy() for s in state0)

            def calls(model, n):
                numpy_in = model is ort_step
                xi, state = (x_np, state0_np) if numpy_in else (x[0] if model is decoder else x, state0)  # decoder: (B, I)
                with torch.no_grad():
                    t0 = CLOCK()
                    for _ in range(n):
                        _, state = model(xi, state)
                    return (CLOCK() - t0) / n

            for m in models.values():  # warm-up: prepared-weight caches, oneDNN primitives
                calls(m, 20)
            samples: dict = {a: [] for a in models}
            for _ in range(repeats):
                for a, m in models.items():
                    samples[a].append(calls(m, DECODE["calls"]))
            med = {a: statistics.median(v) for a, v in samples.items()}
            flops = forward_flops(1, B, I, H, layers)
            for a, secs in med.items():
                rows.append(dict(shape=f"decode-L{layers}-B{B}", T=1, B=B, I=I, H=H, layers=layers, bidirectional=False,
                                 mode="decode", approach=a, ms=1e3 * secs, gflops=flops / secs / 1e9, pct_peak=None,
                                 ratio_vs_nn_lstm=med[BASELINE] / secs, peak_train_mb=None))
            log(f"  decode L{layers} B{B}: " + ", ".join(f"{a} {1e6 * t:.0f} us" for a, t in med.items()))
    return rows


def compare(result: dict, earlier: dict) -> str:
    """The ratio (vs nn.LSTM) of each row beside the same row of an earlier run's JSON."""
    before = {(r["shape"], r["mode"], r["approach"]): r["ratio_vs_nn_lstm"] for r in earlier.get("rows", [])}
    head = f"{'shape':14} {'mode':7} {'approach':17} {'before':>7} {'now':>7} {'change':>7}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        old = before.get((r["shape"], r["mode"], r["approach"]))
        if old is None or r["approach"] == BASELINE:
            continue
        now = r["ratio_vs_nn_lstm"]
        lines.append(f"{r['shape']:14} {r['mode']:7} {r['approach']:17} {old:6.2f}x {now:6.2f}x {now / old - 1:+6.0%}")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    head = f"{'shape':14} {'mode':7} {'approach':17} {'ms':>9} {'GFLOP/s':>8} {'%peak':>6} {'vs nn':>6} {'train MB':>9}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        mem = "" if r["peak_train_mb"] is None else f"{r['peak_train_mb']:.1f}"
        pct = "" if r["pct_peak"] is None else f"{r['pct_peak']:.1f}"
        lines.append(
            f"{r['shape']:14} {r['mode']:7} {r['approach']:17} {r['ms']:9.3f} {r['gflops']:8.1f} "
            f"{pct:>6} {r['ratio_vs_nn_lstm']:5.2f}x {mem:>9}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join([*SHAPES, "decode"]),
                    help="comma-separated subset of " + ",".join(SHAPES) + ",decode")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per approach (median reported)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads for the whole run (0: torch's default); 1 is steadier on a busy machine")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-approach memory subprocesses")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default), or this thread's CPU time: steadier on a shared machine, needs --threads 1")
    ap.add_argument("--compare", metavar="FILE", help="print each ratio's change against an earlier run's JSON")
    ap.add_argument("--variants", metavar="LIST",
                    help="time these LSTM variants instead (comma-separated, or 'all'): " + ",".join(VARIANTS))
    args = ap.parse_args(argv)
    shapes = [s.strip().upper() for s in args.shapes.split(",") if s.strip()]
    shapes = ["decode" if s == "DECODE" else s for s in shapes]
    unknown = [s for s in shapes if s not in SHAPES and s != "decode"]
    if unknown:
        ap.error(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)}, decode")
    earlier = None
    if args.compare:
        try:
            with open(args.compare) as f:
                earlier = json.load(f)
        except (OSError, ValueError) as exc:
            ap.error(f"--compare: cannot read {args.compare}: {exc}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads < 0:
        ap.error(f"--threads must be >= 0, got {args.threads}")
    if args.clock == "cpu" and args.threads != 1:
        ap.error(f"--clock cpu needs --threads 1 (one thread's CPU time misses other threads' work), got --threads {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter

    from lstmkit.kernels import fused

    # torch.backends.mkldnn.flags() warns about Intel-GPU TF32 on every use; not our concern here.
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")

    if fused.load_extension() is None:
        print(f"the fused kernel is not available: {fused.build_error()}", file=sys.stderr)
        return 1
    if args.variants:
        names = list(VARIANTS) if args.variants.strip() == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in names if v not in VARIANTS]
        if bad:
            ap.error(f"unknown variants {bad}; choose from {', '.join(VARIANTS)} or all")
        print(f"threads: {torch.get_num_threads()}; torch {torch.__version__}", flush=True)
        rows = [r for name in shapes if name != "decode" for r in time_variants(name, names, args.repeats, log=lambda s: print(s, flush=True))]
        print()
        print(format_variant_table(rows))
        print("\nv/plain = fused+variant time / plain fused time (target <= 1.25x); ref/fused = reference "
              "(Python loop) time / fused+variant time; (ref): the fused backend does not run this variant")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(threads=torch.get_num_threads(), repeats=args.repeats, rows=rows), f, indent=2)
            print(f"JSON written to {args.json}")
        return 0
    result = run_benchmark(shapes, args.repeats, memory=not args.no_memory, log=lambda s: print(s, flush=True))
    print()
    print(format_table(result))
    print(f"\nratio = nn.LSTM time / approach time; memory: {result['meta']['memory_method']}")
    if earlier is not None:
        print(f"\nagainst {args.compare}:")
        print(compare(result, earlier))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
