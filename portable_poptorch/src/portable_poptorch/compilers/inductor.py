"""torch.compile with the Inductor backend: the graph is traced and compiled before the first call.

In inference the weights are frozen into the graph (Inductor's ``freezing``), as PopART folds them
into the Poplar executable; on CUDA the compiled step is replayed from CUDA graphs
("reduce-overhead"). With a cache folder Inductor's own caches live under ``<cache>/inductor``.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
from typing import Any, Tuple

import torch
from torch import nn

from .base import CompileContext, Step, StepCompiler, scoped_environ


class _Autocast(nn.Module):
    """Forward under autocast, so the compiled graph holds the half casts (precision 16.32)."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, *args: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(*args)


def _is_image(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4


def cache_environment(ctx: CompileContext) -> Any:
    """Inductor's cache folder while compiling (restored afterwards), or nothing without a cache."""
    if not ctx.cache_dir:
        return contextlib.nullcontext()
    folder = os.path.abspath(os.path.join(ctx.cache_dir, "inductor"))
    os.makedirs(folder, exist_ok=True)
    return scoped_environ({"TORCHINDUCTOR_CACHE_DIR": folder, "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"})


class InductorCompiler(StepCompiler):
    name = "inductor"

    def static_outputs(self, ctx: CompileContext) -> bool:
        """CUDA-graph replays reuse their output buffers: callers clone what they keep."""
        return ctx.device.type == "cuda"

    def environment_problem(self, ctx: CompileContext) -> Any:
        if not hasattr(torch, "compile"):
            return "torch.compile is not in this torch"
        if ctx.device.type == "cpu":
            if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
                return "Inductor's CPU backend needs a C++ compiler (g++ or clang++) on PATH"
        return None

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        channels_last = ctx.device.type == "cpu" and any(_is_image(t) for t in example)
        if channels_last:  # oneDNN's convolutions, which frozen CPU graphs use, want NHWC
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        module = model if ctx.compute_dtype is None else _Autocast(model, ctx.device.type, ctx.compute_dtype)
        # On CUDA what mode="reduce-overhead" sets (CUDA graphs), through torch.compile's public ``options``
        # (mode and options are exclusive).
        compiled = torch.compile(module, options={"triton.cudagraphs": ctx.device.type == "cuda"})
        step: Step = compiled
        if channels_last:
            def step(*args: Any) -> Any:
                return compiled(*(a.contiguous(memory_format=torch.channels_last) if _is_image(a) else a for a in args))
        # Inductor compiles on the first call: do it now, not in the measured calls, with the weights frozen
        # into the graph. ``freezing`` has to be in Inductor's config while that call traces and compiles:
        # passed in torch.compile's options it left the weights as graph inputs (a weight edited after
        # compiling changed the outputs) and resnet50 at batch 16 ran 524 ms a call against 431-439 ms
        # frozen (2 cores, benchmarks/RESULTS.md). Later calls run the frozen graph without the setting.
        import torch._inductor.config as inductor_config   # no public switch does this (test_standalone)
        with cache_environment(ctx), torch.inference_mode(), inductor_config.patch(freezing=True):
            step(*example)
        return step
