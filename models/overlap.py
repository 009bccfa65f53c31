"""Overlapped host IO on IPUs (``--num-io-tiles``): the input and output streams of the model are
marked for overlap with the gradient-accumulation loop, as the original application did."""
from __future__ import annotations

from types import ModuleType

import torch
from torch import nn


class OverlapIO(nn.Module):
    """Marks the model's input and output with ``poptorch.set_overlap_for_input/_output``."""

    def __init__(self, model: nn.Module, poptorch: ModuleType) -> None:
        super().__init__()
        self.model = model
        self._poptorch = poptorch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mode = self._poptorch.OverlapMode.OverlapAccumulationLoop
        images = self._poptorch.set_overlap_for_input(images, mode)
        return self._poptorch.set_overlap_for_output(self.model(images), mode)
