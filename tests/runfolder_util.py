"""Tiny run folders for the run-folder and reliability tests: an echo run of a few steps."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file

from lstmkit.train import checkpoint as ckpt
from lstmkit.train.config import merge, parse_run_config
from lstmkit.train.run import make_trainer

# Checkpoints every 3 steps land inside TBPTT batches with a carried state; dropout makes the
# resumed run depend on the restored RNG state too.
ECHO = {"task": "echo", "hidden_size": 4, "window": 6, "lag": 2, "doc_batches": 2, "eval_docs": 4,
        "dropout_p": 0.1, "backend": "reference",
        "train": {"steps": 8, "batch_size": 2, "tbptt": 3, "checkpoint_every": 3, "log_every": 2, "eval_every": 4,
                  "progress": "off", "plot": False, "threads": 1}}
ECHO_ARGS = ["--task", "echo", "--hidden_size", "4", "--window", "6", "--lag", "2", "--doc_batches", "2",
             "--eval_docs", "4", "--dropout_p", "0.1", "--backend", "reference", "--train.batch_size", "2",
             "--train.tbptt", "3", "--train.log_every", "2", "--train.plot", "false", "--train.progress", "off",
             "--train.threads", "1"]


def train(run_dir: str, resume: bool = False, **overrides):
    """Train (or resume) the tiny echo run in run_dir; FitResult."""
    cfg = parse_run_config(merge(dict(ECHO, run_dir=run_dir), overrides))
    return make_trainer(cfg).fit(resume=resume)


def resume_or_start(run_dir: str, **overrides):
    """What `lstmkit train --resume` does: continue from the checkpoint, or start if there is none."""
    return train(run_dir, resume=ckpt.has_checkpoint(run_dir), **overrides)


def weights(run_dir: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(run_dir, ckpt.MODEL))


def same_weights(a: str, b: str) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def train_losses(run_dir: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in open(os.path.join(run_dir, ckpt.METRICS))]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]
