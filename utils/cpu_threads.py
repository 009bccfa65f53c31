"""How many intra-op threads an instance uses: the host's cores divided between its instances.

torch, ONNX Runtime and OpenVINO each default to every core; several instances on one host would then
oversubscribe the CPU. ``OMP_NUM_THREADS`` (set by the user, poprun or torchrun) wins when present.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import torch


def visible_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_cpu_threads() -> Dict[str, Any]:
    """Set torch's intra-op thread count for this instance; returns what was chosen and why."""
    cores = visible_cores()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        threads, source = int(env), "OMP_NUM_THREADS"
    else:
        threads, source = max(1, cores // local), "the visible cores divided between this host's instances"
    torch.set_num_threads(threads)
    note = (f"CPU threads: {threads} intra-op thread(s) per instance ({source}; "
            f"{cores} cores visible, {local} instance(s) on this host).")
    return {"intra_op_threads": threads, "cores_visible": cores, "instances_on_host": local,
            "source": source, "note": note}
