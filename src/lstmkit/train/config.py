"""Configuration: dataclasses checked on entry, loaded from TOML or JSON, overridden from the CLI.

A run is described by one flat mapping (what config.json in a run folder holds)::

    task = "adding"            # a registered task (see lstmkit.train.registry)
    run_dir = "runs/adding"    # where config.json, model.safetensors, ... go
    T = 50                     # ...the task's own keys, checked against its config dataclass
    [train]                    # TrainConfig: optimizer, schedule, TBPTT, eval, checkpoints
    steps = 300
    lr = 0.003

Overrides on the command line use dotted keys: ``--train.lr 0.01 --T 100``. Unknown keys and
values of the wrong type are rejected with a ConfigError that names the key.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]


class ConfigError(ValueError):
    """A configuration is wrong; the message names the key, the expected and the received value."""


@dataclass
class TrainConfig:
    """How to train; every field can be set as ``[train] key = value`` or ``--train.key value``.

    Args (defaults in brackets):
        steps [1000]: optimizer steps in total; with TBPTT every window is one step.
        batch_size [32]: global batch size, split evenly across distributed ranks.
        optimizer ["adamw"]: "adamw" | "adam" | "sgd" (sgd uses momentum 0.9).
        lr [1e-3], weight_decay [0.01]: learning rate and decoupled weight decay.
        clip_norm [1.0]: clip the global gradient norm to this; 0 turns clipping off.
        schedule ["cosine"]: "constant" | "cosine" (linear warm-up, then cosine to
            min_lr_ratio·lr) | "plateau" (warm-up, then lr·plateau_factor whenever the eval
            metric has not improved for plateau_patience evaluations).
        warmup_steps [0], min_lr_ratio [0.0], plateau_factor [0.5], plateau_patience [2].
        tbptt [0]: truncated-BPTT window length in steps; 0 backpropagates through whole batches.
        eval_every [0]: evaluate every N steps (and always at the end); 0 only at the end.
        metric ["loss"], mode ["min"]: eval metric watched by early stopping and "plateau".
        patience [0]: stop after this many evaluations without improvement; 0 never stops early.
        checkpoint_every [100]: save the run folder every N steps (and at the end); 0 only at the end.
        log_every [10]: write a train line to metrics.jsonl / the log every N steps.
        seed [0], deterministic [False]: seeds every RNG; deterministic also forces
            torch.use_deterministic_algorithms.
        progress ["auto"]: "auto" (a bar on a terminal, log lines otherwise) | "bar" | "log" | "off".
        plot [True]: write learning_curve.png at the end (needs matplotlib).
        device ["auto"]: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
        threads [0]: torch's intra-op CPU threads; 0 keeps torch's default. Small models run
            faster with 1: per-op threading costs more than it saves, and on a busy machine
            waiting threads stall every step.
    """

    steps: int = 1000
    batch_size: int = 32
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    tbptt: int = 0
    eval_every: int = 0
    metric: str = "loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    deterministic: bool = False
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    plot: bool = True
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("threads", "warmup_steps", "tbptt", "eval_every", "patience", "checkpoint_every",
                     "plateau_patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        for name in ("lr", "weight_decay", "clip_norm", "min_lr_ratio"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"train.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"train.plateau_factor must be in (0, 1), got {self.plateau_factor}")


# --------------------------------------------------------------------------- loading


class CliValue(str):
    """A value typed on the command line: converted to the field's type when checked."""


def load_file(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Read a TOML (.toml) or JSON (.json) config file into a dict; errors are ConfigErrors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        else:
            if tomllib is None:
                raise ConfigError(f"reading {path} needs Python 3.11+ or `pip install tomli`; or use a .json config")
            with open(path, "rb") as f:
                data = tomllib.load(f)
    except ConfigError:
        raise
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"cannot parse {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of keys at the top level, got {type(data).__name__}")
    return data


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--train.lr", "0.1", "--T=50"]`` → ``{"train": {"lr": CliValue("0.1")}, "T": CliValue("50")}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected --key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            value = args[i + 1]
            i += 1
        i += 1
        set_dotted(out, key.replace("-", "_"), CliValue(value))
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        sub = d.setdefault(p, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"--{key}: {p!r} is a value, not a section")
        d = sub
    d[parts[-1]] = value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``over`` wins."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- checking


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types by name."""
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    data = move_renamed(data, getattr(cls, "RENAMED", {}), where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {where + unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; known keys{' in ' + where[:-1] if where else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {k: check_value(where + k, hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where[:-1] or cls.__name__}: {e}") from None


def move_renamed(data: dict[str, Any], renamed: dict[str, str], where: str = "") -> dict[str, Any]:
    """Old keys of a config class moved to where they live now (``{"layer_norm": "lstm.layer_norm"}``),
    so configs written before a key moved still load; a key given in both places is an error."""
    if not any(old in data for old in renamed):
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old not in data:
            continue
        value = data.pop(old)
        parts = new.split(".")
        d = data
        for p in parts[:-1]:
            sub = d.get(p, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"{where}{p}: expected a table, got {sub!r}")
            d[p] = dict(sub)  # a copy: the caller's table stays as it was
            d = d[p]
        if parts[-1] in d:
            raise ConfigError(f"{where}{old} and {where}{new} are the same setting (the first is its old place); "
                              "give only one")
        d[parts[-1]] = value
    return data


def move_renamed_keys(data: dict[str, Any], task: str) -> dict[str, Any]:
    """A flat run mapping of ``task`` with its config class's old keys moved (see move_renamed): for
    merging a saved config and overrides that may each name a setting by another of its places."""
    from .registry import get_task  # late: the registry imports the task packages

    config = get_task(task).config
    return move_renamed(data, getattr(config, "RENAMED", {})) if config is not None else data


def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) as plain JSON-ready values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def check_value(key: str, tp: Any, value: Any) -> Any:
    """Return ``value`` as type ``tp`` (converting CLI strings), or raise a ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, CliValue) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(key, a, value)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin in (list, tuple):
        if isinstance(value, CliValue):
            value = [CliValue(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        elem = args[0] if args else Any
        out = [check_value(f"{key}[{i}]", elem, v) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, CliValue):
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, CliValue):
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, CliValue):
            try:
                number = float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        if number is not None and number == number:  # NaN is no setting of anything
            return number
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # a bug in a config class


# --------------------------------------------------------------------------- the run config


@dataclass
class RunConfig:
    """A whole run: which task, where its folder is, its own options, and how to train it."""

    task: str
    run_dir: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)
    options: Any = None  # the task's config dataclass instance

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping written to config.json (and accepted back by parse_run_config)."""
        out: dict[str, Any] = {"task": self.task, "run_dir": self.run_dir}
        out.update(to_dict(self.options) if self.options is not None else {})
        out["train"] = to_dict(self.train)
        return out


RESERVED_KEYS = ("task", "run_dir", "train", "format")


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """Check a flat run mapping (file + overrides merged) against TrainConfig and the task's config."""
    from .registry import get_task  # late: the registry imports the task packages

    if not isinstance(data, dict):
        raise ConfigError(f"a run config is a table of keys, got {type(data).__name__}")
    data = dict(data)
    data.pop("format", None)  # the run-folder format of a config.json, checked when the folder is read
    name = data.pop("task", None)
    if name is None:
        raise ConfigError("missing key 'task' (which task to train; `lstmkit train --list` shows them)")
    name = check_value("task", str, name)
    entry = get_task(name)
    run_dir = check_value("run_dir", str, data.pop("run_dir", ""))
    train_data = data.pop("train", {})
    if not isinstance(train_data, dict):
        raise ConfigError(f"train: expected a table of training options ([train] / --train.KEY), got {train_data!r}")
    train = from_dict(TrainConfig, merge(entry.train_defaults or {}, train_data), "train.")
    options = from_dict(entry.config, data) if entry.config is not None else None
    if entry.config is None and data:
        raise ConfigError(f"unknown key {sorted(data)[0]!r}: task {name!r} takes no options")
    return RunConfig(task=name, run_dir=run_dir, train=train, options=options)
