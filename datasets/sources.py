"""``get_data``: the data source for each ``--data`` mode, as combined host batches."""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable

import torch

from .generated import RepeatedHostBatch
from .preprocess import ToModelInput, eval_transform, train_transform
from .sample_images import SAMPLE_IMAGES_DIR, SampleImages

DATASETS_INFO: Dict[str, Dict[str, int]] = {
    "real": {"num_classes": 1000},
    "generated": {"num_classes": 1000},
    "synthetic": {"num_classes": 1000},
    "imagenet": {"num_classes": 1000},
    "cifar10": {"num_classes": 10},
}
DATA_MODES = tuple(DATASETS_INFO)


def input_dtype(args: Any, half_dtype: torch.dtype) -> torch.dtype:
    """What the host sends: uint8 with 8-bit IO, half for 16.x precisions, else float32."""
    if args.eight_bit_io:
        return torch.uint8
    return half_dtype if args.precision.startswith("16") else torch.float32


def get_data(args: Any, opts: Any, poptorch: Any, *, train: bool, input_size: int,
             half_dtype: torch.dtype, batches: int = 1, async_dataloader: bool = False) -> Iterable:
    """Loader of combined host batches for ``args.data``; ``batches`` sizes the generated/real streams."""
    from portable_poptorch.dataloader import combined_batch_size
    combined = combined_batch_size(opts, args.batch_size)
    dtype = input_dtype(args, half_dtype)
    num_classes = DATASETS_INFO[args.data]["num_classes"]
    if args.data in ("generated", "synthetic"):
        return RepeatedHostBatch(combined, input_size, dtype, num_classes, batches, seed=args.seed)
    to_input = ToModelInput(args.normalization_location, args.eight_bit_io, dtype)
    transform = (train_transform if train else eval_transform)(input_size, to_input)
    if args.data == "real":
        from utils.errors import UsageError
        try:
            dataset: Any = SampleImages(SAMPLE_IMAGES_DIR, transform, combined * batches)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    elif args.data == "imagenet":
        dataset = _imagenet(args, train, transform)
    elif args.data == "cifar10":
        dataset = _cifar10(train, transform)
    else:
        raise ValueError(f"Unknown data mode {args.data!r}.")
    mode = poptorch.DataLoaderMode.Async if async_dataloader else poptorch.DataLoaderMode.Sync
    return poptorch.DataLoader(opts, dataset, batch_size=args.batch_size, shuffle=train,
                               num_workers=args.dataloader_worker, drop_last=True, mode=mode,
                               rebatched_worker_size=args.dataloader_rebatch_size)


def _imagenet(args: Any, train: bool, transform: Any) -> Any:
    from torchvision.datasets import ImageFolder
    from utils.errors import UsageError
    root = getattr(args, "imagenet_data_path", None)
    if not root:
        raise UsageError("--data imagenet needs --imagenet-data-path pointing at a folder with train/ and validation/.")
    split = os.path.join(root, "train" if train else "validation")
    if not os.path.isdir(split):
        raise UsageError(f"ImageNet folder {split} does not exist; --imagenet-data-path must hold train/ and validation/.")
    return ImageFolder(split, transform=transform)


def _cifar10(train: bool, transform: Any) -> Any:
    from torchvision.datasets import CIFAR10
    from utils.errors import UsageError
    root = os.path.join(os.path.dirname(SAMPLE_IMAGES_DIR), "cifar10")
    try:
        return CIFAR10(root, train=train, download=True, transform=transform)
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"CIFAR-10 is not in {root} and could not be downloaded ({exc}).") from None
