"""Training: the Trainer, its Task interface, run folders, distributed data parallel.

    >>> from lstmkit.train import Trainer, TrainConfig, Task
    >>> # Trainer(my_task, TrainConfig(steps=500, tbptt=50), "runs/mine").fit()

See Trainer's docstring for the Task interface, TrainConfig's for every option, TrainState's for
what survives a stop, and lstmkit.train.checkpoint for the run folder's layout.
"""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig, TrainConfig, parse_run_config
from .lock import RunLock, RunLockedError
from .registry import available_tasks, get_task, register_task
from .rng import seed_everything
from .run import build_task, load_run, make_trainer
from .schedule import LRSchedule
from .signals import Interrupted
from .state import TrainState
from .task import Task, detach_state, reset_rows, shard, split_time, tree_map
from .trainer import FitResult, Trainer

__all__ = [
    "CheckpointError", "ConfigError", "FitResult", "Interrupted", "LRSchedule", "RunConfig", "RunLock",
    "RunLockedError", "Task", "TrainConfig", "TrainState", "Trainer",
    "available_tasks", "build_task", "detach_state", "get_task", "load_checkpoint", "load_run", "make_trainer",
    "parse_run_config", "register_task", "reset_rows", "save_checkpoint", "seed_everything", "shard",
    "split_time", "tree_map",
]
