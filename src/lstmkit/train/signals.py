"""SIGINT / SIGTERM during training: finish the step, write a checkpoint, stop with a way back.

The first signal only sets ``received``; the Trainer checks it after each optimizer step, writes
a final checkpoint (atomically, like every checkpoint) and raises Interrupted, whose message says
how to resume. A second signal raises Interrupted at once, wherever the program is: a write in
progress is abandoned by its temporary file, so the folder keeps its last complete checkpoint.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal; ``exit_code`` is 128 + the signal number (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum, self.message = signum, message
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return self.message


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """Context manager catching SIGINT / SIGTERM for a graceful stop (main thread only, else inert).

    ``hint``: the sentence a second signal's Interrupted carries (how to resume).
    """

    def __init__(self, enabled: bool = True, hint: str = "") -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.hint = hint
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
            return
        self.restore()  # a third signal gets the default behaviour
        raise Interrupted(signum, f"second {signal_name(signum)}: stopped at once; the run folder keeps its last "
                                  f"complete checkpoint{'; ' + self.hint if self.hint else ''}")

    def __enter__(self) -> "StopSignals":
        if self.enabled:
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self.restore()
