"""Image dataset for the bulk benchmark: one folder of images, ImageNet preprocessing.

Each item is decoded and turned into the tensor layout the exported ONNX graph
expects (float32, CHW, 224x224, ImageNet mean/std), so the host buffer can be
fed to ONNX Runtime without further copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RESIZE = 256
CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted so runs are reproducible."""
    return sorted(
        p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def preprocess(image: Image.Image) -> np.ndarray:
    """Resize the short side to 256, centre-crop 224, normalise; returns CHW float32."""
    image = image.convert("RGB")
    width, height = image.size
    scale = RESIZE / min(width, height)
    new_size = (max(RESIZE, round(width * scale)), max(RESIZE, round(height * scale)))
    image = image.resize(new_size, Image.BILINEAR)
    left = (new_size[0] - CROP) // 2
    top = (new_size[1] - CROP) // 2
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - MEAN) / STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class ImageFolderDataset:
    """Indexable view of one partition folder; items are preprocessed on access."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.files = list_images(self.directory)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index])

    def __getitem__(self, index: int) -> np.ndarray:
        with Image.open(self.files[index]) as image:
            return preprocess(image)


def synthetic_batch(batch_size: int, seed: int = 0) -> np.ndarray:
    """Random normalised-looking input, made once per process so no files are read."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, 3, CROP, CROP), dtype=np.float32)
