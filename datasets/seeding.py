"""Random streams for data augmentation that differ between instances and workers yet repeat run to run.

Every instance seeds the global RNG with the same ``--seed`` (so model weights start identical), so the
augmentations cannot draw from it: they would repeat the same crops on every instance. Each process
(main or loader worker) instead gets its own ``torch.Generator`` mixed from the seed, the instance id,
the worker id and the worker's torch seed (which changes per epoch for non-persistent workers).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch.utils.data import get_worker_info


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from any integers (negative ones included), well spread by numpy's SeedSequence."""
    words = [int(p) % 2 ** 64 for p in parts]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class AugmentationRNG:
    """Lazily creates one generator per OS process, so forked loader workers never share a stream."""

    def __init__(self, seed: int, instance: int = 0) -> None:
        self.seed, self.instance = int(seed), int(instance)
        self._pid: Optional[int] = None
        self._generator: Optional[torch.Generator] = None

    def process_seed(self) -> int:
        info = get_worker_info()
        if info is None:
            return mix_seed(self.seed, self.instance, 0)
        return mix_seed(self.seed, self.instance, info.id + 1, torch.initial_seed())

    def generator(self) -> torch.Generator:
        if self._generator is None or self._pid != os.getpid():
            self._generator = torch.Generator().manual_seed(self.process_seed())
            self._pid = os.getpid()
        return self._generator

    def __getstate__(self) -> Dict[str, Any]:
        return {"seed": self.seed, "instance": self.instance, "_pid": None, "_generator": None}
