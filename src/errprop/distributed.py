"""Data parallelism over ``torch.distributed``, launched by ``torchrun`` (or ``accelerate launch``).

Every rank holds the whole model (same seed, same initial weights) and the slice of the global
batch given by its rank; after each backward pass the gradients are averaged across ranks with one
all-reduce per parameter tensor, so the update equals the single-process update on the global
batch. We reduce explicitly rather than wrap the network in ``DistributedDataParallel``: EP runs
the network several times per step (its rollout) and SA once on a K·B batch, and an explicit
all-reduce after ``backward`` is correct for any number of calls per step. Backend: NCCL on CUDA,
gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    """Where this process stands: its rank, the number of ranks, and whether we started the group."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over ranks (in place; a no-op for one rank)."""
        if self.world > 1:
            dist.all_reduce(t)
            t /= self.world
        return t

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any rank (e.g. a stop signal)."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def average_gradients(self, params) -> None:
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    self.all_mean(p.grad)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join torchrun's process group if launched by it; returns the context and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), owns), device
