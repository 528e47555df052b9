"""Distributed data parallel under torchrun: one process per device, gradients averaged.

Single machine, 2 processes (gloo on CPU, nccl on GPU)::

    torchrun --standalone --nproc-per-node 2 -m lstmkit train config.toml

Several machines (run on each; node 0's address is the rendezvous point)::

    torchrun --nnodes 2 --nproc-per-node 4 --node-rank <0|1> \\
             --rdzv-backend c10d --rdzv-endpoint <node0-host>:29500 -m lstmkit train config.toml

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; ``setup()`` reads them. Each
rank trains on its own 1/world_size share of every global batch (Task.train_batches gets rank
and world_size), DistributedDataParallel averages the gradients, so N ranks with batch B/N
each take the same steps as one process with batch B. Only rank 0 writes the run folder.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun (or any launcher setting RANK / WORLD_SIZE / LOCAL_RANK) asked for."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank, world, local)


def setup(device_type: str = "cpu") -> DistInfo:
    """Join the process group if launched distributed (idempotent); returns this process's place."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(minutes=10))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around model when distributed; the model itself otherwise."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def mean(value: float, info: DistInfo) -> float:
    """Average of value over ranks (for logging)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def max_int(value: int, info: DistInfo) -> int:
    """The largest of every rank's value (on every rank)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's obj as a list indexed by rank (on every rank)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, info: DistInfo, src: int = 0) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
