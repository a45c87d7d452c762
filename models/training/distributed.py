"""Distributed data parallel: joining the process group under torchrun, and sharding a batch.

Under ``torchrun --nproc_per_node N`` every rank slices its own contiguous rows of the same
global batch (the deterministic sharding of a ``DistributedSampler``); gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .config import Batch

log = logging.getLogger(__name__)


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's contiguous slice of the global batch's rows."""
    if world == 1:
        return batch
    B = next(iter(batch.values())).shape[0]
    if B % world:
        raise ValueError(f"global batch size {B} is not divisible by world size {world}")
    n = B // world
    return {k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if world == 1:
        return DistInfo(device=torch.device(device or ("cuda" if want_cuda else "cpu")))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)
