"""ImageNet laid out as class sub-folders (``train/<class>/*.JPEG``, ``validation/<class>/*.JPEG``)."""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from cnns.utils.errors import UsageError

from .bbox import Box
from .corrupt import DECODE_ERRORS, CorruptImagePolicy


class ImageFolderDataset(ImageFolder):
    """torchvision's ImageFolder (same classes, samples, targets) with corrupt-file handling and boxes."""

    def __init__(self, root: str, transform: Callable, corrupt_policy: Optional[CorruptImagePolicy] = None,
                 boxes: Optional[Dict[str, List[Box]]] = None) -> None:
        check_folder(root)
        try:
            super().__init__(root, transform=transform)
        except FileNotFoundError as exc:
            raise UsageError(f"Image folder {root} is not a set of class sub-folders holding images: "
                             f"{str(exc).rstrip('.')}.") from None
        self.corrupt_policy = corrupt_policy or CorruptImagePolicy("stop")
        self.boxes = boxes

    def decode(self, index: int) -> Tuple[Image.Image, int, str]:
        path, target = self.samples[index]
        with Image.open(path) as img:
            return img.convert("RGB"), target, path

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            try:
                img, target, path = self.decode(position)
            except DECODE_ERRORS as exc:
                self.corrupt_policy.handle(self.samples[position][0], exc)
                continue
            boxes = self.boxes.get(os.path.basename(path)) if self.boxes is not None else None
            return self.transform(img, boxes), target
        raise UsageError(f"No image of {self.root} can be decoded.")


def check_folder(root: str) -> None:
    """A missing or empty folder is a usage error, said before any worker starts."""
    if not os.path.isdir(root):
        raise UsageError(f"Image folder {root} does not exist; --imagenet-data-path must hold train/ and "
                         f"validation/ with one sub-folder per class (or a WebDataset folder with metadata.json).")
    if not any(entry.is_dir() for entry in os.scandir(root)):
        raise UsageError(f"Image folder {root} has no class sub-folders; expected {root}/<class>/<image>.jpg.")
