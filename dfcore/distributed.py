"""Distributed training on PyTorch's own engine: ``torchrun`` starts the processes, `torch.distributed` connects them
(NCCL on GPUs, gloo on CPU), DistributedDataParallel averages the gradients. One process is the same code with a
world of one.

What is ours is small: reading torchrun's environment once, sharding a sampler that torch has no distributed
version of (weighted sampling, and evaluation without the padding `DistributedSampler` adds), and gathering the
validation scores of every rank back into the split's order so that AUC is computed on the whole validation set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Context:
    """This process's place in the run: its rank among ``world_size`` processes and its GPU on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints, logs and figures (rank 0)."""
        return self.rank == 0


def context() -> Context:
    """Returns this process's context: from the initialised process group, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Context()


def init_from_env(device_type: str = "cpu") -> Context:
    """Joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL for CUDA,
    gloo otherwise; returns the context. Without torchrun's variables, a world of one."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return context()


def barrier() -> None:
    if context().active:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ShardedSampler(Sampler):
    """Every ``world_size``-th index of ``base`` from ``rank`` on: each rank sees its share of one draw.

    ``base`` draws the same indices on every rank (its generator is seeded from (seed, epoch) alike
    everywhere). With ``even`` (training) every rank gets the same number, as DDP's lock-step
    needs; without (evaluation) nothing is dropped or repeated, so gathered scores are exact.
    """

    def __init__(self, base, rank: int, world_size: int, *, even: bool = True):
        self.base, self.rank, self.world_size, self.even = base, rank, world_size, even

    def __iter__(self):
        indices = list(self.base)
        if self.even:
            indices = indices[: len(indices) // self.world_size * self.world_size]
        return iter(indices[self.rank::self.world_size])

    def __len__(self) -> int:
        n = len(self.base)
        return n // self.world_size if self.even else len(range(self.rank, n, self.world_size))


def gather_rows(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Returns every rank's ``values`` (rows for dataset ``indices``) put back in dataset order; on one process
    ``values`` itself."""
    ctx = context()
    if not ctx.active:
        return values
    parts = [None] * ctx.world_size
    dist.all_gather_object(parts, (np.asarray(indices), np.asarray(values)))
    order = np.concatenate([i for i, _ in parts])
    rows = np.concatenate([v for _, v in parts])
    out = np.empty_like(rows)
    out[order] = rows
    return out


def sum_all(values) -> list[float]:
    """Returns ``values`` summed over every rank (themselves on one process)."""
    if not context().active:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()
