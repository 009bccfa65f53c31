"""The sample photographs of ``--data real`` (data/images/*.jpg), read and preprocessed on each access."""
from __future__ import annotations

import glob
import os
from typing import Callable, List, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_IMAGES_DIR = os.path.join(REPO_ROOT, "data", "images")


def list_images(folder: str) -> List[str]:
    files = sorted(p for ext in ("*.jpg", "*.jpeg", "*.JPEG", "*.png") for p in glob.glob(os.path.join(folder, ext)))
    return files


class SampleImages(Dataset):
    """``length`` samples cycling over the images of ``folder`` so any host batch can be filled."""

    def __init__(self, folder: str, transform: Callable, length: int) -> None:
        self.files = list_images(folder)
        if not self.files:
            raise FileNotFoundError(f"No sample images in {folder}; run `make get_data` (datasets/get_images.sh) first.")
        self.transform, self.length = transform, max(length, len(self.files))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        with Image.open(self.files[index % len(self.files)]) as img:
            return self.transform(img.convert("RGB")), 0
