"""``lstmkit train``: train a registered task from a config file and --key value overrides."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

DESCRIPTION = """Train a model on a task, writing a run folder you can resume, inspect and plot.

A config file (TOML or JSON) names the task and sets its options and the [train] section:

    task = "echo"                # `lstmkit train --list` shows the tasks and their options
    run_dir = "runs/echo"        # default runs/<task>
    hidden_size = 32             # an option of the task
    [train]
    steps = 500
    lr = 0.003
    tbptt = 20                   # truncated BPTT window; the state carries across windows

Any key can be set or overridden on the command line: --train.lr 0.01 --hidden_size 64, and
the file itself is optional: lstmkit train echo --train.steps 100 (a task name in place of the
file is the same as --task echo).
The run folder gets config.json, model.safetensors, trainer_state.pt, metrics.jsonl and
learning_curve.png. A run that stopped or was killed continues exactly with --resume.

Several processes (gloo on CPU, nccl on GPU): torchrun --nproc-per-node 2 -m lstmkit train run.toml"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a task from a config file (TOML/JSON) + --key value overrides",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        usage="lstmkit train [CONFIG | TASK] [--resume [RUN_DIR]] [--list] [--key value ...]",
        epilog="CONFIG: a .toml or .json run config, or TASK: a task name (optional; comes first).")
    # CONFIG is taken from the leftovers, not declared: a declared optional positional would
    # swallow the value of the first --key value override.
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR (default: the config's run_dir) from its last checkpoint")
    p.add_argument("--list", action="store_true", help="list the tasks and their options, then exit")
    p.set_defaults(run=run, accepts_overrides=True)


def list_tasks() -> int:
    from ..train import TrainConfig, available_tasks

    for name, entry in available_tasks().items():
        print(f"{name}: {entry.help}")
        if entry.config is not None:
            for f in dataclasses.fields(entry.config):
                if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                    section = f.default_factory()  # a section such as [lstm]: its keys, dotted
                    print(f"    [{f.name}] " + " ".join(f"--{f.name}.{k.name} {getattr(section, k.name)!r}"
                                                     for k in dataclasses.fields(section)))
                    continue
                default = f.default if f.default is not dataclasses.MISSING else "(required)"
                print(f"    --{f.name} {default!r}")
    print("train (every task): " + " ".join(f"--train.{f.name}" for f in dataclasses.fields(TrainConfig)))
    return 0


def run(args) -> int:
    from ..train import checkpoint as ckpt
    from ..train.config import load_file, merge, move_renamed_keys, parse_overrides, parse_run_config
    from ..train.run import a_run_of, make_trainer, run_kind
    from . import CliError

    if args.list:
        return list_tasks()
    rest = list(args.overrides)
    first = rest.pop(0) if rest and not rest[0].startswith("--") else None
    config_path = None
    if first is not None:
        if os.path.exists(first) or first.endswith((".toml", ".json")):
            config_path = first
        else:  # `lstmkit train forecast --data …`: a task name; unknown names fail in get_task
            rest = ["--task", first] + rest
    overrides = parse_overrides(rest)
    data = load_file(config_path) if config_path else {}
    data = merge(data, overrides)
    resume = args.resume is not None
    if resume and args.resume:
        if not os.path.isdir(args.resume):
            raise CliError(f"--resume: no run folder at {args.resume}")
        saved = ckpt.load_config(args.resume)
        kind = run_kind(args.resume, saved)
        if "task" in data and str(data["task"]).rpartition(":")[2] != kind:
            raise CliError(f"--resume: {args.resume} is {a_run_of(kind)}, not {data['task']!r}")
        data = merge(move_renamed_keys(saved, kind), move_renamed_keys(data, kind))  # old keys in either
        data["run_dir"] = args.resume
    if not data:
        raise CliError("nothing to train: give a config file, --task NAME, or --resume RUN_DIR "
                       "(`lstmkit train --help`)")
    cfg = parse_run_config(data)
    trainer = make_trainer(cfg)
    if resume:
        if os.path.isfile(os.path.join(trainer.run_dir, ckpt.CONFIG)):
            saved_task = run_kind(trainer.run_dir)
            if saved_task != cfg.task.rpartition(":")[2]:
                raise CliError(f"--resume: {trainer.run_dir} is {a_run_of(saved_task)}, not {cfg.task!r}")
        if not ckpt.has_checkpoint(trainer.run_dir):
            # `--resume` on every launch of a preemptible job: the first launch starts the run
            print(f"{trainer.run_dir} has no checkpoint yet: starting it from step 0", file=sys.stderr)
            resume = False
    result = trainer.fit(resume=resume)

    from ..train import distributed

    if distributed.env_info().is_main:
        print(f"run folder   {result.run_dir}")
        print(f"steps        {result.step}" + ("  (stopped early)" if result.stopped_early else ""))
        print(f"train loss   {result.loss:.6g}" if result.loss == result.loss
              else "train loss   - (no step taken: the run had already finished)")
        for k, v in result.metrics.items():
            print(f"eval {k:<7} {v:.6g}")
        if result.curve:
            print(f"curve        {result.curve}")
    return 0
