"""The on-disk WebDataset layout written by create_webdataset.py and read by the loader.

A folder holds ``<split>-NNNNNN.tar`` shards and ``metadata.json``: the storage format, the class
names, and per split the sample count and every shard's file name, sample count and SHA-256. The
top-level ``checksum`` is a SHA-256 over those shard entries, so a hand-edited metadata file is
caught on load and a modified shard by ``validate_dataset.py``. Each sample is a ``jpg`` (``img``
format) or ``npy`` (``tensor``: uint8 CHW array) entry, a ``cls`` label and a ``json`` with the
source file name and, when known, the object boxes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from cnns.utils.errors import UsageError

METADATA_FILE = "metadata.json"
FORMATS = ("img", "tensor")
SPLITS = ("train", "validation")
FORMAT_VERSION = 1
IMAGE_KEY = {"img": "jpg", "tensor": "npy"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Shard:
    """One tar file and how many samples it holds."""

    path: str
    samples: int


def is_webdataset(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, METADATA_FILE))


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_entry(folder: str, file_name: str, samples: int) -> Dict[str, Any]:
    return {"file": file_name, "samples": samples, "sha256": sha256_file(os.path.join(folder, file_name))}


def combined_checksum(splits: Dict[str, Any]) -> str:
    """SHA-256 over every shard entry of every split, in a fixed order."""
    digest = hashlib.sha256()
    for split in sorted(splits):
        for entry in splits[split]["shards"]:
            digest.update(f"{split}/{entry['file']}:{entry['samples']}:{entry['sha256']}\n".encode())
    return digest.hexdigest()


def stays_inside(folder: str, name: str) -> bool:
    """``name`` is a relative path that resolves (links followed) inside ``folder``."""
    if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        return False
    root = os.path.realpath(folder)
    return os.path.realpath(os.path.join(root, name)).startswith(root + os.sep)


def _bad(folder: str, reason: str) -> UsageError:
    return UsageError(f"{os.path.join(folder, METADATA_FILE)} is not valid: {reason}; recreate the folder with "
                      f"datasets/create_webdataset.py.")


def load_metadata(folder: str) -> Dict[str, Any]:
    """Read and check metadata.json (structure, checksum, shard files present); no shard is hashed."""
    path = os.path.join(folder, METADATA_FILE)
    try:
        with open(path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as exc:
        raise _bad(folder, f"it is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _bad(folder, "the top level is not an object")
    if meta.get("format") not in FORMATS:
        raise _bad(folder, f"'format' is {meta.get('format')!r}, expected one of {', '.join(FORMATS)}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _bad(folder, "'classes' must be a non-empty list of class names")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise _bad(folder, "'splits' must map split names (train, validation) to their shards")
    for split, info in splits.items():
        _check_split(folder, split, info)
    if meta.get("checksum") != combined_checksum(splits):
        raise _bad(folder, "its 'checksum' does not match the shard entries (the file was edited or truncated)")
    return meta


def _check_split(folder: str, split: str, info: Any) -> None:
    if not isinstance(info, dict) or not isinstance(info.get("shards"), list):
        raise _bad(folder, f"split {split!r} has no 'shards' list")
    total = 0
    for entry in info["shards"]:
        ok = (isinstance(entry, dict) and isinstance(entry.get("file"), str)
              and isinstance(entry.get("samples"), int) and entry["samples"] >= 0
              and isinstance(entry.get("sha256"), str) and _SHA256.match(entry["sha256"]))
        if not ok:
            raise _bad(folder, f"split {split!r} has a shard entry {entry!r} without file, samples and sha256")
        if not stays_inside(folder, entry["file"]):
            raise _bad(folder, f"shard {entry['file']!r} of split {split!r} points outside the dataset folder")
        if not os.path.isfile(os.path.join(folder, entry["file"])):
            raise _bad(folder, f"shard {entry['file']} of split {split!r} is missing")
        total += entry["samples"]
    if info.get("samples") != total:
        raise _bad(folder, f"split {split!r} says {info.get('samples')!r} samples but its shards hold {total}")


def split_shards(folder: str, meta: Dict[str, Any], split: str) -> List[Shard]:
    if split not in meta["splits"]:
        raise UsageError(f"WebDataset folder {folder} has no {split!r} split; it holds "
                         f"{', '.join(meta['splits'])}.")
    return [Shard(os.path.join(folder, e["file"]), e["samples"]) for e in meta["splits"][split]["shards"]]


def encode_sample(key: str, image: Any, label: int, fmt: str, quality: int, source: str,
                  boxes: Optional[Sequence[Sequence[float]]] = None, jpeg_bytes: Optional[bytes] = None
                  ) -> Dict[str, Any]:
    """A sample dict for ``webdataset.TarWriter``; ``jpeg_bytes`` copies an untouched JPEG unchanged."""
    if fmt == "img":
        if jpeg_bytes is None:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            jpeg_bytes = buffer.getvalue()
        payload = jpeg_bytes
    else:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1)))
        payload = buffer.getvalue()
    meta: Dict[str, Any] = {"file": source}
    if boxes is not None:
        meta["boxes"] = [list(b) for b in boxes]
    return {"__key__": key, IMAGE_KEY[fmt]: payload, "cls": str(label).encode(), "json": json.dumps(meta).encode()}


def decode_sample(sample: Dict[str, Any], fmt: str) -> Tuple[Any, int, Optional[List[Tuple[float, ...]]], str]:
    """(PIL image or uint8 CHW tensor, label, boxes, source name) of a sample read from a shard."""
    info = json.loads(sample["json"]) if "json" in sample else {}
    source = f"{sample.get('__url__', '?')}:{info.get('file', sample.get('__key__', '?'))}"
    if fmt == "img":
        with Image.open(io.BytesIO(sample["jpg"])) as img:
            image: Any = img.convert("RGB")
    else:
        image = torch.from_numpy(np.load(io.BytesIO(sample["npy"]), allow_pickle=False))
    boxes = [tuple(b) for b in info["boxes"]] if "boxes" in info else None
    return image, int(sample["cls"]), boxes, source


LEFTOVER_FILE = "leftovers.json"


def leftover_folder(folder: str, num_instances: int) -> str:
    return os.path.join(folder, "distributed", f"{num_instances}-instances")


def load_written_leftovers(folder: str, meta: Dict[str, Any], split: str, num_instances: int
                           ) -> Optional[List[List[Shard]]]:
    """Per-instance leftover shards written by distributed_webdataset.py, or None when there are none."""
    where = leftover_folder(folder, num_instances)
    path = os.path.join(where, LEFTOVER_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            info = json.load(f)
        if info["dataset_checksum"] != meta["checksum"]:
            raise UsageError(f"{path} was written for another version of {folder}; rerun "
                             f"datasets/distributed_webdataset.py --num-instances {num_instances}.")
        entries = info["splits"].get(split)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path} is not valid; delete it or rerun datasets/distributed_webdataset.py "
                         f"--num-instances {num_instances}.") from None
    if entries is None:
        return None
    try:
        outside = [e["file"] for instance in entries for e in instance if not stays_inside(where, str(e["file"]))]
        shards = [[Shard(os.path.join(where, e["file"]), int(e["samples"])) for e in instance] for instance in entries]
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path} is not valid; delete it or rerun datasets/distributed_webdataset.py "
                         f"--num-instances {num_instances}.") from None
    if outside:
        raise UsageError(f"{path} names shard {outside[0]!r} outside {where}; delete it or rerun "
                         f"datasets/distributed_webdataset.py --num-instances {num_instances}.")
    missing = [s.path for instance in shards for s in instance if not os.path.isfile(s.path)]
    if len(shards) != num_instances or missing:
        raise UsageError(f"{path} does not match its shards ({missing[0] if missing else 'wrong instance count'}); "
                         f"rerun datasets/distributed_webdataset.py --num-instances {num_instances}.")
    return shards
