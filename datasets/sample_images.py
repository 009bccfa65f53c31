"""The sample photographs of ``--data real`` (data/images/*.jpg), read and preprocessed on each access."""
from __future__ import annotations

import glob
import os
from typing import Callable, List, Optional, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from cnns.utils.errors import UsageError

from .corrupt import DECODE_ERRORS, CorruptImagePolicy

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_IMAGES_DIR = os.path.join(REPO_ROOT, "data", "images")


def list_images(folder: str) -> List[str]:
    files = sorted(p for ext in ("*.jpg", "*.jpeg", "*.JPEG", "*.png") for p in glob.glob(os.path.join(folder, ext)))
    return files


class SampleImages(Dataset):
    """``length`` samples cycling over the images of ``folder`` so any host batch can be filled; an image
    that cannot be decoded follows ``--corrupt-images`` (stop naming it, or skip to the next image)."""

    def __init__(self, folder: str, transform: Callable, length: int,
                 policy: Optional[CorruptImagePolicy] = None) -> None:
        self.folder = folder
        self.policy = policy or CorruptImagePolicy("stop")
        self.files = list_images(folder)
        if not self.files:
            raise FileNotFoundError(f"No sample images in {folder}; run `make get_data` (datasets/get_images.sh) first.")
        self.transform, self.length = transform, max(length, len(self.files))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                with Image.open(path) as img:
                    return self.transform(img.convert("RGB")), 0
            except DECODE_ERRORS as exc:
                self.policy.handle(path, exc)
        raise UsageError(f"No image in {self.folder} can be decoded; run `make get_data` to write the samples again.")
