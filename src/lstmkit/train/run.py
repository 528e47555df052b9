"""Build a run from its flat config mapping, and rebuild a trained model from its run folder."""
from __future__ import annotations

import os
from typing import Any, Optional

from torch import nn

from . import checkpoint as ckpt
from .config import RunConfig, parse_run_config
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


def load_run(run_dir: str, map_location: Any = "cpu") -> tuple[RunConfig, Task, nn.Module]:
    """(config, task, model with the checkpoint's weights) from a run folder; model in eval mode."""
    cfg = parse_run_config(ckpt.load_config(run_dir))
    task = build_task(cfg)
    model = task.build_model()
    ckpt.load_checkpoint(run_dir, model, map_location=map_location)
    return cfg, task, model.eval()
