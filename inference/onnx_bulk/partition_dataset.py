"""Split one folder of images into N disjoint partition folders, one per process.

Each inference process reads only its own partition, so processes never
contend for the same files.  Files are dealt round-robin (sizes differ by at
most one) and linked rather than copied where the filesystem allows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cnns.datasets.errors import DataError
from cnns.inference.onnx_bulk.data import list_images
from cnns.utils.argparser import new_parser
from cnns.utils.atomic import TEMP_SUFFIX, FolderLock, atomic_file, remove_stale_temporaries, temp_name_of
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import writable_folder

HERE = Path(__file__).resolve().parent

LINK_MODES = ("symlink", "hardlink", "copy")


def partition_names(partitions: int) -> list[str]:
    """Zero-padded names so a plain sort keeps partition order."""
    width = max(2, len(str(partitions - 1)))
    return [f"part{i:0{width}d}" for i in range(partitions)]


def place(source: Path, target: Path, mode: str) -> str:
    """Put ``source`` at ``target`` using ``mode`` or the next mode that works; returns the one used."""
    for candidate in LINK_MODES[LINK_MODES.index(mode) :]:
        try:
            if candidate == "symlink":
                target.symlink_to(source.resolve())
            elif candidate == "hardlink":
                os.link(source, target)
            else:
                with atomic_file(str(target)) as out, open(source, "rb") as inp:
                    shutil.copyfileobj(inp, out)
            return candidate
        except OSError:
            if candidate == "copy":
                raise
    raise AssertionError("unreachable")


STAGING = "partitions"


def partition(files: list[Path], output: Path, partitions: int, mode: str = "symlink") -> dict[str, int]:
    """Deal ``files`` round-robin into ``partitions`` folders under ``output``; returns counts per mode.

    The partitions are filled in a temporary folder and each replaces its old folder (--force) only when
    all are whole, so a kill or a full disk never leaves a partition that looks complete and is not.
    A second run into the same folder is refused while this one holds the folder's lock."""
    output.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(str(output), "--output")
    staging = None
    try:
        remove_stale_temporaries(str(output), only_for=STAGING)
        staging = Path(tempfile.mkdtemp(prefix=temp_name_of(STAGING), suffix=TEMP_SUFFIX, dir=output))
        names = partition_names(partitions)
        for name in names:
            (staging / name).mkdir()
        used: dict[str, int] = {}
        for index, source in enumerate(files):
            kind = place(source, staging / names[index % partitions] / source.name, mode)
            used[kind] = used.get(kind, 0) + 1
        for name in names:
            if (output / name).is_dir():
                shutil.rmtree(output / name)
            os.replace(staging / name, output / name)
        return used
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = new_parser(__doc__.splitlines()[0], show_defaults=False)
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder holding the images (e.g. COCO val2014)"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=8,
        help="number of partitions, one per inference process (default: 8)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "datasets",
        help="parent folder for the partitions (default: datasets/ beside this script)",
    )
    parser.add_argument(
        "--link",
        choices=LINK_MODES,
        default="symlink",
        help="how files are placed; falls back to the next mode when the filesystem refuses (default: symlink)",
    )
    parser.add_argument("--force", action="store_true", help="empty existing partition folders first")
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.partitions < 1:
        raise UsageError(f"--partitions must be at least 1, got {args.partitions}.")
    if not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {str(args.data_dir)!r} is not an existing folder.")
    files = list_images(args.data_dir)
    if len(files) < args.partitions:
        raise DataError(
            f"{args.data_dir} holds {len(files)} images, fewer than the {args.partitions} partitions asked for."
        )
    writable_folder(str(args.output), "--output")
    existing = [
        args.output / n
        for n in partition_names(args.partitions)
        if (args.output / n).is_dir() and any((args.output / n).iterdir())
    ]
    if existing and not args.force:
        raise UsageError(f"Partition folder {existing[0]} is not empty; pass --force to replace the partitions.")
    used = partition(files, args.output, args.partitions, args.link)
    modes = ", ".join(f"{count} {mode}" for mode, count in used.items())
    print(
        f"Split {len(files)} images from {args.data_dir} into {args.partitions} partitions under {args.output} ({modes})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
