"""Write the photographs bundled with scikit-image as JPEG files (the offline sample-image set)."""

import argparse
import os

import numpy as np
from PIL import Image

from cnns.utils.atomic import atomic_file

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "retina")


def write_samples(folder: str, quality: int = 90) -> list:
    """Save each available RGB photograph as ``<name>.jpg``; returns the written paths."""
    from skimage import data
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            img = np.asarray(loader())
        except Exception:  # a photograph that needs a download (pooch) is skipped offline
            continue
        if img.ndim != 3 or img.shape[2] < 3:
            continue
        path = os.path.join(folder, f"{name}.jpg")
        with atomic_file(path) as f:
            Image.fromarray(img[..., :3].astype(np.uint8)).save(f, format="JPEG", quality=quality)
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", help="Output folder")
    paths = write_samples(parser.parse_args().folder)
    print(f"Wrote {len(paths)} sample images")
