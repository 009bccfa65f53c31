"""--profile off IPU: a torch.profiler trace of the measured work, written into the run's log folder.
(On IPUs Poplar's report is asked for through the engine options before compilation instead.)"""
from __future__ import annotations

import os
from typing import Any

import torch

from .atomic import atomic_path

TRACE_FILE = "profile_trace.json"


def trace_path(log_dir: str) -> str:
    return os.path.join(log_dir, TRACE_FILE)


def torch_trace(device: str, log_dir: str) -> Any:
    """A profiler context (CPU activity, and CUDA kernels on a GPU) that writes its Chrome trace to
    ``trace_path(log_dir)`` when it closes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities, record_shapes=True,
                                  on_trace_ready=lambda p: _export(p, trace_path(log_dir)))


def _export(profile: Any, path: str) -> None:
    """The trace is written whole or not at all, like every file of the log folder."""
    with atomic_path(path) as tmp:
        profile.export_chrome_trace(tmp)
