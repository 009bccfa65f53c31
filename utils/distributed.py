"""Multi-instance runs: who am I, and metric reductions across instances via torch.distributed."""
from __future__ import annotations

import dataclasses
import os
from typing import List

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    rank: int
    size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def prefix(self) -> str:
        """``[instanceK/N]`` (1-based, as the original) for multi-instance runs, empty otherwise."""
        return f"[instance{self.rank + 1}/{self.size}]" if self.distributed else ""


def instance_info() -> InstanceInfo:
    """Read the launcher's environment: torch.distributed.run (our poprun) or the SDK's popdist."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return InstanceInfo(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "POPDIST_NUM_INSTANCES" in env:
        return InstanceInfo(int(env.get("POPDIST_INSTANCE_INDEX", 0)), int(env["POPDIST_NUM_INSTANCES"]), 0)
    return InstanceInfo(0, 1, 0)


def init_process_group(info: InstanceInfo, device: str) -> None:
    """Join the instances' group (NCCL on CUDA, gloo otherwise) so metrics can be reduced."""
    if not info.distributed or not dist.is_available() or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        return
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=info.rank, world_size=info.size)
    if device == "cuda":
        torch.cuda.set_device(info.local_rank % max(1, torch.cuda.device_count()))


def _reduce(values: List[float], op: "dist.ReduceOp") -> List[float]:
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.cpu().tolist()


def sum_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.SUM)


def max_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.MAX)


def min_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.MIN)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Tear the group down once every instance has finished its last collective; an instance tearing
    down (rank 0 also hosts the rendezvous store) while another is still mid-collective can abort it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
