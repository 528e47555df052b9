"""What a run shows while it trains: a tqdm bar on a terminal, plain log lines elsewhere, or nothing."""
from __future__ import annotations

import math
import sys
import time
from typing import Any


class Progress:
    """A tqdm bar on a terminal, plain log lines elsewhere (or nothing); rank 0 only."""

    def __init__(self, mode: str, total: int, initial: int, enabled: bool, desc: str = "train") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode if enabled else "off"
        self.total, self.t0, self.step0 = total, time.perf_counter(), initial
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, step: int, info: dict[str, Any], seconds_left: float = math.inf) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items()}
            if math.isfinite(seconds_left):  # tqdm's own ETA counts steps; a time budget may end sooner
                postfix["budget left"] = f"{int(seconds_left) // 60}:{int(seconds_left) % 60:02d}"
            self.bar.set_postfix(postfix, refresh=False)

    def log(self, step: int, info: dict[str, Any], seconds_left: float = math.inf) -> None:
        """One line; seconds_left caps the ETA when the task stops on a time budget (Task.seconds_left)."""
        if self.mode != "log":
            return
        done = step - self.step0
        elapsed = time.perf_counter() - self.t0
        eta = min(elapsed / done * (self.total - step), seconds_left) if done else float("nan")
        parts = [f"step {step}/{self.total}"] + [
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()]
        if done and eta == eta:
            parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        print("  ".join(parts), file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
