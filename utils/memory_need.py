"""What a run needs in host and device memory, known before any work, against what is available.

A batch or image size that cannot fit otherwise ends minutes later in an allocator traceback (or the
kernel's OOM killer on a shared machine). The estimate is a lower bound, so a run that fits is never
refused: the model is traced once per image on the ``meta`` device (no memory, no compute) and only
convolution and linear layers count, whose inputs and outputs every executor must hold.

Building and tracing a model on the meta device runs torch's Python meta kernels, whose checks import
torch's symbolic-shapes machinery (sympy, torch._dynamo, torch._inductor: about 150 MB that a run on
ONNX Runtime or OpenVINO never needs otherwise). Where the platform forks, the zoo's trace runs in a
forked child that sends back three numbers, so the run's own process never holds them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import select
import signal
from typing import Callable, Iterable, Optional, Tuple

import torch
from torch import nn

from .errors import UsageError

GIB = 2 ** 30
FORKED_TRACE_SECONDS = 120.0   # the largest zoo model traces in about a second
CGROUP_LIMIT = "/sys/fs/cgroup/memory.max"
CGROUP_USAGE = "/sys/fs/cgroup/memory.current"


@dataclasses.dataclass(frozen=True)
class ModelFootprint:
    """Element counts for one image: ``peak`` = the largest conv/linear input + output (what inference
    holds at once), ``saved`` = all conv/linear outputs (what training keeps for the backward pass)."""

    peak: int
    saved: int
    parameters: int


def footprint(model: nn.Module, side: int, channels: int = 3) -> ModelFootprint:
    """Traces ``model`` on one ``side`` x ``side`` image with meta tensors standing in for its weights."""
    counts = {"peak": 0, "saved": 0}

    def hook(_module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        held = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
        counts["peak"] = max(counts["peak"], held + output.numel())
        counts["saved"] += output.numel()
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    stand_ins = {name: torch.empty_like(t, device="meta")
                 for name, t in [*model.named_parameters(), *model.named_buffers()]}
    try:
        with torch.no_grad():
            torch.func.functional_call(model, stand_ins, (torch.empty(1, channels, side, side, device="meta"),))
    finally:
        for handle in handles:
            handle.remove()
    return ModelFootprint(counts["peak"], counts["saved"], sum(p.numel() for p in model.parameters()))


def meta_zoo_model(name: str, expand_ratio: int, group_dim: int) -> nn.Module:
    """A model of the zoo on the meta device: its structure without memory (a fraction of a second)."""
    from cnns.models.efficientnet import STANDARD_EXPAND_RATIO, STANDARD_GROUP_DIM, build_efficientnet
    from cnns.models.registry import model_spec
    spec = model_spec(name)
    with torch.device("meta"):
        if (expand_ratio, group_dim) != (STANDARD_EXPAND_RATIO, STANDARD_GROUP_DIM) and spec.family == "efficientnet":
            return build_efficientnet(spec.name, 1000, False, expand_ratio, group_dim)
        return spec.builder(1000, False)


def _zoo_footprint_here(name: str, side: int, expand_ratio: int, group_dim: int) -> ModelFootprint:
    return footprint(meta_zoo_model(name, expand_ratio, group_dim).eval(), side)


def _in_forked_child(trace: Callable[..., ModelFootprint], *args: object) -> Optional[ModelFootprint]:
    """``trace(*args)`` in a forked child, or None where there is no fork, no child could be made, or the
    child failed or took over FORKED_TRACE_SECONDS (the caller then traces in this process, where any
    error is raised as usual)."""
    if not hasattr(os, "fork"):
        return None
    try:
        read, write = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:   # no memory or process slot for a child (strict overcommit, a process limit)
        os.close(read)
        os.close(write)
        return None
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.write(write, json.dumps(dataclasses.astuple(trace(*args))).encode())
            code = 0
        finally:
            os._exit(code)   # no atexit handlers, no flush of the parent's copied output buffers
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        ready = select.select([answer], [], [], FORKED_TRACE_SECONDS)[0]
        data = answer.read() if ready else b""   # the child writes its one short line at once, then exits
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return None
    return ModelFootprint(*json.loads(data))


@functools.lru_cache(maxsize=32)
def zoo_footprint(name: str, side: int, expand_ratio: int, group_dim: int) -> ModelFootprint:
    """The footprint of a model of the zoo, traced on the meta device (in a forked child where possible)."""
    args = (name, side, expand_ratio, group_dim)
    return _in_forked_child(_zoo_footprint_here, *args) or _zoo_footprint_here(*args)


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_host_bytes() -> Optional[int]:
    """Memory a new allocation can get: the kernel's MemAvailable, or less under a cgroup limit."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit, usage = _read_int(CGROUP_LIMIT), _read_int(CGROUP_USAGE)
    if limit is not None and usage is not None:
        available = max(0, limit - usage) if available is None else min(available, max(0, limit - usage))
    return available


def free_device_bytes(device: str) -> Optional[int]:
    """Free memory of a CUDA device (``cuda:N``), or None when it cannot be asked."""
    try:
        return torch.cuda.mem_get_info(torch.device(device))[0]
    except (RuntimeError, AssertionError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class Need:
    """Bytes a run needs somewhere, by part, and how to say what asked for them."""

    where: str                          # "host memory" or "free memory on cuda:0"
    parts: Tuple[Tuple[str, int], ...]  # ("inputs", bytes), ("activations", bytes), ...

    @property
    def total(self) -> int:
        return sum(size for _, size in self.parts)


def refuse_if_short(need: Need, available: Optional[int], asked: str, advice: str) -> None:
    """One sentence naming the sizes asked for, what they need and what is available."""
    if available is None or need.total <= available:
        return
    parts = ", ".join(f"{name} {size / GIB:.1f}" for name, size in need.parts if size)
    raise UsageError(f"{asked} needs at least {need.total / GIB:.1f} GiB of {need.where} ({parts} GiB), more "
                     f"than the {available / GIB:.1f} GiB available; {advice}.")


def check_needs(needs: Iterable[Tuple[Need, Callable[[], Optional[int]]]], asked: str, advice: str) -> None:
    for need, available in needs:
        if need.total:
            refuse_if_short(need, available(), asked, advice)
