"""Peak host (resident set) and device memory of a run, so memory is read next to speed.

``reset()`` after compilation makes the figures those of the measured calls: Linux's peak RSS
(VmHWM) is reset through /proc/self/clear_refs, CUDA's through its allocator statistics. Clearing VmHWM
also clears what ``getrusage`` reports as the process's peak, so ``reset()`` keeps the peak reached
before it and ``peaks()`` reports the larger of the two as the process's.
"""
from __future__ import annotations

import resource
from typing import Dict, Optional

import torch

from .host_memory import return_free_heap


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


_peak_before_reset_kib = 0


def resident_mb() -> Optional[float]:
    """This process's resident memory now (VmRSS) in MiB; None where /proc cannot be read."""
    kib = _status_kib("VmRSS")
    return None if kib is None else round(kib / 1024, 1)


def _process_peak_kib() -> int:
    current = [_status_kib(field) or 0 for field in ("VmHWM", "VmRSS")]
    return max(_peak_before_reset_kib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, *current)  # KiB on Linux


def reset() -> Optional[float]:
    """Start the measured calls' peak; returns the MiB of free heap handed back to the OS first, or None.

    In order: the process's peak so far is kept (the kernel updates its high-water mark lazily, and pages
    released by the trim would drop out of it unseen); what compiling freed goes back to the OS
    (``host_memory.return_free_heap``), so it does not count as the measured calls'; VmHWM is cleared."""
    global _peak_before_reset_kib
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _peak_before_reset_kib = _process_peak_kib()
    before = resident_mb()
    trimmed = return_free_heap()
    after = resident_mb()
    returned = max(0.0, before - after) if trimmed and before is not None and after is not None else None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return returned


def peaks(device: str) -> Dict[str, Optional[float]]:
    """MiB: peak RSS since the last reset, the process's peak RSS, and on CUDA the peak allocated."""
    hwm = _status_kib("VmHWM")
    process = _process_peak_kib()
    out: Dict[str, Optional[float]] = {
        "peak_host_rss_mb": round(hwm / 1024, 1) if hwm is not None else round(process / 1024, 1),
        "process_max_rss_mb": round(process / 1024, 1),
        "peak_device_mb": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        out["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
