"""Peak host (resident set) and device memory of a run, so memory is read next to speed.

``reset()`` after compilation makes the figures those of the measured calls: Linux's peak RSS
(VmHWM) is reset through /proc/self/clear_refs, CUDA's through its allocator statistics.
"""
from __future__ import annotations

import resource
from typing import Dict, Optional

import torch


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset() -> bool:
    """Start a new peak; returns False where the host peak cannot be reset (then it covers the process)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peaks(device: str) -> Dict[str, Optional[float]]:
    """MiB: peak RSS since the last reset, the process's peak RSS, and on CUDA the peak allocated."""
    hwm = _status_kib("VmHWM")
    process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out: Dict[str, Optional[float]] = {
        "peak_host_rss_mb": round(hwm / 1024, 1) if hwm is not None else round(process / 1024, 1),
        "process_max_rss_mb": round(process / 1024, 1),
        "peak_device_mb": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        out["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
