"""Named tasks that ``lstmkit train`` can run: one decorator per application.

    >>> from dataclasses import dataclass
    >>> from lstmkit.train import Task, register_task
    >>> @dataclass
    ... class SineConfig:
    ...     hidden_size: int = 32
    >>> @register_task("sine-demo", SineConfig, help="fit a sine wave")
    ... def make_sine(cfg: SineConfig) -> Task: ...

A config file then says ``task = "sine-demo"`` and may set ``hidden_size``; anything else is
rejected by name. Tasks living in ``lstmkit.paper1997`` and ``lstmkit.apps`` register on import;
a task elsewhere is named ``"package.module:name"`` and its module is imported first.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .config import RESERVED_KEYS, ConfigError


@dataclass(frozen=True)
class TaskEntry:
    name: str
    config: Optional[type]  # the task's options dataclass (None: no options)
    factory: Callable[[Any], Any]  # factory(options) -> Task
    help: str = ""
    train_defaults: Optional[dict[str, Any]] = None  # this task's defaults for the [train] section


_TASKS: dict[str, TaskEntry] = {}

# Packages whose import registers tasks; a missing package is simply not there yet.
TASK_PACKAGES = ("lstmkit.train.toy", "lstmkit.paper1997", "lstmkit.apps")


def register_task(name: str, config: Optional[type] = None, *, help: str = "",
                  train_defaults: Optional[dict[str, Any]] = None):
    """Decorator registering ``factory(options) -> Task`` under ``name``.

    train_defaults: [train] values this task starts from (e.g. {"eval_every": 100, "lr": 3e-3});
    the user's config and overrides still win. Checked like any config.
    """
    import dataclasses

    if config is not None:
        clash = {f.name for f in dataclasses.fields(config)} & set(RESERVED_KEYS)
        if clash:
            raise ValueError(f"task {name!r}: option names {sorted(clash)} are reserved for the run config")

    def deco(factory):
        _TASKS[name] = TaskEntry(name, config, factory, help or (factory.__doc__ or "").strip().split("\n")[0],
                                 dict(train_defaults or {}))
        return factory

    return deco


_BROKEN: dict[str, str] = {}  # package → why its import failed


def _import_packages() -> None:
    """Import every task package; one that fails is reported, not allowed to break the others."""
    for pkg in TASK_PACKAGES:
        try:
            mod = importlib.import_module(pkg)
        except ModuleNotFoundError as e:
            if e.name is not None and pkg.startswith(e.name):
                continue  # that package does not exist (yet)
            _broken(pkg, e)
            continue
        except Exception as e:  # noqa: BLE001 - reported below and by get_task
            _broken(pkg, e)
            continue
        for sub in getattr(mod, "TASK_MODULES", ()):  # a package may list submodules to import
            try:
                importlib.import_module(f"{pkg}.{sub}")
            except Exception as e:  # noqa: BLE001
                _broken(f"{pkg}.{sub}", e)


def _broken(name: str, e: BaseException) -> None:
    if name not in _BROKEN:
        _BROKEN[name] = f"{type(e).__name__}: {e}"
        warnings.warn(f"tasks in {name} are unavailable: it failed to import ({_BROKEN[name]})", stacklevel=3)


def available_tasks() -> dict[str, TaskEntry]:
    _import_packages()
    return dict(sorted(_TASKS.items()))


def get_task(name: str) -> TaskEntry:
    if ":" in name:  # "package.module:name" for tasks outside lstmkit
        module, _, short = name.partition(":")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise ConfigError(f"task {name!r}: cannot import module {module!r} ({e})") from None
        name = short
    tasks = available_tasks()
    if name not in tasks:
        broken = "".join(f"; {pkg} failed to import ({why})" for pkg, why in _BROKEN.items())
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(tasks) or '(none)'}{broken}")
    return tasks[name]
