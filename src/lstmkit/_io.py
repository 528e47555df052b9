"""Atomic file writes, shared by run folders, plots and the explorer page.

Each writes to a temporary name in the destination's folder, fsyncs, then moves it into place
with os.replace: a reader, or a kill at any instant, sees the old file or the new one, never a
part. The temporary name carries the process id, so two processes writing the same file do not
clobber each other's half-written copy.

Every step of a write passes through write_step(label): the fault tests and the fault sweep set
``fault_hook`` there to kill the process or fail the write at exactly that step.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, Optional

# Called as fault_hook(label) at each step of every run-folder write; None (always, outside the
# fault tests) costs one comparison.
fault_hook: Optional[Callable[[str], None]] = None


def write_step(label: str) -> None:
    """A point between two steps of a write, where a test may kill the process or raise."""
    if fault_hook is not None:
        fault_hook(label)


def temp_name(path: str, suffix: str = "") -> str:
    """The temporary sibling of path that atomic writes use (suffix keeps an extension, e.g. '.png')."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces path, on error it is removed.

        >>> with atomic_path("plot.png", suffix=".png") as tmp:   # doctest: +SKIP
        ...     fig.savefig(tmp)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(path, suffix)
    name = os.path.basename(path)
    try:
        yield tmp
        write_step(f"{name}: written, before fsync")
        with open(tmp, "rb+") as f:  # what a writer such as savefig closed may still be in the page cache
            os.fsync(f.fileno())
        write_step(f"{name}: synced, before replace")
        os.replace(tmp, path)
        write_step(f"{name}: replaced")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write data to path atomically (old or new content, never partial)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        write_step(f"{os.path.basename(path)}: half written")
        f.write(data[half:])


def atomic_write_text(path: str, text: str) -> None:
    """Write UTF-8 text to path atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
