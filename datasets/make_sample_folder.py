"""Write a small ImageNet-layout folder (train/ and validation/ class sub-folders of JPEGs) made offline
from scikit-learn's handwritten digits (upscaled to RGB) and scikit-image's photographs: a real image
folder for tests, demos and the host benchmark when ImageNet is not at hand.

The images are written into a temporary folder inside the output folder and each class folder replaces
its old one only when every image is written, so a kill or a full disk never leaves a class folder that
looks complete and is not; the next start removes a killed run's temporary folder."""

import contextlib
import functools
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from cnns.utils.atomic import TEMP_SUFFIX, FolderLock, remove_stale_temporaries, temp_name_of
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import MAX_IMAGE_SIDE, at_least, writable_folder

PHOTO_CLASS = "photo"
STAGING = "samples"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry")


DIGITS_PER_CLASS = 174  # scikit-learn's digits: 174 to 183 images per class


@functools.lru_cache(maxsize=1)
def _digits() -> object:
    from sklearn.datasets import load_digits
    return load_digits()


def digit_images(digit: int, count: int, size: int) -> List[Image.Image]:
    """The first ``count`` 8x8 digits of class ``digit`` as ``size`` x ``size`` RGB images (ink tinted
    by class so channels differ)."""
    digits = _digits()
    picked = digits.images[digits.target == digit][:count]
    tint = np.array([255, 255 - 20 * digit, 60 + 19 * digit], dtype=np.float64)
    out = []
    for img in picked:
        rgb = (img[..., None] / 16.0 * tint).clip(0, 255).astype(np.uint8)
        out.append(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    return out


def photo_images(shorter_side: int) -> List[Image.Image]:
    """scikit-image's bundled RGB photographs scaled to ``shorter_side`` (aspect ratios kept)."""
    from skimage import data
    out = []
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)())
        if img.ndim != 3:
            continue
        pil = Image.fromarray(img[..., :3].astype(np.uint8))
        scale = shorter_side / min(pil.size)
        out.append(pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BILINEAR))
    return out


def _save(images: Sequence[Image.Image], staging: str, final: str, stem: str, quality: int) -> int:
    """Write ``images`` as JPEGs into ``staging``, each flushed to disk; an OS error names the file under
    its ``final`` folder, where the user will look for it. Returns how many were written."""
    os.makedirs(staging)
    for k, img in enumerate(images):
        name = f"{stem}_{k:04d}.jpg"
        try:
            with open(os.path.join(staging, name), "wb") as f:
                img.save(f, format="JPEG", quality=quality)
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), os.path.join(final, name)) from error
    return len(images)


def _install(staging: str, root: str, written: Sequence[Tuple[str, str]]) -> None:
    """Move each whole class folder ``split/name`` from ``staging`` to ``root``, replacing an old one."""
    trash = os.path.join(staging, "replaced")
    os.makedirs(trash)
    for split, name in written:
        target = os.path.join(root, split, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(target):
            os.replace(target, os.path.join(trash, f"{split}-{name}"))
        os.replace(os.path.join(staging, split, name), target)


def build_image_folder(root: str, *, digit_classes: int = 4, train_per_class: int = 6,
                       validation_per_class: int = 2, photos: bool = True, size: int = 32,
                       photo_size: int = 64, quality: int = 90) -> Dict[str, Dict[str, int]]:
    """Write ``root/{train,validation}/<class>/*.jpg``; returns image counts per split and class.

    Classes ``digit0..digit{n-1}`` hold digits; class ``photo`` (when ``photos``) holds the photographs,
    all but the last two in train/. Nothing appears in ``root`` unless every image was written; a folder
    this call created is removed again when it fails.
    """
    created = not os.path.isdir(root)
    os.makedirs(root, exist_ok=True)
    lock = FolderLock(root, "folder")
    staging = ""
    finished = False
    try:
        remove_stale_temporaries(root, only_for=STAGING)
        staging = tempfile.mkdtemp(prefix=temp_name_of(STAGING), suffix=TEMP_SUFFIX, dir=root)
        counts: Dict[str, Dict[str, int]] = {"train": {}, "validation": {}}
        written: List[Tuple[str, str]] = []

        def save(split: str, name: str, images: Sequence[Image.Image]) -> None:
            counts[split][name] = _save(images, os.path.join(staging, split, name), os.path.join(root, split, name),
                                        name, quality)
            written.append((split, name))

        for digit in range(digit_classes):
            name = f"digit{digit}"
            images = digit_images(digit, train_per_class + validation_per_class, size)
            save("train", name, images[:train_per_class])
            save("validation", name, images[train_per_class:])
        if photos:
            pictures = photo_images(photo_size)
            save("train", PHOTO_CLASS, pictures[:-2])
            save("validation", PHOTO_CLASS, pictures[-2:])
        _install(staging, root, written)
        finished = True
        return counts
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()
        if created and not finished:
            with contextlib.suppress(OSError):
                os.rmdir(root)


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    from cnns.utils.argparser import new_parser
    parser = new_parser(__doc__)
    parser.add_argument("folder", help="Output folder (train/ and validation/ are created in it)")
    parser.add_argument("--digit-classes", type=int, default=10, choices=range(1, 11), metavar="1..10",
                        help="Digit classes to write")
    parser.add_argument("--train-per-class", type=int, default=100, help="Training images per digit class")
    parser.add_argument("--validation-per-class", type=int, default=20, help="Validation images per digit class")
    parser.add_argument("--size", type=int, default=64, help="Side of the digit images in pixels")
    parser.add_argument("--no-photos", action="store_true", help="Leave out the photo class")
    args = parser.parse_args(argv)
    at_least(args, 1, ("train_per_class", "size"))
    at_least(args, 0, ("validation_per_class",))
    if args.size > MAX_IMAGE_SIDE:
        raise UsageError(f"--size must be at most {MAX_IMAGE_SIDE} pixels, got {args.size}.")
    wanted = args.train_per_class + args.validation_per_class
    if wanted > DIGITS_PER_CLASS:
        raise UsageError(f"--train-per-class {args.train_per_class} + --validation-per-class "
                         f"{args.validation_per_class} = {wanted} images per class, more than the {DIGITS_PER_CLASS} "
                         f"scikit-learn holds for its rarest digit; ask for at most {DIGITS_PER_CLASS} in all.")
    writable_folder(args.folder, "folder")
    counts = build_image_folder(args.folder, digit_classes=args.digit_classes, train_per_class=args.train_per_class,
                                validation_per_class=args.validation_per_class, photos=not args.no_photos,
                                size=args.size)
    for split, per_class in counts.items():
        print(f"{split}: {sum(per_class.values())} images in {len(per_class)} classes")


if __name__ == "__main__":
    main()
