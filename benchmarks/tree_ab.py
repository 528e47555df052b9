"""A/B of two source trees: the same lk.LSTM timed in each, alternating, one subprocess per timing.

A kernel change has no switch to flip at run time, so kernel_ab.py cannot time it against what it
replaced. This script can: give it a checkout of the earlier code (a git worktree) and the working
tree, and it times each shape with each tree's own lstmkit and its own compiled kernel (a
separate extension directory per tree, so neither rebuilds the other's), A B A B …, and prints the
medians and the ratio A / B (> 1: B is faster).

    git worktree add /tmp/base HEAD~1
    python benchmarks/tree_ab.py /tmp/base . --shapes S3,S1 --modes inference --threads 1 --rounds 5
    python benchmarks/tree_ab.py /tmp/base . --shapes S8 --modes train --threads 2 --clock wall

Each timing is the median of --repeats calls after two warm-up calls, in a fresh process; the
figure per tree is the median over --rounds. The shapes are speed.py's (docs/explanation/speed.md).
The first round of a tree whose kernel is not built yet waits for the build (about 45 s).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SHAPES, STACKS  # noqa: E402

MODES = ("inference", "train")

# Runs in each tree's own interpreter environment: lstmkit from that tree's src.
_CHILD = r"""
import statistics, sys, time, torch, lstmkit as lk
T, B, I, H, L, bi, mode, threads, repeats, clock = sys.argv[1:]
T, B, I, H, L, threads, repeats = (int(v) for v in (T, B, I, H, L, threads, repeats))
torch.set_num_threads(threads)
torch.manual_seed(0)
lstm = lk.LSTM(I, H, L, bidirectional=bi == "1", backend="fused")
x = torch.randn(T, B, I, requires_grad=mode == "train")
now = time.thread_time if clock == "cpu" else time.perf_counter
def run():
    if mode == "train":
        out, _ = lstm(x)
        out.sum().backward()
    else:
        with torch.no_grad():
            lstm(x)
for _ in range(2):
    run()
times = []
for _ in range(repeats):
    t0 = now()
    run()
    times.append(now() - t0)
print(statistics.median(times) * 1e3)
"""


def extension_dir(tree: Path) -> str:
    """A build directory of the tree's own, so the two kernels never overwrite each other."""
    tag = hashlib.sha1(str(tree).encode()).hexdigest()[:10]
    return str(Path(tempfile.gettempdir()) / "lstmkit_tree_ab" / tag)


def time_once(tree: Path, ext_dir: str, shape: str, mode: str, threads: int, repeats: int, clock: str) -> float:
    T, B, I, H = SHAPES[shape]
    L, bidirectional = STACKS.get(shape, (1, False))
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), TORCH_EXTENSIONS_DIR=ext_dir)
    args = [sys.executable, "-c", _CHILD, *map(str, (T, B, I, H, L, int(bidirectional), mode, threads, repeats, clock))]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"tree_ab: timing {shape} {mode} in {tree} failed: {last}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tree_a", type=Path, help="the baseline checkout (a folder with src/lstmkit)")
    p.add_argument("tree_b", type=Path, help="the checkout to compare with it")
    p.add_argument("--shapes", default="S1,S3", help=f"comma-separated, of {','.join(SHAPES)} (default S1,S3)")
    p.add_argument("--modes", default="inference,train", help="inference, train or both (default both)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each timing (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="timings per tree, alternating (default 5)")
    p.add_argument("--repeats", type=int, default=9, help="calls per timing, median taken (default 9)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu: this thread's CPU time (needs --threads 1); wall: elapsed time (default cpu)")
    p.add_argument("--ext-dirs", default=None,
                   help="A,B: the trees' extension build directories (default one per tree under the temp dir)")
    a = p.parse_args(argv)
    shapes, modes = a.shapes.split(","), a.modes.split(",")
    unknown = [s for s in shapes if s not in SHAPES] + [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown {', '.join(unknown)}: shapes are {', '.join(SHAPES)}, modes {', '.join(MODES)}")
    if a.clock == "cpu" and a.threads != 1:
        p.error("--clock cpu times the calling thread only: use it with --threads 1, or --clock wall")
    trees = [a.tree_a.resolve(), a.tree_b.resolve()]
    for tree in trees:
        if not (tree / "src" / "lstmkit").is_dir():
            p.error(f"{tree} has no src/lstmkit: give the root of an lstmkit checkout")
    ext_dirs = a.ext_dirs.split(",") if a.ext_dirs else [extension_dir(t) for t in trees]
    if len(ext_dirs) != 2:
        p.error(f"--ext-dirs takes two directories, A,B; got {a.ext_dirs!r}")
    print(f"A = {trees[0]}\nB = {trees[1]}\n{a.threads} thread(s), {a.clock} clock, {a.rounds} rounds of {a.repeats} calls")
    for shape in shapes:
        for mode in modes:
            times: list[list[float]] = [[], []]
            for _ in range(a.rounds):
                for side in (0, 1):
                    times[side].append(time_once(trees[side], ext_dirs[side], shape, mode, a.threads, a.repeats, a.clock))
            ma, mb = (statistics.median(t) for t in times)
            print(f"{shape} {mode:<9}  A {ma:9.2f} ms   B {mb:9.2f} ms   A/B {ma / mb:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
