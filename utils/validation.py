"""Checks of the whole input before any work: every number's range and every path the run reads or writes.

Scripts are run unattended at scale, so a bad value must stop the run at once with one sentence naming
it and what is accepted, rather than after a model is built or an epoch has trained.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
from typing import Callable, Iterable, Optional

from .errors import UsageError

SEED_LIMIT = 2 ** 32
LOG_FOLDER_BYTES = 4 * 2 ** 20
MAX_IMAGE_SIDE = 4096
WORKERS_PER_CPU = 4
MIN_WORKER_LIMIT = 32


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _values(value: object) -> list:
    """An option's values: a list option's items, else the one value."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_finite(args: argparse.Namespace) -> None:
    """No option takes NaN or infinity: they would silently poison every step."""
    for dest, value in vars(args).items():
        for item in _values(value):
            if isinstance(item, float) and not math.isfinite(item):
                raise UsageError(f"{flag(dest)} {item} is not a finite number; give a real value.")


def at_least(args: argparse.Namespace, minimum: int, names: Iterable[str]) -> None:
    """Each of ``names`` (when the script has it and it is set; every value of a list) is an integer
    >= ``minimum``."""
    for name in names:
        value = getattr(args, name, None)
        for item in _values(value):
            if item is not None and item < minimum:
                raise UsageError(f"{flag(name)} must be at least {minimum}, got {item}.")


def known_models(args: argparse.Namespace, name: str) -> None:
    """Each model name in ``args.name`` (one or a list) is in the model table, aliases included, so a typo
    stops a script before it builds a model or starts a child process."""
    from cnns.models import ModelConfigError, canonical_model_name
    for item in _values(getattr(args, name, None)):
        try:
            canonical_model_name(item)
        except ModelConfigError as error:
            raise UsageError(f"{flag(name)}: {error}") from None


def worker_limit() -> int:
    """The most worker processes a script starts: beyond a few per CPU they only cost memory, and a typo
    such as 100000 would fork until the kernel's OOM killer steps in."""
    return max(MIN_WORKER_LIMIT, WORKERS_PER_CPU * (os.cpu_count() or 1))


def at_most_workers(args: argparse.Namespace, names: Iterable[str], spelling: Callable[[str], str] = flag) -> None:
    """Each of ``names`` (written on the command line as ``spelling(name)``; every value of a list) within
    ``worker_limit()``."""
    for name in names:
        for value in _values(getattr(args, name, None)):
            if value is not None and value > worker_limit():
                raise UsageError(f"{spelling(name)} must be at most {worker_limit()} ({WORKERS_PER_CPU} per CPU, at "
                                 f"least {MIN_WORKER_LIMIT}), got {value}.")


def in_range(args: argparse.Namespace, name: str, low: float, high: float,
             low_open: bool = False, high_open: bool = False) -> None:
    """``args.name`` lies in the interval; brackets in the message say which ends are included."""
    value = getattr(args, name, None)
    if value is None:
        return
    for item in _values(value):
        too_low = item <= low if low_open else item < low
        too_high = item >= high if high_open else item > high
        if too_low or too_high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise UsageError(f"{flag(name)} must be in {interval}, got {item}.")


def check_common(args: argparse.Namespace) -> None:
    """All checks of the common options: values, the host batch's size, then paths."""
    check_common_values(args)
    check_host_batch_fits(args)
    check_common_paths(args)


def check_common_values(args: argparse.Namespace) -> None:
    """Ranges of the options every harness script shares (utils.argparser.add_common_options)."""
    check_finite(args)
    at_least(args, 1, ("norm_num_groups", "efficientnet_expand_ratio", "efficientnet_group_dim",
                       "dataloader_rebatch_size"))
    at_least(args, 0, ("num_io_tiles", "dataloader_worker", "warmup_iterations"))
    at_most_workers(args, ("dataloader_worker",))
    in_range(args, "norm_eps", 0.0, 1.0, low_open=True)
    in_range(args, "batchnorm_momentum", 0.0, 1.0)
    in_range(args, "available_memory_proportion", 0.0, 1.0, low_open=True)
    in_range(args, "webdataset_percentage_to_use", 0.0, 100.0, low_open=True)
    in_range(args, "webdataset_memory_cache_ratio", 0.0, 1.0)
    seed = getattr(args, "seed", 0)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed must be in [0, {SEED_LIMIT - 1}], got {seed}.")
    proportions = getattr(args, "available_memory_proportion", None) or []
    stages = len(getattr(args, "pipeline_splits", []) or []) + 1
    if len(proportions) not in (0, 1, stages):
        raise UsageError(f"--available-memory-proportion takes one value or one per pipeline stage ({stages}), "
                         f"got {len(proportions)} values.")
    size = getattr(args, "input_size", None)
    if size is not None and size > MAX_IMAGE_SIDE:
        raise UsageError(f"--input-size must be at most {MAX_IMAGE_SIDE} pixels, got {size}.")


def check_host_batch_fits(args: argparse.Namespace, training: bool = False) -> None:
    """Sizes that cannot fit in memory end in one sentence now instead of an allocator traceback later."""
    from cnns.models import model_input_size
    from .run_memory import check_run_fits
    check_run_fits(args, getattr(args, "input_size", None) or model_input_size(args.model), training)


def writable_folder(path: str, option: str) -> str:
    """Proves a file can be written in ``path`` (or, while it does not exist yet, in the nearest existing
    folder above it, where it will be created), so read-only mounts, full disks and permissions show
    before any work; nothing is left behind."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a file, not a folder; give a folder to write to.")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(20, "Not a directory", existing)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", suffix=".tmp", dir=existing)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        raise UsageError(f"{option} {path!r} cannot be written to ({error.strerror or error}); "
                         f"give a writable folder.") from None
    return path


def writable_file(path: Optional[str], option: str) -> Optional[str]:
    """A file written at the end of a long run: not a folder, in an existing folder that takes a new file,
    and writable when it exists, so a typo does not lose the results after the work is done."""
    if path is None:
        return None
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; give a file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r} is in a folder that does not exist ({folder!r}); give a file in an "
                         f"existing folder.")
    writable_folder(folder, option)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path!r} cannot be written to (permission denied); give a writable file.")
    return path


def existing_file(path: Optional[str], option: str) -> Optional[str]:
    if path is None:
        return None
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; give a file.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{option} {path!r} is not a regular file (a device or pipe); give a file.")
    if not os.path.isfile(path):
        raise UsageError(f"{option} {path!r} does not exist; give an existing file.")
    return path


TORCH_FILE_MAGICS = (b"PK\x03\x04", b"\x80")


def torch_file(path: Optional[str], option: str) -> Optional[str]:
    """An existing file that starts like what torch.save writes (zip archive or legacy pickle), so a text
    file or an image is refused by name before a model is built for it."""
    if existing_file(path, option) is None:
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if not any(head.startswith(magic) for magic in TORCH_FILE_MAGICS):
        raise UsageError(f"{option} {path!r} is not a PyTorch file (torch.save writes a zip archive); "
                         f"give a state_dict or a train.py checkpoint.")
    return path


def existing_folder(path: Optional[str], option: str) -> Optional[str]:
    if path is None:
        return None
    if not os.path.isdir(path):
        what = "is a file" if os.path.exists(path) else "does not exist"
        raise UsageError(f"{option} {path} {what}; give an existing folder.")
    return path


def check_common_paths(args: argparse.Namespace) -> None:
    """Files read must exist, folders written must be writable (checked before any model is built)."""
    torch_file(getattr(args, "weights", None), "--weights")
    if not getattr(args, "compile_only", False):  # --compile-only reads no data (train.py's arguments)
        existing_folder(getattr(args, "imagenet_data_path", None), "--imagenet-data-path")
    if getattr(args, "log_path", None):
        writable_folder(args.log_path, "--log-path")
        check_free_space(args.log_path, LOG_FOLDER_BYTES, "The run's log folder")
    if getattr(args, "model_cache_path", None):
        writable_folder(args.model_cache_path, "--model-cache-path")


def check_free_space(folder: str, needed_bytes: int, what: str) -> None:
    """Refuses a run whose output cannot fit, instead of failing when the first file is written."""
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free
    if needed_bytes > free:
        raise UsageError(f"{what} needs about {_mib(needed_bytes)} but {folder!r} has {_mib(free)} free; "
                         f"free some space or choose another folder.")


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"
