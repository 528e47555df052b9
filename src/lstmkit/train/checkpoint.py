"""Run folders: everything a run needs to be rebuilt, inspected and resumed after a kill.

    runs/<name>/
        config.json         the flat run config: format (of the run folder), task (the run's
                            kind: which registered task rebuilds it), run_dir, task options, [train]
        model.safetensors   the weights (loadable without lstmkit: safetensors.torch.load_file)
        trainer_state.pt    optimizer, schedule, RNG states, step, data position, carried state;
                            read back with torch.load(weights_only=True)
        metrics.jsonl       one JSON object per line: {"step", "split": "train"|"eval", ...}
        learning_curve.png  written at the end when matplotlib is installed
        .lock               while a process writes the folder: its pid, host, start time and command
                            (lstmkit.train.lock)

Every file is written to a temporary name in the same folder and moved into place with
os.replace, so a kill at any instant leaves either the old file or the new one, never a part.
A checkpoint is two files; trainer_state.pt records the SHA-256 of the model file it belongs
to and is replaced first. A kill between the two replaces leaves the new model under its
temporary name, and load_checkpoint finishes the move (roll forward) after checking the hash.

config.json's ``format`` is FORMAT when written; a folder without one (written before the
field existed) reads as format 1, and a newer format than this code knows is refused by name.
Every file read here fails with a CheckpointError naming the file and what is wrong with it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .._io import atomic_write_bytes, atomic_write_text, write_step  # noqa: F401 (re-exported: run-folder writers)

FORMAT = 1  # the run-folder format this code writes and the newest it reads
STATE_FORMAT = 1  # trainer_state.pt's own layout
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
    """Write config.json, stamped with the run-folder format."""
    os.makedirs(run_dir, exist_ok=True)
    config = {"format": FORMAT, **{k: v for k, v in config.items() if k != "format"}}
    atomic_write_text(os.path.join(run_dir, CONFIG), json.dumps(config, indent=2) + "\n")


def load_config(run_dir: str) -> dict[str, Any]:
    """config.json as a dict, checked to be a JSON object of a format this code reads."""
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"no run folder at {run_dir}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found: is {run_dir!r} a run folder?")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt: not JSON text ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object, got {type(data).__name__}")
    fmt = data.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointError(f"{path} is corrupt: 'format' must be a positive integer, got {fmt!r}")
    if fmt > FORMAT:
        from .. import __version__

        raise CheckpointError(f"{run_dir} was written by a newer lstmkit (run-folder format {fmt}; lstmkit "
                              f"{__version__} reads up to {FORMAT}): upgrade lstmkit to use it")
    return data


def save_checkpoint(run_dir: str, model: nn.Module, state: dict[str, Any]) -> None:
    """Write model.safetensors and trainer_state.pt atomically (state gets the model's hash)."""
    os.makedirs(run_dir, exist_ok=True)
    model_path, state_path = os.path.join(run_dir, MODEL), os.path.join(run_dir, STATE)
    model_tmp = model_path + TMP
    try:
        write_step(f"{MODEL}{TMP}: before write")
        save_model(model, model_tmp)  # handles shared (tied) tensors
        write_step(f"{MODEL}{TMP}: written, before fsync")
        with open(model_tmp, "rb+") as f:
            os.fsync(f.fileno())
        state = dict(state, model_sha256=_sha256(model_tmp))
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(state_path, buf.getvalue())  # the commit point
        os.replace(model_tmp, model_path)
        write_step(f"{MODEL}: replaced")
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


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(e).__name__


def read_state(run_dir: str, map_location: Any = "cpu") -> dict[str, Any]:
    """trainer_state.pt, loaded without executing any pickle code and checked for its fields."""
    state_path = os.path.join(run_dir, STATE)
    if not os.path.isfile(state_path):
        raise CheckpointError(f"no checkpoint in {run_dir!r} ({STATE} not found)")
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever garbage gives (zip, pickle, EOF, ...), one line
        raise CheckpointError(f"{state_path} is corrupt or truncated, not a trainer state torch can read "
                              f"({_first_line(e)}); the run cannot be resumed from it") from None
    check_state(state, state_path, {"step": int, "model_sha256": str})
    return state


# The fields of the Trainer's state (save_checkpoint itself takes any dict with a "step")
TRAINER_FIELDS = {"step": int, "position": int, "window": int, "optimizer": dict, "schedule": dict,
                  "ranks": list, "bad_evals": int, "stopped": bool, "model_sha256": str}


def check_state(state: Any, state_path: str, fields: dict[str, type]) -> None:
    """Raise a CheckpointError naming state_path unless state has these fields, of these types."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{state_path} is not an lstmkit trainer state ({why})")

    if not isinstance(state, dict):
        raise bad(f"a {type(state).__name__}, not a dict")
    fmt = state.get("format", 1)
    if isinstance(fmt, int) and fmt > STATE_FORMAT:
        raise CheckpointError(f"{state_path} was written by a newer lstmkit (trainer-state format {fmt}; "
                              f"this one reads up to {STATE_FORMAT}): upgrade lstmkit to resume it")
    for key, tp in fields.items():
        if key not in state:
            raise bad(f"no {key!r}")
        if not isinstance(state[key], tp) or (tp is int and isinstance(state[key], bool)):
            raise bad(f"{key!r} is a {type(state[key]).__name__}, expected {tp.__name__}")
    if any(state[k] < 0 for k in ("step", "position", "window") if k in fields):
        raise bad("negative step, position or window")
    ranks = state.get("ranks") if "ranks" in fields else [{"rng": None, "carry": None}]
    if not ranks or not all(isinstance(r, dict) and "rng" in r and "carry" in r for r in ranks):
        raise bad("'ranks' lacks the per-rank RNG states")


def _is_safetensors(path: str) -> Optional[str]:
    """None if path starts like a safetensors file (an 8-byte header length, then a JSON header), else why not."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, too short for a safetensors file"
        n = int.from_bytes(head, "little")
        if n == 0 or n > size - 8:
            return f"its header claims {n} bytes and the file holds {size}: truncated, zeroed or not safetensors"
        try:
            header = json.loads(f.read(min(n, 100_000_000)))
        except (ValueError, UnicodeDecodeError):
            return "its header is not JSON: not a safetensors file"
    if not isinstance(header, dict):
        return "its header is not a JSON object: not a safetensors file"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header does not describe tensors: not a safetensors file"
    if size != 8 + n + end:
        return f"it holds {size} bytes where its header describes {8 + n + end}"
    return None


def load_checkpoint(run_dir: str, model: nn.Module, map_location: Any = "cpu", repair: bool = True) -> dict[str, Any]:
    """Load weights into model and return the trainer state; CheckpointError if anything is off.

    A kill between save_checkpoint's two replaces leaves the new weights under their temporary
    name; with repair (the folder's writer, holding its lock) they are moved into place, without
    (a reader, maybe beside a running writer) they are read from there.
    """
    model_path = os.path.join(run_dir, MODEL)
    state = read_state(run_dir, map_location)
    want = state["model_sha256"]
    tmp = model_path + TMP
    source = model_path
    for _attempt in range(3):  # a writer may move tmp into place between our looks
        try:
            if (not os.path.isfile(model_path) or _sha256(model_path) != want) and os.path.isfile(tmp) \
                    and _sha256(tmp) == want:
                if repair:
                    os.replace(tmp, model_path)  # killed between the two replaces: roll forward
                else:
                    source = tmp
            if not os.path.isfile(source):
                raise CheckpointError(f"{model_path} not found (the weights of the checkpoint at step {state['step']})")
            if _sha256(source) != want:
                why = _is_safetensors(source)
                if why is not None:
                    raise CheckpointError(f"{model_path} is corrupt or truncated ({why}); the run cannot be used")
                raise CheckpointError(
                    f"{model_path} does not belong to {STATE}: its SHA-256 does not match the one {STATE} recorded "
                    f"at step {state['step']} (one of them was changed, damaged or copied from another run)")
            break
        except FileNotFoundError:
            source = model_path
            continue
    try:
        load_model(model, source, strict=True, device=str(map_location))
    except (SafetensorError, RuntimeError, OSError, ValueError, KeyError, TypeError) as e:
        why = _first_line(e)
        raise CheckpointError(f"{model_path} does not fit the model that {CONFIG} describes (copied from another "
                              f"run?): {why[:300]}") from None
    return state


def append_metrics(run_dir: str, rows: list[dict[str, Any]]) -> None:
    """Append rows to metrics.jsonl (one flush per call; a torn last line is dropped on read)."""
    if not rows:
        return
    text = "".join(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(run_dir, METRICS), "a", encoding="utf-8") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        write_step(f"{METRICS}: half a line appended")
        f.write(text[len(text) // 2:])
        f.flush()


def read_metrics(run_dir: str, upto_step: Optional[int] = None) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl (those with step <= upto_step if given); a torn or foreign line is skipped."""
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
            step = row.get("step", 0) if isinstance(row, dict) else None
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                continue
            if upto_step is None or step <= upto_step:
                rows.append(row)
    return rows


def truncate_metrics(run_dir: str, upto_step: int) -> None:
    """On resume, forget rows logged after the checkpoint (they will be logged again)."""
    rows = read_metrics(run_dir, upto_step)
    atomic_write_text(os.path.join(run_dir, METRICS), "".join(json.dumps(r) + "\n" for r in rows))
