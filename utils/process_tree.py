"""Process-tree control for the launchers: every process a launch starts is found and stopped, even
the ones torch.distributed.run puts in their own sessions or that outlive their parent."""
from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Dict, List

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so it can still find and stop them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> Dict[int, int]:
    out: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            out[int(entry)] = int(fields[1])
    return out


def descendants(pid: int) -> List[int]:
    """Live descendants of ``pid`` (children first), read from /proc; empty where /proc is absent."""
    if not os.path.isdir("/proc"):
        return []
    parents = _parents()
    children: Dict[int, List[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: List[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def signal_all(pids: List[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap() -> None:
    """Collect exit statuses of finished children (subreapers inherit zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(pid: int, grace_s: float) -> None:
    """SIGTERM every descendant of ``pid``, wait up to ``grace_s`` for them to go, then SIGKILL the rest."""
    signal_all(descendants(pid), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while descendants(pid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.1)
    signal_all(descendants(pid), signal.SIGKILL)
    reap()
