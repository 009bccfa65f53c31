"""Keep large host buffers resident between steps when the model runs on the CPU.

glibc serves every allocation above its mmap threshold (128 KiB, raised only by chance as buffers
are freed) with a fresh ``mmap``, so each CPU forward pass page-faults its activations in again:
measured ~60,000 faults per resnet50 step at batch 8 and 15-20% of its throughput
(benchmarks/RESULTS.md). Raising the mmap threshold to glibc's ceiling and the trim threshold well
above it lets freed activations be reused, as the CUDA caching allocator does on a GPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any, Dict, Optional, Sequence

MODES = ("resident", "default")
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def return_free_heap() -> bool:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``) before the measured calls;
    False where there is no glibc to do it.

    The resident allocator's 1 GiB trim threshold keeps whatever compiling freed (the ONNX export, a
    runtime's build buffers, the executors auto timed and dropped) resident for the rest of the run, where
    the measured calls' peak counted it as the executor's cost: resnet50 at batch 16 through ONNX Runtime
    read 1292-1366 MB against 1173 MB after the trim (an eager loop: 1021 MB), at the same throughput
    (benchmarks/RESULTS.md). The measured calls' own buffers come back in the warm-up calls and stay."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True


def thp_mode() -> str:
    """The kernel's transparent-huge-page setting (always, madvise, never), or 'unavailable'."""
    try:
        with open(THP_SETTING) as f:
            text = f.read()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else "unavailable"


def _glibc_version() -> Optional[tuple]:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def huge_pages_problem(argv: Sequence[str], environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Why this run cannot, or need not, be restarted with glibc backing its heap and large allocations
    with transparent huge pages; None when it should be.

    Where the kernel gives huge pages only to memory marked for them (THP 'madvise'), a CPU run's weights
    and activation buffers sit on 4 KiB pages; glibc 2.35+ marks what it allocates when started with
    ``glibc.malloc.hugetlb=1``, measured 1.03-1.07x on resnet18 batch 16 through ONNX Runtime on one
    host and level on another (benchmarks/RESULTS.md). glibc reads the setting only at start-up, hence the restart."""
    environ = os.environ if environ is None else environ
    words = list(argv)
    if "--host-allocator=default" in words or any(a == "--host-allocator" and b == "default" for a, b in zip(words, words[1:])):
        return "--host-allocator default"
    if "hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc.hugetlb already"
    if not sys.platform.startswith("linux") or not hasattr(sys, "orig_argv"):
        return "not Linux with Python 3.10+"
    mode = thp_mode()
    if mode != "madvise":
        return f"the kernel's transparent-huge-page setting is {mode!r}, not 'madvise'"
    version = _glibc_version()
    if version is None or version < (2, 35):
        return "glibc before 2.35 has no glibc.malloc.hugetlb"
    return None


def relaunch_with_huge_pages() -> None:
    """Restart this process (same PID, same command line) with glibc.malloc.hugetlb=1 when it applies;
    call before heavy imports, from a command's entry point only."""
    if huge_pages_problem(sys.argv[1:]) is not None:
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def configure_host_allocator(mode: str, device: str) -> Dict[str, Any]:
    """Apply ``mode`` for a run on ``device``; returns what was done, with a note for the log."""
    if mode not in MODES:
        raise ValueError(f"host allocator mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "default":
        return {"mode": "default", "note": "Host allocator: glibc defaults (--host-allocator default)."}
    if device != "cpu":
        reason = f"activations live in the {device} device's own allocator"
        return {"mode": "default", "reason": reason, "note": f"Host allocator: glibc defaults kept ({reason})."}
    libc = _libc()
    if libc is None:
        return {"mode": "default", "reason": "not a glibc system",
                "note": "Host allocator: --host-allocator resident needs glibc's mallopt; "
                        "this C library has none, so allocator defaults apply."}
    applied = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
               and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if not applied:
        return {"mode": "default", "reason": "mallopt refused the thresholds",
                "note": "Host allocator: glibc refused the mmap/trim thresholds; allocator defaults apply."}
    huge = HUGE_PAGES_TUNABLE in os.environ.get("GLIBC_TUNABLES", "")
    pages = ("; glibc backs them with transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" if huge
             else "; no transparent huge pages (" + (huge_pages_problem([]) or "not started through a command line") + ")")
    return {"mode": "resident", "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES,
            "trim_threshold_bytes": TRIM_THRESHOLD_BYTES, "huge_pages": huge,
            "note": f"Host allocator: buffers up to {MMAP_THRESHOLD_BYTES >> 20} MiB are reused between steps "
                    f"instead of being mapped afresh (glibc mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, "
                    f"trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB){pages}; --host-allocator default turns "
                    "this off."}
