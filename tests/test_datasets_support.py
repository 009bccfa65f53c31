"""Helpers shared by the datasets tests (this module holds no tests of its own)."""
import hashlib
import os
import shutil
from collections import Counter
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import torch

import portable_poptorch as pp


def data_args(root: Optional[str] = None, **overrides: Any) -> SimpleNamespace:
    """The option namespace get_data reads, as the scripts' parsers produce it."""
    values: Dict[str, Any] = dict(data="imagenet", batch_size=2, precision="32.32", eight_bit_io=False,
                                  normalization_location="host", dataloader_worker=0, dataloader_rebatch_size=None,
                                  seed=0, imagenet_data_path=root, webdataset_percentage_to_use=100.0,
                                  use_bbox_info=False, corrupt_images="stop")
    values.update(overrides)
    return SimpleNamespace(**values)


def options(instance: int = 0, instances: int = 1, replicas: int = 1) -> Any:
    opts = pp.Options().replicationFactor(replicas)
    opts.Distributed.configureProcessId(instance, instances)
    return opts


def loader(args: SimpleNamespace, *, train: bool = False, instance: int = 0, instances: int = 1,
           input_size: int = 32, drop_last: Optional[bool] = None, async_dataloader: bool = False,
           half_dtype: torch.dtype = torch.float16) -> Any:
    from cnns import datasets
    return datasets.get_data(args, options(instance, instances), pp, train=train, input_size=input_size,
                             half_dtype=half_dtype, async_dataloader=async_dataloader, drop_last=drop_last)


def fingerprint(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


def batches(dl: Any) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y in dl]


def seen_samples(root: str, instances: int, workers: int, **kwargs: Any) -> Tuple[Counter, List[int]]:
    """(times each eval image was served across all instances, batches per instance); 8-bit IO keeps the
    eval images exact so equal fingerprints mean the same sample."""
    seen: Counter = Counter()
    steps = []
    for instance in range(instances):
        args = data_args(root, eight_bit_io=True, normalization_location="ipu", dataloader_worker=workers)
        out = batches(loader(args, instance=instance, instances=instances, drop_last=False, **kwargs))
        steps.append(len(out))
        for images, labels in out:
            for image, label in zip(images, labels):
                seen[(fingerprint(image), int(label))] += 1
    return seen, steps


def copy_tree(source: str, target: str) -> str:
    shutil.copytree(source, target)
    return target


def image_files(root: str) -> List[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".jpg"))
