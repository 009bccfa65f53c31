"""Host-generated data (``--data generated``/``synthetic``): one random host batch made up front and
handed out ``count`` times, so every step pays the host->device transfer but no loading cost."""
from __future__ import annotations

from typing import Iterator, Tuple

import torch


class RepeatedHostBatch:
    """Iterable of ``count`` identical (images, labels) host batches."""

    def __init__(self, batch: int, size: int, dtype: torch.dtype, num_classes: int, count: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        if dtype == torch.uint8:
            self.images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
        else:
            self.images = torch.randn((batch, 3, size, size), generator=g).to(dtype)
        self.labels = torch.randint(0, num_classes, (batch,), generator=g)
        self.count = count
        if torch.cuda.is_available():
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.count):
            yield self.images, self.labels
