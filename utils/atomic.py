"""Files written whole or not at all, leftovers of killed writes removed, one writer per folder.

Every file the project produces is written under a temporary name ``.<name>.<host>-<pid>.<random>.tmp``
in its final folder, flushed to disk and renamed, so a kill or a full disk never leaves a truncated file
under the final name; a later start in the same folder removes the temporaries a killed run left (all of
them under the folder's lock, else only those whose writer is gone).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from typing import IO, Any, Iterator, Optional

from .errors import UsageError

TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"
FULL_BELOW_BYTES = 2 ** 20
FOREIGN_STALE_AFTER_SECONDS = 24 * 3600


def temp_name_of(name: str) -> str:
    return f".{name}."


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, part of its temporaries' names so that a cleaner without the
    folder's lock can tell a killed writer's leftover from a file another run is still writing."""
    return f"{_host()}-{os.getpid()}"


def temp_prefix_of(name: str) -> str:
    """The start of this process's temporary names for the final file ``name``."""
    return f"{temp_name_of(name)}{writer_tag()}."


def _disk_full(folder: str) -> bool:
    """Libraries that write through their own code (torch.save's zip writer) report a full disk as their
    own error ("unexpected pos ..."); the free space tells it apart while the temporary still fills it."""
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW_BYTES
    except OSError:
        return False


def current_umask() -> int:
    """The process's umask (read, not changed, where /proc tells it), so a renamed temporary gets the
    permissions a plain open() would have given instead of mkstemp's owner-only 0600."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary name in ``path``'s folder that is flushed to disk and renamed to ``path`` only if
    the block completes (libraries that write by file name, such as torch.profiler's trace, use it as is)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix_of(os.path.basename(path)), suffix=TEMP_SUFFIX, dir=folder)
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        full = isinstance(error, Exception) and not isinstance(error, OSError) and _disk_full(folder)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path) from error
        if isinstance(error, OSError) and not isinstance(error.filename, str):
            raise OSError(error.errno, error.strerror or str(error), path) from error
        raise


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yields a file whose content appears at ``path`` only if the block completes."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def write_json(path: str, data: Any) -> None:
    with atomic_file(path, "w") as f:
        json.dump(data, f, indent=2, default=str)


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this host (or cannot be signalled: someone else's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return pid > 0


def _writer_gone(path: str, rest: str, now: float) -> bool:
    """True when the temporary's writer (``<host>-<pid>`` at the start of ``rest``) no longer runs: its
    pid is dead on this host, or, written on another host sharing the folder, it is over a day old.
    A name without a writer tag is a leftover of unknown origin and counts as gone."""
    tag = rest.split(".", 1)[0]
    host, _, pid = tag.rpartition("-")
    if not host or not pid.isdigit():
        return True
    if host == _host():
        return not pid_alive(int(pid))
    return now - os.lstat(path).st_mtime > FOREIGN_STALE_AFTER_SECONDS


def remove_stale_temporaries(folder: str, only_for: Optional[str] = None) -> int:
    """Deletes the temporaries of killed writes in ``folder``; returns how many.

    Without ``only_for`` every temporary goes: call it only while no one else writes there (under
    ``FolderLock``). With ``only_for`` (one final file name, no lock held) only the temporaries whose
    writer is gone go, so two runs writing the same file never delete each other's half.
    """
    removed = 0
    if not os.path.isdir(folder):
        return 0
    prefix = temp_name_of(only_for) if only_for else "."
    now = time.time()
    for name in os.listdir(folder):
        if is_temporary(name) and name.startswith(prefix):
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                if only_for and not _writer_gone(path, name[len(prefix):], now):
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed += 1
    return removed


class FolderLock:
    """An exclusive lock on a folder for this process's lifetime (released by the kernel if killed); the
    lock file is removed on release so a finished run leaves only its outputs."""

    def __init__(self, folder: str, option: str) -> None:
        self.path = os.path.join(folder, LOCK_NAME)
        while True:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(self._fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UsageError(f"{option} {folder!r} is in use by another run (process {owner}); wait for "
                                     f"it to finish or choose another folder.") from None
                raise
            if self._same_file():
                break
            os.close(self._fd)  # the holder removed the file between our open and lock: lock the new one
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def _same_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1
