"""Check a WebDataset folder written by create_webdataset.py before a long run depends on it: the
metadata's checksum, every shard's SHA-256 and sample count, every sample's label, and (``--decode``)
that every image decodes. Also checks the per-instance leftover shards of distributed_webdataset.py.
Exit code 0 when all is well, 1 with one line per problem otherwise, 2 for a usage error."""

import glob
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import webdataset as wds

from cnns.datasets.corrupt import DECODE_ERRORS
from cnns.datasets.webdataset_format import (IMAGE_KEY, LEFTOVER_FILE, METADATA_FILE, decode_sample, load_metadata,
                                        sha256_file)
from cnns.utils.argparser import new_parser
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import existing_folder


def check_shard(path: str, entry: Dict[str, Any], meta: Dict[str, Any], decode: bool) -> List[str]:
    """Problems of one shard: checksum, sample count, labels and (optionally) image decoding."""
    problems = []
    if sha256_file(path) != entry["sha256"]:
        problems.append(f"{path}: SHA-256 differs from the metadata (the shard was modified or damaged).")
    count = 0
    try:
        for sample in wds.tarfile_samples([{"url": path}]):
            count += 1
            problems += check_sample(sample, meta, decode)
    except Exception as exc:  # any tar-level failure is reported as a problem of this shard
        problems.append(f"{path}: cannot be read as a tar file ({exc}).")
    if count != entry["samples"]:
        problems.append(f"{path}: holds {count} samples, the metadata says {entry['samples']}.")
    return problems


def check_sample(sample: Dict[str, Any], meta: Dict[str, Any], decode: bool) -> List[str]:
    where = f"{sample.get('__url__')}:{sample.get('__key__')}"
    image_key = IMAGE_KEY[meta["format"]]
    if image_key not in sample or "cls" not in sample:
        return [f"{where}: lacks its {image_key} image or cls label."]
    try:
        label = int(sample["cls"])
    except ValueError:
        return [f"{where}: label {sample['cls']!r} is not an integer."]
    if not 0 <= label < len(meta["classes"]):
        return [f"{where}: label {label} is outside 0..{len(meta['classes']) - 1}."]
    if decode:
        try:
            decode_sample(sample, meta["format"])
        except (KeyError, *DECODE_ERRORS) as exc:
            return [f"{where}: image cannot be decoded ({exc})."]
    return []


def check_leftovers(folder: str, meta: Dict[str, Any], decode: bool) -> List[str]:
    problems = []
    for path in sorted(glob.glob(os.path.join(folder, "distributed", "*-instances", LEFTOVER_FILE))):
        where = os.path.dirname(path)
        try:
            with open(path) as f:
                info = json.load(f)
            stale = info["dataset_checksum"] != meta["checksum"]
            entries = [e for split in info["splits"].values() for instance in split for e in instance]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            problems.append(f"{path}: not a valid leftover index; rerun distributed_webdataset.py.")
            continue
        if stale:
            problems.append(f"{path}: written for another version of the dataset; rerun distributed_webdataset.py.")
        for entry in entries:
            shard = os.path.join(where, entry["file"])
            if not os.path.isfile(shard):
                problems.append(f"{shard}: listed in {path} but missing.")
            else:
                problems += check_shard(shard, entry, meta, decode)
    return problems


def check_dataset(folder: str, decode: bool = False) -> List[str]:
    """Every problem found in the WebDataset ``folder`` (empty when it is sound)."""
    if not os.path.isdir(folder):
        raise UsageError(f"Dataset folder {folder} does not exist.")
    if not os.path.isfile(os.path.join(folder, METADATA_FILE)):
        raise UsageError(f"{folder} holds no {METADATA_FILE}; it is not a folder written by create_webdataset.py.")
    meta = load_metadata(folder)
    problems = []
    for info in meta["splits"].values():
        for entry in info["shards"]:
            problems += check_shard(os.path.join(folder, entry["file"]), entry, meta, decode)
    return problems + check_leftovers(folder, meta, decode)


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--imagenet-data-path", "--target", dest="folder", required=True,
                        help="WebDataset folder (with metadata.json) to check")
    parser.add_argument("--decode", action="store_true", help="Also decode every image (slow on ImageNet)")
    args = parser.parse_args(argv)
    existing_folder(args.folder, "--imagenet-data-path")
    problems = check_dataset(args.folder, args.decode)
    for problem in problems:
        print(problem)
    meta = load_metadata(args.folder)
    summary = ", ".join(f"{split} {info['samples']} samples in {len(info['shards'])} shards"
                        for split, info in meta["splits"].items())
    print(f"{'FAILED' if problems else 'OK'}: {args.folder} ({summary}); {len(problems)} problems.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
