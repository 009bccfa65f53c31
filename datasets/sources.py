"""``get_data``: the data source for each ``--data`` mode, as a ``poptorch.DataLoader`` of combined host batches."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch

from cnns.models.preprocessing import IMAGENET, Preprocessing
from .errors import DataError

from .bbox import bbox_file, load_boxes
from .corrupt import CorruptImagePolicy
from .generated import RepeatedHostBatch
from .options import data_setting
from .preprocess import (DEFAULT_SCALE, ToModelInput, cifar_eval_transform, cifar_train_transform, eval_transform,
                         train_transform)
from .sample_images import REPO_ROOT, SAMPLE_IMAGES_DIR, SampleImages
from .seeding import AugmentationRNG
from .webdataset_format import is_webdataset
from .webdataset_source import WebDatasetSplit

DATASETS_INFO: Dict[str, Dict[str, int]] = {
    "real": {"num_classes": 1000},
    "generated": {"num_classes": 1000},
    "synthetic": {"num_classes": 1000},
    "imagenet": {"num_classes": 1000},
    "cifar10": {"num_classes": 10},
}
DATA_MODES = tuple(DATASETS_INFO)
RANDOM_RESIZED_CROP_DATA = ("real", "imagenet")  # the modes whose training transform takes --train-crop-scale
DECODED_DATA = ("real", "imagenet")   # the modes that decode image files, where --corrupt-images applies
CIFAR10_DIR = os.path.join(REPO_ROOT, "data", "cifar10")
SPLIT_FOLDERS = {True: "train", False: "validation"}


def input_dtype(args: Any, half_dtype: torch.dtype) -> torch.dtype:
    """What the host sends: uint8 with 8-bit IO, half for 16.x precisions, else float32."""
    if args.eight_bit_io:
        return torch.uint8
    return half_dtype if args.precision.startswith("16") else torch.float32


def instance_of(opts: Any) -> Tuple[int, int]:
    """(process id, process count) from real or portable ``poptorch.Options``."""
    dist = getattr(opts, "Distributed", None)
    return int(getattr(dist, "processId", 0)), int(getattr(dist, "numProcesses", 1))


def host_batch_size(opts: Any, batch_size: int) -> int:
    """PopTorch's combined host batch, from its public ``Options`` attributes (real or portable):
    micro-batch x device iterations x replicas x gradient accumulation."""
    return (batch_size * opts.device_iterations * opts.replication_factor
            * opts.Training.gradient_accumulation)


def get_data(args: Any, opts: Any, poptorch: Any, *, train: bool, input_size: int,
             half_dtype: torch.dtype, batches: int = 1, async_dataloader: bool = False,
             drop_last: Optional[bool] = None, augment: bool = True, preprocessing: Preprocessing = IMAGENET,
             crop_scale: Sequence[float] = DEFAULT_SCALE, rng: Optional[AugmentationRNG] = None) -> Iterable:
    """Loader of combined host batches for ``args.data``; ``batches`` sizes the generated/real streams.

    ``preprocessing`` is the model's mean/std and crop ratio; ``crop_scale`` the area range of the
    training random-resized crop (ImageNet-style data); ``rng`` the augmentation stream, given by callers
    that save and restore it (a new one from ``args.seed`` and the instance otherwise).

    ``drop_last`` (default True) keeps only full host batches; pass False to read every sample of an
    evaluation set once (the last batch is then short). ``augment=False`` gives training data (shuffled)
    the evaluation crop, as fine-tuning after half-resolution training uses.
    """
    combined = host_batch_size(opts, args.batch_size)
    dtype = input_dtype(args, half_dtype)
    if args.data not in DATASETS_INFO:
        raise DataError(f"--data {args.data!r} is not one of {', '.join(DATA_MODES)}.")
    num_classes = DATASETS_INFO[args.data]["num_classes"]
    if args.data in ("generated", "synthetic"):
        return RepeatedHostBatch(combined, input_size, dtype, num_classes, batches, seed=args.seed)
    drop_last = True if drop_last is None else drop_last
    instance, num_instances = instance_of(opts)
    rng = rng or AugmentationRNG(args.seed, instance)
    to_input = ToModelInput(args.normalization_location, args.eight_bit_io, dtype, preprocessing.mean,
                            preprocessing.std)
    workers = max(0, int(args.dataloader_worker or 0))
    # Workers' batches of --dataloader-rebatch-size are rebatched into host batches (training and
    # inference alike); without worker processes there is nothing to rebatch.
    rebatch = args.dataloader_rebatch_size if args.dataloader_rebatch_size and workers > 0 else None
    mode = (poptorch.DataLoaderMode.AsyncRebatched if rebatch else
            poptorch.DataLoaderMode.Async if async_dataloader else poptorch.DataLoaderMode.Sync)
    augmented = train and augment
    if args.data == "real":
        transform = (train_transform(input_size, to_input, crop_scale, rng=rng) if augmented
                     else eval_transform(input_size, to_input, preprocessing))
        try:
            dataset: Any = SampleImages(SAMPLE_IMAGES_DIR, transform, combined * batches,
                                        CorruptImagePolicy(data_setting(args, "corrupt_images")))
        except FileNotFoundError as exc:
            raise DataError(str(exc)) from None
    elif args.data == "cifar10":
        transform = (cifar_train_transform(input_size, to_input, rng) if augmented
                     else cifar_eval_transform(input_size, to_input))
        dataset = _cifar10(train, transform)
    else:
        transform = (train_transform(input_size, to_input, crop_scale, rng=rng) if augmented
                     else eval_transform(input_size, to_input, preprocessing))
        dataset = _imagenet(args, train, transform, instance=instance, num_instances=num_instances,
                            num_workers=workers, worker_batch=rebatch or combined, drop_last=drop_last)
    return poptorch.DataLoader(opts, dataset, batch_size=args.batch_size, shuffle=train and not _iterable(dataset),
                               num_workers=workers, drop_last=drop_last, mode=mode,
                               rebatched_worker_size=rebatch)


def _iterable(dataset: Any) -> bool:
    return isinstance(dataset, torch.utils.data.IterableDataset)


def _imagenet(args: Any, train: bool, transform: Callable, **sharding: Any) -> Any:
    """An image folder or a WebDataset folder, told apart by metadata.json."""
    root = data_setting(args, "imagenet_data_path")
    if not root:
        raise DataError("--data imagenet needs --imagenet-data-path: a folder with train/ and validation/ "
                         "class sub-folders, or a WebDataset folder from datasets/create_webdataset.py.")
    use_boxes = bool(data_setting(args, "use_bbox_info")) and train
    policy = CorruptImagePolicy(data_setting(args, "corrupt_images"))
    percentage = float(data_setting(args, "webdataset_percentage_to_use"))
    check_imagenet_path(root, train)
    split = SPLIT_FOLDERS[train]
    if is_webdataset(root):
        dataset = WebDatasetSplit(root, split, transform, shuffle=train, seed=args.seed,
                                  percentage=percentage,
                                  memory_cache_ratio=float(data_setting(args, "webdataset_memory_cache_ratio")),
                                  corrupt_policy=policy, use_boxes=use_boxes, **sharding)
        if use_boxes and not dataset.has_boxes:
            raise DataError(f"--use-bbox-info: the WebDataset in {root} was written without bounding boxes; "
                             f"recreate it from a source holding imagenet_2012_bounding_boxes.csv or drop the option.")
        return dataset
    from .image_folder import ImageFolderDataset   # imports torchvision (~160 MB): only for class folders
    boxes = load_boxes(bbox_file(root)) if use_boxes else None
    return ImageFolderDataset(os.path.join(root, split), transform, policy, boxes)


def check_imagenet_path(root: str, train: bool) -> None:
    """--imagenet-data-path holds what a run reads (a WebDataset, or the split's class folders), checked
    when the options are parsed, so a wrong folder is refused before a model is built."""
    if not os.path.isdir(root):
        raise DataError(f"--imagenet-data-path {root} does not exist; give a folder with train/ and validation/ "
                         f"class sub-folders, or a WebDataset folder with metadata.json.")
    if not is_webdataset(root):
        from .image_folder import check_folder
        check_folder(os.path.join(root, SPLIT_FOLDERS[train]))


def _cifar10(train: bool, transform: Callable) -> Any:
    """torchvision's CIFAR-10, downloaded into data/cifar10 on first use."""
    from torchvision.datasets import CIFAR10
    try:
        return CIFAR10(CIFAR10_DIR, train=train, download=True, transform=transform)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"CIFAR-10 is not in {CIFAR10_DIR} and could not be downloaded ({exc}); connect once to "
                         f"the internet, or copy cifar-10-python.tar.gz (or its cifar-10-batches-py folder) there."
                         ) from None
