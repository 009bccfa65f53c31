"""Image preprocessing as the original: train = random-resized crop + flip, eval = resize by 256/224
then centre crop; normalisation fused into one multiply-subtract; uint8 kept for 8-bit IO."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToModelInput:
    """uint8 CHW tensor -> what crosses the bus: uint8 (8-bit IO), raw 0..255 floats (device-side
    normalisation), host-normalised floats (one fused multiply-subtract), or 0..1 floats (none)."""

    def __init__(self, location: str, eight_bit_io: bool, dtype: torch.dtype = torch.float32,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.location, self.eight_bit_io, self.dtype = location, eight_bit_io, dtype
        std_t = torch.tensor(std).view(3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = torch.tensor(mean).view(3, 1, 1) / std_t

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.eight_bit_io:
            return img
        x = img.float()
        if self.location == "host":
            x = x * self.scale - self.shift
        elif self.location == "none":
            x = x / 255.0
        return x.to(self.dtype)


def eval_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    return transforms.Compose([
        transforms.Resize(int(round(size * 256 / 224))),
        transforms.CenterCrop(size),
        transforms.PILToTensor(),
        to_input,
    ])


def train_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                    scale: Optional[Sequence[float]] = None) -> Callable:
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=tuple(scale) if scale else (0.08, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
        to_input,
    ])
