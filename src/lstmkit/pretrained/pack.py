"""Copy a finished run folder into the package as a shipped model (maintainers only).

    python -m lstmkit.pretrained.pack runs/text shakespeare

Kept: config.json (run_dir set to the name), model.safetensors, metrics.jsonl. trainer_state.pt
is rewritten with only the step and the model's hash that loading checks: the optimizer's
moments would double the size and a shipped model is for use, not for resuming.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil

import torch

from .._io import atomic_write_bytes, atomic_write_text
from ..train import checkpoint as ckpt
from . import NAMES


def pack(run_dir: str, name: str, dest_root: str) -> str:
    if name not in NAMES:
        raise ValueError(f"{name!r} is not listed in lstmkit.pretrained.NAMES ({', '.join(NAMES)}); add it there first")
    state = torch.load(os.path.join(run_dir, ckpt.STATE), map_location="cpu", weights_only=True)
    dest = os.path.join(dest_root, name)
    os.makedirs(dest, exist_ok=True)
    config = ckpt.load_config(run_dir)
    config["run_dir"] = name
    config.get("train", {})["progress"] = "off"
    atomic_write_text(os.path.join(dest, ckpt.CONFIG), json.dumps(config, indent=2) + "\n")
    shutil.copyfile(os.path.join(run_dir, ckpt.MODEL), os.path.join(dest, ckpt.MODEL))
    shutil.copyfile(os.path.join(run_dir, ckpt.METRICS), os.path.join(dest, ckpt.METRICS))
    buf = io.BytesIO()
    torch.save({"step": int(state["step"]), "model_sha256": state["model_sha256"]}, buf)
    atomic_write_bytes(os.path.join(dest, ckpt.STATE), buf.getvalue())
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("name", choices=NAMES)
    args = p.parse_args()
    print(pack(args.run_dir, args.name, os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
