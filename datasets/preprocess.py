"""Image preprocessing as the original: train = random-resized crop + horizontal flip, eval = resize to
size / crop ratio (256/224) then centre crop; normalisation fused into one multiply-subtract; uint8 kept
for 8-bit IO. Mean, std and crop ratio are the model's (``models.model_preprocessing``).

The random steps draw from an ``AugmentationRNG`` (different per instance and worker) instead of torch's
global generator; with no RNG given they use the global one and then match torchvision's classes draw
for draw. Every step accepts a PIL image or a uint8 CHW tensor (WebDataset ``tensor`` shards).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
from PIL import Image

from cnns.models.preprocessing import IMAGENET, Preprocessing

from .bbox import Box, keeps_object
from .seeding import AugmentationRNG

IMAGENET_MEAN = IMAGENET.mean
IMAGENET_STD = IMAGENET.std
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CIFAR_PADDING = 4

ImageLike = Any  # PIL.Image.Image or a uint8 CHW torch.Tensor
Crop = Tuple[int, int, int, int]  # top, left, height, width


def vision() -> Any:
    """torchvision's functional transforms, imported when an image is first transformed: importing
    torchvision loads torch._dynamo, sympy and triton (about 160 MB of host memory), which a run on
    synthetic or generated data never uses."""
    from torchvision.transforms import functional
    return functional


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


def image_size(img: ImageLike) -> Tuple[int, int]:
    """(height, width) of a PIL image or CHW tensor."""
    _, height, width = vision().get_dimensions(img)
    return height, width


def to_uint8_chw(img: ImageLike) -> torch.Tensor:
    """PIL image -> uint8 CHW tensor; tensors (already uint8 CHW) pass through."""
    if isinstance(img, Image.Image):
        return vision().pil_to_tensor(img)
    return img


def _generator(rng: Optional[AugmentationRNG]) -> Optional[torch.Generator]:
    return rng.generator() if rng is not None else None


class RandomResizedCrop:
    """Random area/aspect crop resized to ``size``; with boxes, crops keeping under 10% of every object
    are redrawn and, failing ten draws, the whole image is used (it holds all of every object)."""

    takes_boxes = True

    def __init__(self, size: int, scale: Sequence[float] = DEFAULT_SCALE, ratio: Sequence[float] = DEFAULT_RATIO,
                 rng: Optional[AugmentationRNG] = None) -> None:
        self.size, self.scale, self.ratio, self.rng = size, tuple(scale), tuple(ratio), rng

    def params(self, height: int, width: int, boxes: Optional[Sequence[Box]] = None) -> Crop:
        g = _generator(self.rng)
        area = height * width
        log_lo, log_hi = (float(v) for v in torch.log(torch.tensor(self.ratio)))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(self.scale[0], self.scale[1], generator=g).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=g)).item()
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
                left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
                if keeps_object((top, left, h, w), boxes, height, width):
                    return top, left, h, w
        if boxes:
            return 0, 0, height, width
        return self._central(height, width)

    def _central(self, height: int, width: int) -> Crop:
        """Largest centred crop whose aspect ratio lies within ``ratio``."""
        in_ratio = width / height
        w, h = width, height
        if in_ratio < min(self.ratio):
            h = int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w = int(round(h * max(self.ratio)))
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: ImageLike, boxes: Optional[Sequence[Box]] = None) -> ImageLike:
        top, left, h, w = self.params(*image_size(img), boxes)
        return vision().resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)


class RandomHorizontalFlip:
    """Mirror with probability ``p``."""

    def __init__(self, p: float = 0.5, rng: Optional[AugmentationRNG] = None) -> None:
        self.p, self.rng = p, rng

    def __call__(self, img: ImageLike) -> ImageLike:
        if torch.rand(1, generator=_generator(self.rng)).item() < self.p:
            return vision().hflip(img)
        return img


class PaddedRandomCrop:
    """CIFAR-style augmentation: zero-pad by ``padding`` then crop ``size`` at a random offset."""

    def __init__(self, size: int, padding: int = CIFAR_PADDING, rng: Optional[AugmentationRNG] = None) -> None:
        self.size, self.padding, self.rng = size, padding, rng

    def __call__(self, img: ImageLike) -> ImageLike:
        g = _generator(self.rng)
        img = vision().pad(img, [self.padding])
        height, width = image_size(img)
        top = int(torch.randint(0, height - self.size + 1, (1,), generator=g).item())
        left = int(torch.randint(0, width - self.size + 1, (1,), generator=g).item())
        return vision().crop(img, top, left, self.size, self.size)


class Resize:
    """Shorter side to ``size`` (bilinear, antialiased), as torchvision's Resize with an int."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: ImageLike) -> ImageLike:
        return vision().resize(img, [self.size], antialias=True)


class CenterCrop:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: ImageLike) -> ImageLike:
        return vision().center_crop(img, [self.size, self.size])


class Pipeline:
    """Steps applied in order; box-aware steps (``takes_boxes``) also get the sample's object boxes."""

    def __init__(self, *steps: Callable) -> None:
        self.steps = steps
        vision()   # imported where the pipeline is built, so data-loader workers inherit it, not import it each

    def __call__(self, img: ImageLike, boxes: Optional[Sequence[Box]] = None) -> torch.Tensor:
        for step in self.steps:
            img = step(img, boxes) if getattr(step, "takes_boxes", False) else step(img)
        return img


def eval_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                   preprocessing: Preprocessing = IMAGENET) -> Pipeline:
    return Pipeline(Resize(preprocessing.eval_resize(size)), CenterCrop(size), to_uint8_chw, to_input)


def train_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                    scale: Optional[Sequence[float]] = None, rng: Optional[AugmentationRNG] = None) -> Pipeline:
    return Pipeline(RandomResizedCrop(size, scale or DEFAULT_SCALE, rng=rng), RandomHorizontalFlip(rng=rng),
                    to_uint8_chw, to_input)


def cifar_train_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                          rng: Optional[AugmentationRNG] = None) -> Pipeline:
    """CIFAR images are already at (or near) model size: pad-and-crop plus flip instead of area crops."""
    return Pipeline(Resize(size), PaddedRandomCrop(size, rng=rng), RandomHorizontalFlip(rng=rng),
                    to_uint8_chw, to_input)


def cifar_eval_transform(size: int, to_input: Callable[[torch.Tensor], torch.Tensor]) -> Pipeline:
    return Pipeline(Resize(size), CenterCrop(size), to_uint8_chw, to_input)
