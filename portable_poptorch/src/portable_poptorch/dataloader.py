"""``poptorch.DataLoader``: one iteration yields one combined host batch
(micro-batch x device iterations x replicas x gradient accumulation), drop_last by default, each
process of a multi-instance run reading a disjoint share, optionally prefetched on a background thread."""
from __future__ import annotations

import queue
import random
import threading
from typing import Any, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from . import tree as pytree
from .enums import DataLoaderMode
from .options import Options


def combined_batch_size(options: Options, batch_size: int) -> int:
    """PopTorch's host batch: micro-batch x device iterations x replicas x gradient accumulation."""
    return (batch_size * options.device_iterations * options.replication_factor
            * options.Training.gradient_accumulation)


class ProcessShardSampler(Sampler):
    """Every process sees a disjoint, equally sized share; shuffled with a seed common to all processes."""

    def __init__(self, length: int, process_id: int, num_processes: int, shuffle: bool, seed: int,
                 drop_last: bool = True) -> None:
        self.length, self.pid, self.nproc = length, process_id, num_processes
        self.shuffle, self.seed, self.epoch, self.drop_last = shuffle, seed, 0, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Equal shares (drop_last); otherwise the first ``length % nproc`` processes take one more."""
        if self.drop_last:
            return self.length // self.nproc
        return len(range(self.pid, self.length, self.nproc))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        share = order[self.pid::self.nproc][: len(self)]
        self.epoch += 1
        return iter(share)


def _worker_init(base_seed: int, process_id: int, num_workers: int, user_fn: Any) -> Any:
    def init(worker_id: int) -> None:
        seed = base_seed + process_id * max(1, num_workers) + worker_id
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)
        if user_fn is not None:
            user_fn(worker_id)
    return init


def _concat(parts: List[Any]) -> Any:
    leaves = [pytree.tree_flatten(p)[0] for p in parts]
    spec = pytree.tree_flatten(parts[0])[1]
    return pytree.tree_unflatten([torch.cat([row[i] for row in leaves]) for i in range(len(leaves[0]))], spec)


def _take(tree: Any, lo: int, hi: int) -> Any:
    return pytree.tree_map(lambda t: t[lo:hi], tree)


def _rebatch(batches: Iterator[Any], size: int, drop_last: bool) -> Iterator[Any]:
    """Concatenate worker-sized batches into full combined batches."""
    pending: List[Any] = []
    count = 0
    for b in batches:
        pending.append(b)
        count += pytree.tree_leaves(b)[0].shape[0]
        while count >= size:
            full = _concat(pending)
            yield _take(full, 0, size)
            rest = _take(full, size, count)
            count -= size
            pending = [rest] if count else []
    if pending and not drop_last:
        yield _concat(pending)


class DataLoader(torch.utils.data.DataLoader):
    """Same constructor as ``poptorch.DataLoader``."""

    def __init__(self, options: Options, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 num_workers: int = 0, drop_last: bool = True, persistent_workers: Optional[bool] = None,
                 auto_distributed_partitioning: bool = True, mode: DataLoaderMode = DataLoaderMode.Sync,
                 async_options: Optional[dict] = None, rebatched_worker_size: Optional[int] = None,
                 **kwargs: Any) -> None:
        self.options = options
        self._combined_batch_size = combined_batch_size(options, batch_size)
        self._mode = DataLoaderMode(mode)
        self._async_options = dict(async_options or {})
        self._drop_last_combined = drop_last
        pid, nproc = options.Distributed.process_id, options.Distributed.num_processes
        seed = options.random_seed if options.random_seed is not None else 0
        worker_batch = self._combined_batch_size
        if rebatched_worker_size and self._mode != DataLoaderMode.Sync:
            worker_batch = int(rebatched_worker_size)
        self._rebatch = worker_batch != self._combined_batch_size
        sampler = kwargs.pop("sampler", None)
        if sampler is None and not isinstance(dataset, IterableDataset) and auto_distributed_partitioning:
            sampler = ProcessShardSampler(len(dataset), pid, nproc, shuffle, seed, drop_last)
            shuffle = False
        if persistent_workers is None:
            persistent_workers = num_workers > 0
        kwargs.setdefault("pin_memory", options.Portable.resolved_device().type == "cuda")
        kwargs["worker_init_fn"] = _worker_init(seed, pid, num_workers, kwargs.get("worker_init_fn"))
        super().__init__(dataset, batch_size=worker_batch, shuffle=shuffle, sampler=sampler,
                         num_workers=num_workers, drop_last=drop_last and not self._rebatch,
                         persistent_workers=persistent_workers, **kwargs)

    @property
    def combinedBatchSize(self) -> int:
        return self._combined_batch_size

    def __len__(self) -> int:
        if not self._rebatch:
            return super().__len__()
        n = len(self.dataset) if isinstance(self.dataset, IterableDataset) else len(self.sampler)
        full, rest = divmod(n, self._combined_batch_size)
        return full + (1 if rest and not self._drop_last_combined else 0)

    def _batches(self) -> Iterator[Any]:
        it = super().__iter__()
        return _rebatch(it, self._combined_batch_size, self._drop_last_combined) if self._rebatch else it

    def __iter__(self) -> Iterator[Any]:
        if self._mode == DataLoaderMode.Sync:
            return self._batches()
        return _prefetch(self._batches(), self._async_options.get("buffer_size", 3))

    def terminate(self) -> None:
        return None


def _prefetch(source: Iterator[Any], depth: int) -> Iterator[Any]:
    """Load batches on a background thread so the next one is ready when the model asks."""
    q: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, depth))
    done = object()
    error: List[BaseException] = []

    def run() -> None:
        try:
            for item in source:
                q.put(item)
        except BaseException as exc:  # re-raised in the consumer
            error.append(exc)
        finally:
            q.put(done)
    threading.Thread(target=run, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            if error:
                raise error[0]
            return
        yield item


class AsynchronousDataAccessor:
    """Wraps any loader and prefetches it on a background thread, as PopTorch's class of that name."""

    def __init__(self, dataset: Any, buffer_size: int = 3, **kwargs: Any) -> None:
        self.dataset, self.buffer_size = dataset, buffer_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Any]:
        return _prefetch(iter(self.dataset), self.buffer_size)

    def terminate(self) -> None:
        return None
