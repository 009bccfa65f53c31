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
from typing import Any, Dict

MODES = ("resident", "default")
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


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
    return {"mode": "resident", "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES,
            "trim_threshold_bytes": TRIM_THRESHOLD_BYTES,
            "note": f"Host allocator: buffers up to {MMAP_THRESHOLD_BYTES >> 20} MiB are reused between steps "
                    f"instead of being mapped afresh (glibc mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, "
                    f"trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB); --host-allocator default turns this off."}
