"""Data options shared by the training, inference and data scripts (``add_data_options``)."""
from __future__ import annotations

import argparse
from typing import Any

from cnns.utils.errors import UsageError

from .corrupt import CORRUPT_IMAGE_POLICIES

DEFAULTS = {"imagenet_data_path": None, "webdataset_percentage_to_use": 100.0, "use_bbox_info": False,
            "corrupt_images": "stop", "webdataset_memory_cache_ratio": 0.0}


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Add the data options; any the parser already defines (same option string) are left as they are."""
    known = set(parser._option_string_actions)

    def add(flag: str, **kwargs: Any) -> None:
        if flag not in known:
            parser.add_argument(flag, **kwargs)
    add("--imagenet-data-path", type=str, default=DEFAULTS["imagenet_data_path"],
        help="ImageNet folder: train/ and validation/ with one sub-folder per class, or a WebDataset folder "
             "(recognised by its metadata.json) written by datasets/create_webdataset.py")
    add("--webdataset-percentage-to-use", type=float, default=DEFAULTS["webdataset_percentage_to_use"],
        help="Percentage (0-100] of a WebDataset folder's shards to read, from the first shard on")
    add("--webdataset-memory-cache-ratio", type=float, default=DEFAULTS["webdataset_memory_cache_ratio"],
        help="Portion [0, 1] of a WebDataset's shards each loader worker keeps in memory after reading them "
             "once, so later epochs read them from memory")
    add("--use-bbox-info", action="store_true",
        help="Random crops keep at least 10%% of an object, using imagenet_2012_bounding_boxes.csv "
             "(file,xmin,ymin,xmax,ymax per row, relative coordinates) beside train/")
    add("--corrupt-images", choices=CORRUPT_IMAGE_POLICIES, default=DEFAULTS["corrupt_images"],
        help="An image that cannot be decoded: stop with its name, or skip it (warned, counted, replaced in "
             "the batch by a neighbouring image)")


def data_setting(args: Any, name: str) -> Any:
    """An option of add_data_options, or its default when the script did not add it; checked."""
    value = getattr(args, name, DEFAULTS[name])
    if name == "webdataset_percentage_to_use" and not 0 < float(value) <= 100:
        raise UsageError(f"--webdataset-percentage-to-use {value} is outside (0, 100]; give a percentage "
                         f"of the shards such as 10 or 100.")
    if name == "webdataset_memory_cache_ratio" and not 0.0 <= float(value) <= 1.0:
        raise UsageError(f"--webdataset-memory-cache-ratio {value} is outside [0, 1]; give the portion of the "
                         f"shards to keep in memory, such as 0.2.")
    if name == "corrupt_images" and value not in CORRUPT_IMAGE_POLICIES:
        raise UsageError(f"--corrupt-images {value!r} is not one of {', '.join(CORRUPT_IMAGE_POLICIES)}.")
    return value
