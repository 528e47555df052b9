"""The gate explorer's hook: how ``lstmkit inspect`` reads an application's run.

An application whose task can show its LSTM's gates says so on the task class::

    @explorable("text")
    class TextTask(Task):
        explorer_reads = "text"                  # what the page is drawn over: "text" or "series"

        def gate_states(self, model, request: ExplorerRequest) -> GateStates: ...

``gate_states`` turns the run's model and the user's request into the GateStates of one LSTM
over one input (lstmkit.viz.collect_states); the command line only parses arguments and writes
the page, whatever the app. Bad requests raise ValueError (one line, naming the option).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

READS = ("text", "series")

_EXPLORABLE: dict[str, str] = {}  # task name -> what its explorer page reads


@dataclass(frozen=True)
class ExplorerRequest:
    """What the user asked to see: text for a "text" app; a window and a member for a "series" app."""

    text: Optional[str] = None  # the input text ("text" apps)
    window: Optional[str] = None  # "START:END" rows of the run's series; None: all of it ("series" apps)
    member: int = 1  # which ensemble member's LSTM, 1-based ("series" apps with an ensemble)
    title: str = ""


def explorable(task_name: str):
    """Class decorator: the task registered as ``task_name`` implements the explorer hook."""

    def deco(cls):
        if getattr(cls, "explorer_reads", None) not in READS or not callable(getattr(cls, "gate_states", None)):
            raise TypeError(f"{cls.__name__}: an explorable task sets explorer_reads (one of {READS}) and "
                            "defines gate_states(model, request)")
        _EXPLORABLE[task_name] = cls.explorer_reads
        return cls

    return deco


def explorable_tasks() -> tuple[str, ...]:
    """Names of the registered tasks the gate explorer can read, sorted (whatever the import order)."""
    from ..train.registry import available_tasks

    available_tasks()  # imports the application packages, which register themselves
    return tuple(sorted(_EXPLORABLE))


def parse_window(window: Optional[str], T: int) -> tuple[int, int]:
    """"START:END" (either side may be empty) → (start, end) rows of a series of T rows."""
    if not window:
        return 0, T
    parts = window.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        end = int(parts[1]) if parts[1] else T
    except ValueError:
        raise ValueError(f"--window must be START:END (row numbers, e.g. 96:144), got {window!r}") from None
    if not 0 <= start < end <= T:
        raise ValueError(f"--window must satisfy 0 <= START < END <= {T} (the series' rows), got {window!r}")
    return start, end
