"""Run folders: everything a run needs to be rebuilt, inspected and resumed after a kill.

    runs/<name>/
        config.json         the flat run config (task, run_dir, task options, [train])
        model.safetensors   the weights (loadable without lstmkit: safetensors.torch.load_file)
        trainer_state.pt    optimizer, schedule, RNG states, step, data position, carried state;
                            read back with torch.load(weights_only=True)
        metrics.jsonl       one JSON object per line: {"step", "split": "train"|"eval", ...}
        learning_curve.png  written at the end when matplotlib is installed

Every file is written to a temporary name in the same folder and moved into place with
os.replace, so a kill at any instant leaves either the old file or the new one, never a part.
A checkpoint is two files; trainer_state.pt records the SHA-256 of the model file it belongs
to and is replaced first. A kill between the two replaces leaves the new model under its
temporary name, and load_checkpoint finishes the move (roll forward) after checking the hash.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .._io import atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported: run-folder writers)

CONFIG = "config.json"
MODEL = "model.safetensors"
STATE = "trainer_state.pt"
METRICS = "metrics.jsonl"
CURVE = "learning_curve.png"
TMP = ".tmp"


class CheckpointError(RuntimeError):
    """A run folder's checkpoint cannot be used; the message says which file and why."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def has_checkpoint(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, STATE))


def save_config(run_dir: str, config: dict[str, Any]) -> None:
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, CONFIG), json.dumps(config, indent=2) + "\n")


def load_config(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found: is {run_dir!r} a run folder?")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e})") from None


def save_checkpoint(run_dir: str, model: nn.Module, state: dict[str, Any]) -> None:
    """Write model.safetensors and trainer_state.pt atomically (state gets the model's hash)."""
    os.makedirs(run_dir, exist_ok=True)
    model_path, state_path = os.path.join(run_dir, MODEL), os.path.join(run_dir, STATE)
    model_tmp = model_path + TMP
    try:
        save_model(model, model_tmp)  # handles shared (tied) tensors
        with open(model_tmp, "rb+") as f:
            os.fsync(f.fileno())
        state = dict(state, model_sha256=_sha256(model_tmp))
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(state_path, buf.getvalue())  # the commit point
        os.replace(model_tmp, model_path)
    except BaseException:
        if os.path.exists(model_tmp) and not _state_wants(state_path, model_tmp):
            os.remove(model_tmp)
        raise


def _state_wants(state_path: str, model_tmp: str) -> bool:
    """Whether the committed trainer_state.pt refers to model_tmp (then it must not be deleted)."""
    try:
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        return st.get("model_sha256") == _sha256(model_tmp)
    except Exception:
        return False


def load_checkpoint(run_dir: str, model: nn.Module, map_location: Any = "cpu") -> dict[str, Any]:
    """Load weights into model and return the trainer state; CheckpointError if anything is off."""
    model_path, state_path = os.path.join(run_dir, MODEL), os.path.join(run_dir, STATE)
    if not os.path.isfile(state_path):
        raise CheckpointError(f"no checkpoint in {run_dir!r} ({STATE} not found)")
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise CheckpointError(
            f"{state_path} is corrupt or truncated ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "the run cannot be resumed from it") from None
    if not isinstance(state, dict) or "step" not in state or "model_sha256" not in state:
        raise CheckpointError(f"{state_path} is not an lstmkit trainer state")
    want = state["model_sha256"]
    tmp = model_path + TMP
    if (not os.path.isfile(model_path) or _sha256(model_path) != want) and os.path.isfile(tmp) and _sha256(tmp) == want:
        os.replace(tmp, model_path)  # killed between the two replaces of save_checkpoint: roll forward
    if not os.path.isfile(model_path):
        raise CheckpointError(f"{model_path} not found")
    if _sha256(model_path) != want:
        raise CheckpointError(
            f"{model_path} is corrupt or truncated (its SHA-256 does not match the one recorded in {STATE} "
            f"at step {state['step']}); the run cannot be resumed from it")
    try:
        missing, unexpected = load_model(model, model_path, strict=True, device=str(map_location))
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        why = " ".join(str(e).split())
        raise CheckpointError(f"{model_path} does not fit the model: {why[:300]}") from None
    return state


def append_metrics(run_dir: str, rows: list[dict[str, Any]]) -> None:
    """Append rows to metrics.jsonl (one flush per call; a torn last line is dropped on read)."""
    if not rows:
        return
    with open(os.path.join(run_dir, METRICS), "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()


def read_metrics(run_dir: str, upto_step: Optional[int] = None) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl (those with step <= upto_step if given); a torn line is skipped."""
    path = os.path.join(run_dir, METRICS)
    rows: list[dict[str, Any]] = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if upto_step is None or row.get("step", 0) <= upto_step:
                rows.append(row)
    return rows


def truncate_metrics(run_dir: str, upto_step: int) -> None:
    """On resume, forget rows logged after the checkpoint (they will be logged again)."""
    rows = read_metrics(run_dir, upto_step)
    atomic_write_text(os.path.join(run_dir, METRICS), "".join(json.dumps(r) + "\n" for r in rows))
