"""Build a run from its flat config mapping, and rebuild a trained model from its run folder."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from torch import nn

from . import checkpoint as ckpt
from .config import ConfigError, RunConfig, parse_run_config
from .registry import get_task
from .task import Task
from .trainer import Trainer


def build_task(cfg: RunConfig) -> Task:
    return get_task(cfg.task).factory(cfg.options)


def make_trainer(cfg: RunConfig, run_dir: Optional[str] = None) -> Trainer:
    """The Trainer for a checked RunConfig (run_dir defaults to cfg.run_dir or runs/<task>)."""
    run_dir = run_dir or cfg.run_dir or os.path.join("runs", cfg.task.replace(":", "-"))
    cfg.run_dir = run_dir
    return Trainer(build_task(cfg), cfg.train, run_dir, run_config=cfg.to_dict())


def run_kind(run_dir: str, config: Optional[dict[str, Any]] = None) -> str:
    """The kind of run in run_dir: the registered task its config.json names (CheckpointError if none)."""
    config = ckpt.load_config(run_dir) if config is None else config
    task = config.get("task")
    path = os.path.join(run_dir, ckpt.CONFIG)
    if task is None:
        raise ckpt.CheckpointError(
            f"{path} names no task, so lstmkit cannot tell what run it is or rebuild its model (it was written "
            "by a Trainer given no run_config, or by `lstmkit demo` / `lstmkit tasks` before they recorded it; "
            "rerun that command)")
    if not isinstance(task, str) or not task:
        raise ckpt.CheckpointError(f"{path} is corrupt: 'task' must be a task name, got {task!r}")
    return task.rpartition(":")[2]  # "package.module:name" → name


def _article(kind: str) -> str:
    return "an" if kind[:1].lower() in "aeio" else "a"


def a_run_of(kind: str) -> str:
    """"an 'adding' run", "a 'text' run"."""
    return f"{_article(kind)} {kind!r} run"


def check_kind(run_dir: str, kind: str, needs: Union[str, Sequence[str]], command: str) -> None:
    """One line if a run of this kind is not one the command reads."""
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    if kind not in needs:
        wanted = " or ".join(repr(n) for n in needs)
        raise ckpt.CheckpointError(
            f"{os.path.normpath(run_dir)} is {_article(kind)} {kind!r} run; {command} needs {_article(needs[0])} "
            f"{wanted} run")


def load_run(run_dir: str, map_location: Any = "cpu", *, kind: Union[None, str, Sequence[str]] = None,
             command: str = "this command") -> tuple[RunConfig, Task, nn.Module]:
    """(config, task, model with the checkpoint's weights) from a run folder; model in eval mode.

    kind: the task name(s) the caller can use; a run of another kind is refused in one line
    before anything else is read (command names the caller in that line).
    Every problem — a missing or corrupt file, a file from another run, a newer format — is a
    CheckpointError naming the file.
    """
    config = ckpt.load_config(run_dir)
    name = run_kind(run_dir, config)
    if kind is not None:
        check_kind(run_dir, name, kind, command)
    try:
        cfg = parse_run_config(config)
    except ConfigError as e:
        raise ckpt.CheckpointError(f"{os.path.join(run_dir, ckpt.CONFIG)}: {e}") from None
    task = build_task(cfg)
    model = task.build_model()
    ckpt.load_checkpoint(run_dir, model, map_location=map_location, repair=False)
    return cfg, task, model.eval()
