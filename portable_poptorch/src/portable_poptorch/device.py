"""Device placement, synchronisation and device-scoped settings.

Which type 'half' is on each device is decided in one place, utils/backend.py (the harness passes it in
through ``Options.Portable.autocast`` or a converted model)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Optional, Sequence

import torch
from torch import nn

from .blocks import stage_assignment


def synchronize(device: torch.device) -> None:
    """Wait for queued work so host timers measure finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def stage_devices(primary: torch.device, n_stages: int, names: Optional[Sequence[str]]) -> List[torch.device]:
    """Device of each pipeline stage: stage k on device k of the list (all on ``primary`` when one device)."""
    if names:
        devs = [torch.device(n) for n in names]
    elif primary.type == "cuda" and torch.cuda.device_count() > 1:
        devs = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    else:
        devs = [primary]
    return [devs[k % len(devs)] for k in range(n_stages)]


def place_stages(model: nn.Module, devices: List[torch.device]) -> None:
    """Move each stage's modules to its device and route activations across the stage boundaries."""
    if len(set(devices)) == 1:
        model.to(devices[0])
        return
    stages = stage_assignment(model)
    modules = dict(model.named_modules())
    for name, stage in stages.items():
        mod = modules[name]
        dev = devices[min(stage, len(devices) - 1)]
        for p in mod.parameters(recurse=False):
            p.data = p.data.to(dev)
        for bname, buf in mod.named_buffers(recurse=False):
            setattr(mod, bname, buf.to(dev))

        def pre_hook(m: nn.Module, args: Any, _dev: torch.device = dev) -> Any:
            return tuple(a.to(_dev) if isinstance(a, torch.Tensor) else a for a in args)
        if any(True for _ in mod.parameters(recurse=False)) or hasattr(mod, "_portable_block"):
            mod.register_forward_pre_hook(pre_hook)


def partials_apply(partials: Optional[torch.dtype], device: torch.device) -> bool:
    """Whether ``partials_scope`` changes anything: half partials on CUDA."""
    return device.type == "cuda" and partials in (torch.half, torch.float16)


@contextlib.contextmanager
def partials_scope(partials: Optional[torch.dtype], device: torch.device) -> Iterator[None]:
    """Half partials map to CUDA's reduced-precision matmul reductions while the model runs; the
    process-wide flags are restored afterwards. The CPU has no such switch."""
    if not partials_apply(partials, device):
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved = (matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction)
    matmul.allow_fp16_reduced_precision_reduction = True
    matmul.allow_bf16_reduced_precision_reduction = True
    try:
        yield
    finally:
        matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction = saved


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """Let cuDNN time its kernels while the step is compiled (fixed shapes), restoring the flag after."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def preserved_state(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run a probe or trial step that leaves the model's buffers and the RNG streams as they were."""
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" and torch.cuda.is_available() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved_buffers:
                b.copy_(value)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
