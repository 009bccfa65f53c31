"""Gradient and weight synchronisation between instances (processes of one torch.distributed group)."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist


def world_size() -> int:
    """Instances in the run; 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _buckets(tensors: List[torch.Tensor]) -> Dict[Tuple[torch.device, torch.dtype], List[torch.Tensor]]:
    groups: Dict[Tuple[torch.device, torch.dtype], List[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        groups[(t.device, t.dtype)].append(t)
    return groups


def _flatten(tensors: List[torch.Tensor]) -> torch.Tensor:
    """One contiguous buffer holding every tensor of a bucket, so a bucket is one collective."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten(flat: torch.Tensor, like: List[torch.Tensor]) -> List[torch.Tensor]:
    """Views of ``flat`` shaped as ``like``, in order."""
    return [chunk.view_as(t) for chunk, t in zip(torch.split(flat, [t.numel() for t in like]), like)]


def all_reduce_gradients(params: List[torch.Tensor], mean: bool) -> None:
    """One all-reduce per device/dtype bucket; divides by the instance count when ``mean``."""
    size = world_size()
    grads = [p.grad for p in params if p.grad is not None]
    for bucket in _buckets(grads).values():
        flat = _flatten(bucket)
        dist.all_reduce(flat)
        if mean:
            flat /= size
        for grad, reduced in zip(bucket, _unflatten(flat, bucket)):
            grad.copy_(reduced)


def broadcast_from_first(tensors: List[torch.Tensor]) -> None:
    """Give every instance instance 0's values, as PopTorch loads one set of weights on all replicas."""
    with torch.no_grad():
        for bucket in _buckets([t.data for t in tensors]).values():
            flat = _flatten(bucket)
            dist.broadcast(flat, src=0)
            for t, value in zip(bucket, _unflatten(flat, bucket)):
                t.copy_(value)
