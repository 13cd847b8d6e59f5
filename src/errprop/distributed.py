"""Data parallelism over ``torch.distributed``, launched by ``torchrun``.

``accelerate launch --multi_gpu --num_processes N`` works unchanged too: it starts the workers
through torchrun with the same environment (checked with accelerate 1.15, also on a machine without
GPUs, where the ranks run on CPU with gloo). Its ``--cpu`` mode starts several processes only
through MPI, which this module does not read.

Every rank holds the whole model and the slice of the global batch given by its rank. The network
is wrapped in :class:`torch.nn.parallel.DistributedDataParallel`, which broadcasts rank 0's initial
weights and averages the gradients across ranks during ``backward`` (bucketed all-reduces that
overlap with the backward pass), so the update equals the single-process update on the global
batch. The wrapper fits all our losses as they are — we checked its gradients against an explicit
all-reduce (equal to the last bit) for SIMPLE, SA (one call on a K·B batch) and EP (the rollout
calls the network several times per step, and a different number of times on each rank), and a
skipped batch (forward without backward) does not upset it — because every parameter receives a
gradient in every backward and each gradient hook fires once per backward. A future network with
parameters that some steps leave unused would need ``find_unused_parameters=True``.

Backend: NCCL on CUDA (rank r on ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from .errors import ErrpropError


@dataclass
class Context:
    """Where this process stands: its rank, the number of ranks, its device, and whether we started
    the process group (and so must close it)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """True on rank 0, the one rank that writes files and logs."""
        return self.rank == 0

    def wrap(self, net: nn.Module) -> nn.Module:
        """``net`` wrapped for gradient averaging across ranks (``net`` itself for one rank)."""
        if self.world == 1:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over ranks (in place; a no-op for one rank)."""
        if self.world > 1:
            dist.all_reduce(t)
            t /= self.world
        return t

    def agree(self, *flags: bool) -> list[bool]:
        """Each flag, true on every rank if it is true on any rank (one all-reduce for all flags)."""
        if self.world == 1:
            return [bool(f) for f in flags]
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a picklable object; ``obj`` itself for one rank)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if we joined it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process is rank 0 (also before it joins the group): the one that reports."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: torch.device) -> Context:
    """Join torchrun's process group if launched by it (``WORLD_SIZE`` > 1); one rank otherwise.

    On CUDA each rank takes ``cuda:LOCAL_RANK``. A process group that the caller already started
    is used as it is (and left open).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and not dist.is_initialized():
        return Context(device=device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ErrpropError(
                f"rank with LOCAL_RANK {local} needs cuda:{local}, but this machine has "
                f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device, owns)
