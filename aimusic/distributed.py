"""torchrun / DistributedDataParallel glue: gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on one (stop signals, non-finite losses)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: torch.device) -> Iterator[DistInfo]:
    """``setup`` for the block, then ``teardown``. A block that ends normally waits for every
    rank first: a rank that tore its gloo group down while another was still finishing (rank
    0 measures and saves alone) could abort at exit ("terminate called without an active
    exception"). One that raises does not wait: torchrun stops the other ranks."""
    info = setup(device)
    try:
        yield info
    except BaseException:
        teardown(info)
        raise
    if info.enabled and dist.is_initialized():
        dist.barrier()
    teardown(info)
