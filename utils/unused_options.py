"""Options a run accepts but that change nothing for its data mode or device: said once in the log
and listed in results.json (next to the PopTorch options without effect off IPU)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from .argparser import BATCHNORM_MOMENTUM
from .backend import Backend

HOST_DATA = ("real", "imagenet", "cifar10")


def unused_options(args: Any, backend: Backend) -> List[Dict[str, str]]:
    """Entries {option, value, reason} for the options without effect in this run."""
    training = hasattr(args, "gradient_accumulation")
    data = args.data
    out: List[Dict[str, str]] = []

    def add(option: str, reason: str) -> None:
        out.append({"option": option, "value": repr(getattr(args, option.lstrip("-").replace("-", "_"))),
                    "reason": reason})
    webdataset = data == "imagenet" and _is_webdataset(getattr(args, "imagenet_data_path", None))
    if getattr(args, "use_bbox_info", False):
        if not training:
            add("--use-bbox-info", "inference uses centre crops, which bounding boxes do not constrain")
        elif data != "imagenet":
            add("--use-bbox-info", f"--data {data} has no bounding boxes")
    if getattr(args, "webdataset_memory_cache_ratio", 0.0) and not webdataset:
        add("--webdataset-memory-cache-ratio", f"--data {data} does not read a WebDataset")
    if getattr(args, "webdataset_percentage_to_use", 100) != 100 and not webdataset:
        add("--webdataset-percentage-to-use", f"--data {data} does not read a WebDataset")
    if getattr(args, "imagenet_data_path", None) and data != "imagenet":
        add("--imagenet-data-path", f"--data {data} does not read ImageNet")
    if data not in HOST_DATA:
        if getattr(args, "dataloader_rebatch_size", None):
            add("--dataloader-rebatch-size", f"--data {data} is made without loader workers")
    elif getattr(args, "dataloader_rebatch_size", None) and not args.dataloader_worker:
        add("--dataloader-rebatch-size", "--dataloader-worker 0 loads in the main process, so nothing is rebatched")
    if training and backend.is_portable and args.num_io_tiles:
        add("--num-io-tiles", f"training off IPU does not overlap IO ({backend.device})")
    _model_and_data_unused(args, training, add)
    if training:
        from cnns.train.conditional_options import conditional_without_effect
        for option, reason in conditional_without_effect(args):
            add(option, reason)
    return out


def _model_and_data_unused(args: Any, training: bool, add: Callable[[str, str], None]) -> None:
    """Options about batch-norm statistics and image decoding where none happen (training options that
    act only with another setting are train/conditional_options.py's)."""
    from cnns.datasets.options import DEFAULTS
    from cnns.datasets.sources import DECODED_DATA
    if not training and getattr(args, "batchnorm_momentum", BATCHNORM_MOMENTUM) != BATCHNORM_MOMENTUM:
        add("--batchnorm-momentum", "inference runs batch norm in eval mode, which never updates its statistics")
    stop = DEFAULTS["corrupt_images"]
    if getattr(args, "corrupt_images", stop) != stop and args.data not in DECODED_DATA:
        add("--corrupt-images", f"--data {args.data} decodes no image files")


def _is_webdataset(path: Any) -> bool:
    if not path:
        return False
    from cnns.datasets.webdataset_format import is_webdataset
    return is_webdataset(path)
