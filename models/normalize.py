"""On-device input normalisation, so the host can send raw 8-bit images and save IO bandwidth."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .preprocessing import IMAGENET

IMAGENET_MEAN = IMAGENET.mean
IMAGENET_STD = IMAGENET.std


class NormalizeInputModel(nn.Module):
    """Casts NCHW images of any dtype and normalises them with one multiply-add before the model.

    Mean and std are given for [0, 1] images and rescaled for [0, 255] input. The input is cast
    to the dtype of the ``scale`` buffer, so the wrapper follows ``.half()`` or ``.to(bfloat16)``.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, output_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}; they must match.")
        self.model = model
        mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        self.register_buffer("scale", (1.0 / (std_t * 255.0)).to(output_dtype))
        self.register_buffer("shift", (-mean_t / std_t).to(output_dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.scale.dtype)
        return self.model(torch.addcmul(self.shift, x, self.scale))
