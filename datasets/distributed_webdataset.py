"""Write the per-instance leftover shards of a WebDataset folder for runs on N instances.

Full shards are dealt whole to the instances; the ones that do not divide evenly (and the short last
shard) are split sample by sample. Without this script every instance reads those leftover shards
whole and keeps its own samples; with it, each instance reads one small shard holding exactly those
samples. The files go to ``<folder>/distributed/<N>-instances/`` and are used automatically when the
loader runs on N instances with all of the data (``--webdataset-percentage-to-use 100``). They are written
into a temporary folder beside it that replaces the old folder only when whole; a later run removes the
temporary folder a killed run left."""

import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import webdataset as wds

from cnns.datasets.shard_plan import deal, leftover_parts
from cnns.datasets.webdataset_format import LEFTOVER_FILE, leftover_folder, load_metadata, shard_entry, split_shards
from cnns.utils.argparser import new_parser
from cnns.utils.atomic import TEMP_SUFFIX, FolderLock, remove_stale_temporaries, temp_name_of, write_json
from cnns.utils.errors import UsageError, exit_on_usage_error


def write_instance_leftovers(folder: str, split: str, shards: Sequence[Any], instance: int, num_instances: int,
                             where: str) -> List[Dict[str, Any]]:
    """Write instance ``instance``'s leftover samples of ``split`` to one shard; its entries (none if empty)."""
    parts = leftover_parts(deal(shards, num_instances)[1], instance, num_instances)
    if not parts:
        return []
    name = f"{split}-leftover-{instance:03d}.tar"
    count = 0
    with wds.TarWriter(os.path.join(where, name), mtime=0.0) as writer:
        for part in parts:
            for index, sample in enumerate(wds.tarfile_samples([{"url": part.path}])):
                if index % part.stride == part.offset:
                    writer.write({k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"})
                    count += 1
    return [shard_entry(where, name, count)]


def write_leftovers(folder: str, num_instances: int) -> Dict[str, Any]:
    """Write all splits' leftover shards for ``num_instances`` and their index; returns the index."""
    if num_instances < 2:
        raise UsageError(f"--num-instances must be at least 2, got {num_instances}; one instance reads every shard.")
    if not os.path.isdir(folder):
        raise UsageError(f"Dataset folder {folder} does not exist.")
    meta = load_metadata(folder)
    for split, entry in meta["splits"].items():
        if num_instances > entry["samples"]:
            raise UsageError(f"--num-instances {num_instances} is more than the {entry['samples']} samples of split "
                             f"{split!r}, so some instances would read nothing; give at most {entry['samples']}.")
    where = leftover_folder(folder, num_instances)
    parent, name = os.path.split(where)
    os.makedirs(parent, exist_ok=True)
    lock = FolderLock(parent, "--imagenet-data-path")
    staging = ""
    try:
        remove_stale_temporaries(parent, only_for=name)
        staging = tempfile.mkdtemp(prefix=temp_name_of(name), suffix=TEMP_SUFFIX, dir=parent)
        splits = {}
        for split in meta["splits"]:
            shards = split_shards(folder, meta, split)
            splits[split] = [write_instance_leftovers(folder, split, shards, i, num_instances, staging)
                             for i in range(num_instances)]
        index = {"instances": num_instances, "dataset_checksum": meta["checksum"], "splits": splits}
        write_json(os.path.join(staging, LEFTOVER_FILE), index)
        old = os.path.join(parent, f"{temp_name_of(name)}replaced-{os.getpid()}{TEMP_SUFFIX}")
        if os.path.isdir(where):
            os.replace(where, old)
        os.replace(staging, where)
        shutil.rmtree(old, ignore_errors=True)
        return index
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = new_parser(__doc__)
    parser.add_argument("--imagenet-data-path", "--target", dest="folder", required=True,
                        help="WebDataset folder (with metadata.json) written by create_webdataset.py")
    parser.add_argument("--num-instances", type=int, required=True, help="Instances (poprun --num-instances) to serve")
    args = parser.parse_args(argv)
    index = write_leftovers(args.folder, args.num_instances)
    for split, per_instance in index["splits"].items():
        counts = [sum(e["samples"] for e in entries) for entries in per_instance]
        print(f"{split}: leftover samples per instance {counts}")
    print(f"Wrote {os.path.join(leftover_folder(args.folder, args.num_instances), LEFTOVER_FILE)}")
    return index


if __name__ == "__main__":
    main()
