"""The device and the process group: one process, or a rank of ``torchrun`` (DDP)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` (this rank's ``LOCAL_RANK``) or
    ``cuda:N``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """Yield (rank, world size): of the process group already set up (the caller's to tear
    down), else of the one ``torchrun`` describes (joined here, left on exit), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0, 1
        return
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def prepare_device(device: torch.device) -> None:
    """Select a CUDA device and allow TF32 matmuls (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def gather(obj: Any, world: int) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (every rank must call this at the same point)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(value: torch.Tensor, world: int) -> None:
    """Average ``value`` across ranks, in place."""
    if world > 1:
        dist.all_reduce(value, op=dist.ReduceOp.AVG)


def sum_over_ranks(value: torch.Tensor, world: int) -> None:
    """Sum ``value`` across ranks, in place."""
    if world > 1:
        dist.all_reduce(value)
