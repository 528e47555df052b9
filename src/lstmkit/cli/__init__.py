"""The ``lstmkit`` command: one module per subcommand, listed once in COMMANDS.

A subcommand module ``lstmkit/cli/<name>.py`` defines::

    def register(subparsers) -> None:
        p = subparsers.add_parser("name", help="one line for `lstmkit --help`", description=...)
        p.add_argument(...)
        p.set_defaults(run=run)          # run(args) -> int exit code

and raises CliError (or ConfigError / CheckpointError / ValueError / FileNotFoundError) for bad
input: main() prints it as one line, ``lstmkit <name>: error: ...``, and exits with 2.
Set LSTMKIT_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

# Subcommand modules, in the order `lstmkit --help` lists them. Add yours here.
COMMANDS = [
    "train",
    "demo",
    "bench",
    "tasks",
    "gradients",
    "classify",
    "export",
    "forecast",
    "generate",
    "translate",
    "inspect",
]

EPILOG = """examples:
  lstmkit demo                               LSTM vs plain RNN on a long-time-lag task (a few minutes)
  lstmkit train --list                       the tasks `train` knows and their options
  lstmkit train run.toml --train.lr 0.01     train from a config file, overriding a key
  lstmkit train --resume runs/mine           continue a run that stopped (or was killed)

`lstmkit <command> --help` explains each command. Errors are one line; LSTMKIT_DEBUG=1 shows the traceback."""


class CliError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def load_run_of(run_dir: str, task_type: type, kind: str, command: str = ""):
    """(config, task, model) of the run folder run_dir (or a shipped model's name), which must hold a
    ``kind`` run for ``command``."""
    from ..pretrained import resolve_run
    from ..train.run import load_run

    run_dir = resolve_run(run_dir)  # a shipped model's name (lstmkit generate shakespeare)
    if not os.path.isdir(run_dir):
        raise CliError(f"no run folder at {run_dir}")
    cfg, task, model = load_run(run_dir, kind=kind, command=command or "this command")
    if not isinstance(task, task_type):  # a task registered under the name by someone else
        raise CliError(f"{run_dir} is a {cfg.task!r} run whose task is not lstmkit's {kind!r} task")
    return cfg, task, model


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lstmkit", description="Long Short-Term Memory networks: train, inspect and run them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="<command>", dest="command")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _expected_errors() -> tuple[type, ...]:
    from ..train import CheckpointError, ConfigError

    return (CliError, ConfigError, CheckpointError, ValueError, FileNotFoundError, NotADirectoryError,
            IsADirectoryError, PermissionError)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = list(extra)
    from ..train.signals import Interrupted

    try:
        return int(args.run(args) or 0)
    except Interrupted as e:  # training stopped by SIGINT / SIGTERM, its message says how to resume
        print(f"lstmkit {args.command}: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"lstmkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (*_expected_errors(), OSError) as e:
        if os.environ.get("LSTMKIT_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and e.strerror:
            msg = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
        print(f"lstmkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
