"""Which samples of a sharded split each instance and each loader worker reads.

Sharding is by shard lists: full-size shards are dealt whole to instances (the same number each,
reshuffled every training epoch with a seed common to all instances); the shards that cannot be dealt
evenly (the short last one, and the full ones left over) are split sample by sample, sample g of their
concatenation going to instance g mod N. distributed_webdataset.py writes exactly those per-instance
samples into their own shards, so instances need not read the leftovers whole. Together the instances
read every sample once. Within an instance, shard parts go to the least loaded worker.

For training (``drop_last``) every worker then stops at a whole number of worker batches, trimmed so
all instances produce the same number of batches (they must run equal step counts).
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

import torch

from .webdataset_format import Shard


@dataclasses.dataclass(frozen=True)
class ShardPart:
    """Samples ``offset, offset + stride, ...`` of one shard file."""

    path: str
    samples: int
    stride: int = 1
    offset: int = 0

    @property
    def count(self) -> int:
        return len(range(self.offset, self.samples, self.stride))


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    parts: Tuple[ShardPart, ...]
    limit: Optional[int]  # samples to yield; None = all of the parts

    @property
    def samples(self) -> int:
        return self.limit if self.limit is not None else sum(p.count for p in self.parts)


def use_percentage(shards: Sequence[Shard], percentage: float) -> List[Shard]:
    """The first ``percentage`` % of the shards (at least one)."""
    keep = max(1, math.ceil(len(shards) * percentage / 100.0))
    return list(shards[:keep])


def deal(shards: Sequence[Shard], num_instances: int) -> Tuple[List[Shard], List[Shard]]:
    """(shards dealt whole, leftover shards split by sample), the split every instance agrees on."""
    full_size = max((s.samples for s in shards), default=0)
    full = [s for s in shards if s.samples == full_size]
    whole = full[: len(full) // num_instances * num_instances]
    taken = set(id(s) for s in whole)
    return whole, [s for s in shards if id(s) not in taken]


def leftover_parts(leftovers: Sequence[Shard], instance: int, num_instances: int) -> List[ShardPart]:
    """Instance ``instance``'s samples of the leftover shards: global sample g goes to g mod N."""
    parts, start = [], 0
    for shard in leftovers:
        offset = (instance - start) % num_instances
        if offset < shard.samples:
            parts.append(ShardPart(shard.path, shard.samples, num_instances, offset))
        start += shard.samples
    return parts


def instance_parts(shards: Sequence[Shard], instance: int, num_instances: int,
                   shuffle_seed: Optional[int] = None,
                   written_leftovers: Optional[Sequence[Sequence[Shard]]] = None) -> List[ShardPart]:
    """This instance's whole shards (shuffled among instances when ``shuffle_seed`` is given), then its
    leftover samples, read from distributed_webdataset.py's files when given."""
    whole, rest = deal(shards, num_instances)
    order = list(range(len(whole)))
    if shuffle_seed is not None:
        order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    parts = [ShardPart(whole[k].path, whole[k].samples) for k in order[instance::num_instances]]
    if written_leftovers is not None:
        parts += [ShardPart(s.path, s.samples) for s in written_leftovers[instance]]
    else:
        parts += leftover_parts(rest, instance, num_instances)
    return parts


def assign_workers(parts: Sequence[ShardPart], num_workers: int) -> List[List[ShardPart]]:
    """Each part to the worker with the fewest samples so far (lowest id on ties)."""
    workers: List[List[ShardPart]] = [[] for _ in range(max(1, num_workers))]
    loads = [0] * len(workers)
    for part in parts:
        w = loads.index(min(loads))
        workers[w].append(part)
        loads[w] += part.count
    return workers


def plan(shards: Sequence[Shard], num_instances: int, num_workers: int, *, worker_batch: int, drop_last: bool,
         shuffle_seed: Optional[int] = None, written_leftovers: Optional[Sequence[Sequence[Shard]]] = None
         ) -> List[List[WorkerPlan]]:
    """``[instance][worker]`` plans; with ``drop_last`` every worker yields whole batches and every
    instance the same number of them."""
    per_instance = [assign_workers(instance_parts(shards, i, num_instances, shuffle_seed, written_leftovers),
                                   num_workers) for i in range(num_instances)]
    if not drop_last:
        return [[WorkerPlan(tuple(w), None) for w in workers] for workers in per_instance]
    batches = [[sum(p.count for p in w) // worker_batch for w in workers] for workers in per_instance]
    target = min(sum(b) for b in batches)
    plans = []
    for workers, counts in zip(per_instance, batches):
        counts = list(counts)
        while sum(counts) > target:
            counts[counts.index(max(counts))] -= 1
        plans.append([WorkerPlan(tuple(w), c * worker_batch) for w, c in zip(workers, counts)])
    return plans
