"""Image dataset for the bulk benchmark: one folder of images, the model's evaluation preprocessing.

The transform is the shared one (``cnns.datasets.eval_transform``) with the mean/std, crop ratio and
input side the model table gives the model, so the ONNX graph sees what the PyTorch benchmark feeds
the same model; items come out as float32 CHW arrays that ONNX Runtime takes without a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cnns.datasets.preprocess import ToModelInput, eval_transform
from cnns.models.preprocessing import Preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

Transform = Callable[[Image.Image], np.ndarray]


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted so runs are reproducible."""
    return sorted(
        p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def image_transform(preprocessing: Preprocessing, side: int) -> Transform:
    """RGB image -> normalised float32 CHW array of ``side`` x ``side`` (resize, centre crop, normalise)."""
    pipeline = eval_transform(side, ToModelInput("host", False, mean=preprocessing.mean, std=preprocessing.std),
                              preprocessing)

    def transform(image: Image.Image) -> np.ndarray:
        return np.ascontiguousarray(pipeline(image.convert("RGB")).numpy())

    return transform


class ImageFolderDataset:
    """Indexable view of one partition folder; items are preprocessed on access."""

    def __init__(self, directory: Path, transform: Transform, side: int) -> None:
        self.directory = Path(directory)
        self.files = list_images(self.directory)
        self.transform = transform
        self.side = side

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index])

    def __getitem__(self, index: int) -> np.ndarray:
        with Image.open(self.files[index]) as image:
            return self.transform(image)


def synthetic_batch(batch_size: int, side: int, seed: int = 0) -> np.ndarray:
    """Random normalised-looking input, made once per process so no files are read."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, 3, side, side), dtype=np.float32)
