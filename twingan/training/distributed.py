"""Data-parallel training over torch.distributed, launched by torchrun.

TwinGAN's step runs the shared networks many times (every domain pair, the
cycle, gradient penalties with double backward) through methods other than
``forward``, which ``DistributedDataParallel`` cannot hook. So gradients are
averaged explicitly after each backward with one bucketed all-reduce per side,
which is what DDP does, and buffers (running statistics) are averaged each step
so every rank holds the same model. Rank 0 alone writes files.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op when not launched by it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module, info: DistInfo) -> None:
    """All-reduce the mean gradient of every parameter (missing gradients count as zero)."""
    if not info.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset: offset + n].view_as(p))
        offset += n


def average_buffers(module: nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (batch-norm running statistics) across ranks."""
    if not info.enabled:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for b in buffers:
        b.copy_(flat[offset: offset + b.numel()].view_as(b))
        offset += b.numel()


def parameter_checksum(module: nn.Module) -> float:
    """A float64 fingerprint of all parameters and buffers, to check that ranks agree."""
    with torch.no_grad():
        return float(sum((t.double() * (i + 1)).sum() for i, t in enumerate(module.state_dict().values())))


def ranks_agree(value: float, info: DistInfo) -> bool:
    if not info.enabled:
        return True
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return all(v == gathered[0] for v in gathered)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (every rank gets the same answer)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def env_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def wait_for_file(path: Path, timeout_s: float = 3600.0) -> None:
    """Wait for rank 0 to finish writing ``path`` (used before the process group exists)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {path} to be written by rank 0")
        time.sleep(0.5)
