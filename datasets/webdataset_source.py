"""A WebDataset folder as an IterableDataset: each instance and worker reads its own shard list."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from cnns.utils.errors import UsageError

from .corrupt import DECODE_ERRORS, CorruptImagePolicy
from .seeding import mix_seed
from .shard_plan import ShardPart, WorkerPlan, plan, use_percentage
from .webdataset_format import decode_sample, load_metadata, load_written_leftovers, split_shards

SHUFFLE_BUFFER = 1000


class WebDatasetSplit(IterableDataset):
    """One split of a folder written by create_webdataset.py, as (image, label) samples.

    ``num_workers`` and ``worker_batch`` must be those of the DataLoader: the shard plan gives every
    worker whole batches (training) and every instance the same number of them.
    """

    def __init__(self, folder: str, split: str, transform: Callable, *, instance: int = 0, num_instances: int = 1,
                 num_workers: int = 0, worker_batch: int = 1, drop_last: bool = False, shuffle: bool = False,
                 seed: int = 0, percentage: float = 100.0, corrupt_policy: Optional[CorruptImagePolicy] = None,
                 use_boxes: bool = False, memory_cache_ratio: float = 0.0) -> None:
        meta = load_metadata(folder)
        self.folder, self.split, self.transform = folder, split, transform
        self.format, self.classes = meta["format"], list(meta["classes"])
        self.instance, self.num_instances, self.num_workers = instance, num_instances, num_workers
        self.shuffle, self.seed, self.use_boxes = shuffle, seed, use_boxes
        self.corrupt_policy = corrupt_policy or CorruptImagePolicy("stop")
        self.shards = use_percentage(split_shards(folder, meta, split), percentage)
        self.has_boxes = bool(meta["splits"][split].get("boxes", False))
        self.written_leftovers = (load_written_leftovers(folder, meta, split, num_instances)
                                  if percentage >= 100 and num_instances > 1 else None)
        self._plan_args: Dict[str, Any] = {"worker_batch": worker_batch, "drop_last": drop_last,
                                           "written_leftovers": self.written_leftovers}
        self.epoch = 0
        # The first shards (memory_cache_ratio of them) are kept as raw samples in each worker's memory
        # once read, so later epochs do not read them from disk again (--webdataset-memory-cache-ratio).
        cached = int(round(memory_cache_ratio * len(self.shards)))
        self.cached_paths = {shard.path for shard in self.shards[:cached]}
        self.memory_cache: Dict[str, List[Dict[str, Any]]] = {}
        self._length = sum(w.samples for w in self.plan(0)[instance])

    def plan(self, epoch: int) -> List[List[WorkerPlan]]:
        seed = mix_seed(self.seed, epoch) if self.shuffle else None
        return plan(self.shards, self.num_instances, self.num_workers, shuffle_seed=seed, **self._plan_args)

    def __len__(self) -> int:
        return self._length

    def _worker(self) -> int:
        info = get_worker_info()
        if info is None:
            return 0
        if info.num_workers != max(1, self.num_workers):
            raise UsageError(f"This WebDataset split was planned for {self.num_workers} loader workers but runs "
                             f"under {info.num_workers}; pass the same num_workers to the DataLoader.")
        return info.id

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, int]]:
        worker, epoch = self._worker(), self.epoch
        self.epoch += 1
        work = self.plan(epoch)[self.instance][worker]
        parts = list(work.parts)
        samples: Iterator[Dict[str, Any]] = self._read(parts, epoch, worker)
        if self.shuffle:
            samples = wds.filters.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER // 10,
                                          seed=mix_seed(self.seed, self.instance, worker, epoch))(samples)
        produced = 0
        for item in self._decoded(samples):
            if work.limit is not None and produced >= work.limit:
                return
            produced += 1
            yield item

    def _read(self, parts: List[ShardPart], epoch: int, worker: int) -> Iterator[Dict[str, Any]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.instance, worker, epoch, 1))
            parts = [parts[k] for k in torch.randperm(len(parts), generator=g).tolist()]
        for part in parts:
            for index, sample in enumerate(self._shard_samples(part.path)):
                if index % part.stride == part.offset:
                    yield sample

    def _shard_samples(self, path: str) -> Iterator[Dict[str, Any]]:
        """A shard's raw samples, from this worker's memory cache when the shard is cached and was read."""
        if path in self.memory_cache:
            return iter(self.memory_cache[path])
        samples = wds.tarfile_samples([{"url": path}])
        if path not in self.cached_paths:
            return samples
        self.memory_cache[path] = [dict(sample) for sample in samples]
        return iter(self.memory_cache[path])

    def _decoded(self, samples: Iterator[Dict[str, Any]]) -> Iterator[Tuple[torch.Tensor, int]]:
        """Decoded, transformed samples; a skipped corrupt one is replaced by the next good one."""
        owed = 0
        for sample in samples:
            try:
                image, label, boxes, _ = decode_sample(sample, self.format)
            except (KeyError, *DECODE_ERRORS) as exc:
                self.corrupt_policy.handle(f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}", exc)
                owed += 1
                continue
            item = (self.transform(image, boxes if self.use_boxes else None), label)
            for _ in range(1 + owed):
                yield item
            owed = 0
        if owed:
            raise UsageError(f"The last {owed} samples of {self.folder} ({self.split}) read by this worker "
                             f"cannot be decoded; run datasets/validate_dataset.py on the folder.")
