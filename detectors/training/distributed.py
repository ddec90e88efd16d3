"""Process-group set-up for ``torchrun`` (DDP); a single process needs none of it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dataigm.devices import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job and the device it uses."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistInfo:
    """Join the process group when ``WORLD_SIZE`` > 1 (set by ``torchrun``), else run in one process.

    With several processes each uses ``cuda:LOCAL_RANK`` (NCCL), or the CPU (Gloo) when there is no GPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        chosen = torch.device(resolve_device(device))
        return DistInfo(0, 1, 0, chosen)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        chosen, backend = torch.device("cuda", local_rank), "nccl"
    else:
        chosen, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, chosen)
    logger.info("DDP: rank %d of %d on %s", info.rank, info.world_size, info.device)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
