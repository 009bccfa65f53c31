"""Write the photographs bundled with scikit-image as JPEG files (the offline sample-image set)."""

import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from cnns.utils.atomic import atomic_file, remove_stale_temporaries
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import check_free_space, writable_folder

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "retina")


def write_samples(folder: str, quality: int = 90) -> list:
    """Save each available RGB photograph as ``<name>.jpg``; returns the written paths."""
    from skimage import data
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in PHOTOS:
        remove_stale_temporaries(folder, only_for=f"{name}.jpg")
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


SAMPLES_BYTES = 4 * 2 ** 20  # the eight photographs as JPEG take about 1 MiB


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    from cnns.utils.argparser import new_parser
    parser = new_parser(__doc__)
    parser.add_argument("folder", help="Output folder")
    folder = parser.parse_args(argv).folder
    writable_folder(folder, "folder")
    check_free_space(folder, SAMPLES_BYTES, "The sample images")
    paths = write_samples(folder)
    if not paths:
        raise UsageError("scikit-image provides none of its sample photographs here; reinstall scikit-image "
                         "or give images with --data real and a folder of JPEGs.")
    print(f"Wrote {len(paths)} sample images")


if __name__ == "__main__":
    main()
