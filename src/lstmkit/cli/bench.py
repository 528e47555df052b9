"""``lstmkit bench``: run the speed benchmark (benchmarks/speed.py) when it is present."""
from __future__ import annotations

import os
import runpy
import sys


def _script() -> str | None:
    """benchmarks/speed.py of a source checkout (the benchmark is not shipped in the wheel)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for up in (os.path.join(here, "..", "..", ".."), os.getcwd()):
        path = os.path.normpath(os.path.join(up, "benchmarks", "speed.py"))
        if os.path.isfile(path):
            return path
    return None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure forward/backward speed of the backends against torch.nn.LSTM",
        description="Run benchmarks/speed.py from a source checkout; arguments after `bench` are passed to it "
                    "(try `lstmkit bench --help-script`).", allow_abbrev=False)
    p.add_argument("--help-script", action="store_true", help="show the benchmark script's own --help")
    p.set_defaults(run=run, accepts_overrides=True)


def run(args) -> int:
    from . import CliError

    path = _script()
    if path is None:
        raise CliError("the benchmark is not available: benchmarks/speed.py is not in this checkout "
                       "(run from a source checkout of lstmkit)")
    argv = ["--help"] if args.help_script else list(args.overrides)
    old = sys.argv
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    finally:
        sys.argv = old
    return 0
