"""Small trained run folders shipped inside the package, usable by name on the command line.

    lstmkit generate shakespeare --prime "JULIET." --length 200
    lstmkit forecast airline
    lstmkit inspect shakespeare --text "ROMEO: 'Tis but thy name"

A name is used only when no folder of that name exists in the working directory, so a run of
your own called ``shakespeare`` still wins. How each model was trained, what it scores and the
licences of its data are in ``lstmkit/pretrained/README.md``.

    >>> from lstmkit.pretrained import run_path
    >>> from lstmkit.train import load_run
    >>> cfg, task, model = load_run(run_path("shakespeare"))   # doctest: +SKIP
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Optional

NAMES = ("shakespeare", "airline")


def run_path(name: str) -> str:
    """The folder of the shipped run ``name`` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"no shipped model called {name!r}; shipped: {', '.join(NAMES)}")
    return str(resources.files(__name__).joinpath(name))


def is_shipped(run: str) -> bool:
    """Whether ``run`` names a shipped model rather than a folder on disk."""
    return run in NAMES and not os.path.exists(run)


def resolve_run(run: str) -> str:
    """``run`` itself if it is a path (or not a shipped name), else the shipped folder it names."""
    return run_path(run) if is_shipped(run) else run


def default_output(run: str, filename: str) -> Optional[str]:
    """Where a command writes ``filename`` for ``run`` by default when run is a shipped name: the
    working directory (the package folder may be read-only). None for a run folder of your own."""
    return f"{run}_{filename}" if is_shipped(run) else None
