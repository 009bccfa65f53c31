"""Convert an ImageNet-layout image folder (train/ and validation/ class sub-folders) into WebDataset
shards plus metadata.json, so training reads a few large sequential files instead of a million small
ones. Images can be pre-resized/cropped once here (``--*-preprocess-steps``) and stored either as JPEG
(``img``) or as decoded uint8 arrays (``tensor``: no decoding at load time, much larger files)."""

import argparse
import multiprocessing
import os
import random
import shutil
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import webdataset as wds
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import functional as F

from cnns.datasets.bbox import BBOX_FILE, Box, crop_boxes, load_boxes
from cnns.datasets.corrupt import CORRUPT_IMAGE_POLICIES, DECODE_ERRORS, CorruptImagePolicy
from cnns.datasets.webdataset_format import (FORMAT_VERSION, FORMATS, METADATA_FILE, SPLITS, combined_checksum,
                                        encode_sample, shard_entry)
from cnns.utils.argparser import new_parser
from cnns.utils.atomic import TEMP_SUFFIX, FolderLock, remove_stale_temporaries, write_json
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import at_most_workers, check_free_space, writable_folder

STEP_NAMES = ("resize", "center_crop")
DEFAULT_STEP_SIZE = {"resize": 256, "center_crop": 224}
Step = Tuple[str, int]


def parse_step(text: str) -> Step:
    """``resize[:N]`` (shorter side to N) or ``center_crop[:N]`` (N x N centre)."""
    name, _, size = text.partition(":")
    if name not in STEP_NAMES or (size and not size.isdigit()) or size == "0":
        raise UsageError(f"Preprocess step {text!r} is not valid; use resize[:N] or center_crop[:N] with N a "
                         f"positive pixel count (defaults: resize 256, center_crop 224).")
    return name, int(size) if size else DEFAULT_STEP_SIZE[name]


def apply_steps(img: Image.Image, boxes: Optional[List[Box]], steps: Sequence[Step]
                ) -> Tuple[Image.Image, Optional[List[Box]]]:
    for name, size in steps:
        if name == "resize":
            img = F.resize(img, [size], antialias=True)
        else:
            width, height = img.size
            crop = ((height - size) // 2, (width - size) // 2, size, size)
            img = F.center_crop(img, [size, size])
            boxes = crop_boxes(boxes, crop, height, width)
    return img, boxes


def encode_task(task: Tuple[str, str, int, str, List[Step], str, int, Optional[List[Box]]]) -> Tuple[str, Any]:
    """Read, check and encode one image (runs in a pool worker): ('ok', sample) or ('corrupt', reason)."""
    key, path, label, source, steps, fmt, quality, boxes = task
    try:
        with Image.open(path) as img:
            is_jpeg = img.format == "JPEG"
            img = img.convert("RGB")
    except DECODE_ERRORS as exc:
        return "corrupt", str(exc)
    untouched = None
    if fmt == "img" and not steps and is_jpeg:
        with open(path, "rb") as f:
            untouched = f.read()
    img, boxes = apply_steps(img, boxes, steps)
    return "ok", encode_sample(key, img, label, fmt, quality, source, boxes, jpeg_bytes=untouched)


def list_split(folder: str, classes: List[str]) -> List[Tuple[str, int]]:
    """(path, label) of every image, labels indexed by the training split's sorted class names."""
    split_classes, _ = find_classes(folder)
    unknown = sorted(set(split_classes) - set(classes))
    if unknown:
        raise UsageError(f"{folder} has class folders missing from train/: {', '.join(unknown[:5])}; both splits "
                         f"must use the same class names.")
    return make_dataset(folder, {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS,
                        allow_empty=True)


def write_split(split: str, samples: List[Tuple[str, int]], args: argparse.Namespace, steps: List[Step],
                boxes: Optional[Dict[str, List[Box]]], policy: CorruptImagePolicy, pool: Any) -> Dict[str, Any]:
    """Write one split's shards; returns its metadata entry."""
    if args.shuffle:
        random.Random(f"{args.seed}/{split}").shuffle(samples)
    tasks: Iterator[Any] = ((f"{k:08d}", path, label, os.path.relpath(path, args.source), steps, args.format,
                             args.image_quality, boxes.get(os.path.basename(path)) if boxes is not None else None)
                            for k, (path, label) in enumerate(samples))
    results = pool.imap(encode_task, tasks, chunksize=16) if pool is not None else map(encode_task, tasks)
    counts: Dict[str, int] = {}
    writer = None
    for (path, _), (status, payload) in zip(samples, results):
        if status == "corrupt":
            policy.handle(path, OSError(payload))
            continue
        if writer is None:
            writer = wds.ShardWriter(os.path.join(args.target, f"{split}-%06d.tar"), maxcount=args.samples_per_shard,
                                     maxsize=float("inf"), verbose=0, mtime=0.0)
        writer.write(payload)
        counts[os.path.basename(writer.fname)] = counts.get(os.path.basename(writer.fname), 0) + 1
    if writer is not None:
        writer.close()
    shards = [shard_entry(args.target, name, n) for name, n in counts.items()]
    return {"samples": sum(counts.values()), "shards": shards, "preprocess_steps": [f"{n}:{s}" for n, s in steps],
            "shuffled": bool(args.shuffle), "boxes": boxes is not None}


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    p = parser.add_argument
    p("--source", required=True, help="Image folder holding train/ and/or validation/ with one sub-folder per class")
    p("--target", required=True, help="Output folder for the shards and metadata.json (must not hold a dataset)")
    p("--shuffle", action="store_true", help="Shuffle each split's sample order before sharding (advised for train)")
    p("--seed", type=int, default=0, help="Seed of --shuffle")
    p("--train-preprocess-steps", nargs="*", default=[], metavar="STEP",
      help="Applied once to training images: resize[:N] (shorter side, default 256), center_crop[:N] (default 224)")
    p("--validation-preprocess-steps", nargs="*", default=[], metavar="STEP",
      help="Applied once to validation images, same steps as --train-preprocess-steps")
    p("--samples-per-shard", type=int, default=1024, help="Samples in each shard file")
    p("--format", choices=FORMATS, default="img", help="img: JPEG; tensor: decoded uint8 CHW arrays (.npy)")
    p("--image-quality", type=int, default=95,
      help="JPEG quality (1-100) of re-encoded images; JPEGs without preprocess steps are copied unchanged")
    p("--corrupt-images", choices=CORRUPT_IMAGE_POLICIES, default="stop",
      help="An unreadable source image: stop with its name, or skip it (warned and counted)")
    p("--num-workers", type=int, default=min(8, os.cpu_count() or 1), help="Encoding processes (0: none)")
    args = parser.parse_args(argv)
    writable_folder(args.target, "--target")
    if args.samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be at least 1, got {args.samples_per_shard}.")
    if not 1 <= args.image_quality <= 100:
        raise UsageError(f"--image-quality must be between 1 and 100, got {args.image_quality}.")
    if args.num_workers < 0:
        raise UsageError(f"--num-workers must be 0 or more, got {args.num_workers}.")
    at_most_workers(args, ("num_workers",))
    args.train_steps = [parse_step(s) for s in args.train_preprocess_steps]
    args.validation_steps = [parse_step(s) for s in args.validation_preprocess_steps]
    return args


def create(args: argparse.Namespace) -> Dict[str, Any]:
    """Write every split found in ``args.source``; returns the metadata written."""
    present = [s for s in SPLITS if os.path.isdir(os.path.join(args.source, s))]
    if not present:
        raise UsageError(f"--source {args.source} holds neither train/ nor validation/ class folders.")
    if os.path.exists(os.path.join(args.target, METADATA_FILE)):
        raise UsageError(f"--target {args.target} already holds a dataset ({METADATA_FILE}); choose an empty folder.")
    classes, _ = find_classes(os.path.join(args.source, present[0]))
    bbox_path = os.path.join(args.source, BBOX_FILE)
    boxes = load_boxes(bbox_path) if os.path.isfile(bbox_path) else None
    policy = CorruptImagePolicy(args.corrupt_images)
    listed = {split: list_split(os.path.join(args.source, split), classes) for split in present}
    source_bytes = sum(os.path.getsize(path) for samples in listed.values() for path, _ in samples)
    check_free_space(args.target, source_bytes, "The WebDataset (at least the size of its source images)")
    os.makedirs(args.target, exist_ok=True)
    lock = FolderLock(args.target, "--target")
    staging, pool = "", None
    try:
        remove_stale_temporaries(args.target)
        staging = tempfile.mkdtemp(prefix=".staging-", suffix=TEMP_SUFFIX, dir=args.target)
        staged = argparse.Namespace(**{**vars(args), "target": staging})
        pool = multiprocessing.Pool(args.num_workers) if args.num_workers > 0 else None
        splits = {split: write_split(split, samples, staged,
                                     args.train_steps if split == "train" else args.validation_steps,
                                     boxes, policy, pool)
                  for split, samples in listed.items()}
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(args.target, name))
        meta = {"format_version": FORMAT_VERSION, "format": args.format, "image_quality": args.image_quality,
                "samples_per_shard": args.samples_per_shard, "seed": args.seed, "classes": classes,
                "skipped_corrupt_images": policy.skipped, "splits": splits, "checksum": combined_checksum(splits)}
        write_json(os.path.join(args.target, METADATA_FILE), meta)
        return meta
    finally:
        if pool is not None:
            pool.terminate()
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_arguments(argv)
    meta = create(args)
    for split, info in meta["splits"].items():
        print(f"{split}: {info['samples']} samples in {len(info['shards'])} shards")
    if meta["skipped_corrupt_images"]:
        print(f"Skipped {meta['skipped_corrupt_images']} corrupt images.")
    print(f"Wrote {os.path.join(args.target, METADATA_FILE)} (checksum {meta['checksum'][:16]}...)")
    return meta


if __name__ == "__main__":
    main()
