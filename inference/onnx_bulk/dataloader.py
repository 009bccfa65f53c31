"""Fill host buffers of ``batches_per_step`` batches with a pool of loader threads.

The IPU benchmark staged many batches on the host before streaming them to the
device, so host IO never sat inside the timed loop.  Here the same idea keeps
JPEG decoding out of the ONNX Runtime timing: a whole step is decoded first,
then run.  PIL releases the GIL while decoding and resizing, so threads help.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cnns.inference.onnx_bulk.data import ImageFolderDataset


@dataclass
class Step:
    """One host buffer: ``batches`` has shape (n_batches, batch_size, 3, side, side).

    The last batch of a partition is padded by repeating its final image;
    ``valid`` counts the real images and ``names`` lists them in buffer order.
    """

    batches: np.ndarray
    valid: int
    names: list[str]


def step_buffer_bytes(num_images: int, batch_size: int, batches_per_step: int, side: int) -> int:
    """Size of the largest host buffer a partition of ``num_images`` float32 images of ``side`` needs."""
    batches = min(batches_per_step, math.ceil(num_images / batch_size))
    return batches * batch_size * 3 * side * side * np.dtype(np.float32).itemsize


class HostBufferLoader:
    """Iterates over a dataset one host buffer (step) at a time."""

    def __init__(
        self, dataset: ImageFolderDataset, batch_size: int, batches_per_step: int, num_workers: int
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.images_per_step = batch_size * batches_per_step
        self.num_workers = max(1, num_workers)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.images_per_step)

    def _load_step(self, pool: ThreadPoolExecutor, start: int) -> Step:
        stop = min(start + self.images_per_step, len(self.dataset))
        valid = stop - start
        n_batches = math.ceil(valid / self.batch_size)
        side = self.dataset.side
        buffer = np.empty((n_batches * self.batch_size, 3, side, side), dtype=np.float32)

        def fill(slot: int) -> None:
            buffer[slot] = self.dataset[start + slot]

        list(pool.map(fill, range(valid)))
        buffer[valid:] = buffer[valid - 1]
        names = [self.dataset.name(i) for i in range(start, stop)]
        return Step(buffer.reshape(n_batches, self.batch_size, 3, side, side), valid, names)

    def __iter__(self) -> Iterator[Step]:
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            for start in range(0, len(self.dataset), self.images_per_step):
                yield self._load_step(pool, start)
