"""The model's own forward, op by op; on CUDA replayed from a CUDA graph where the model allows."""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import nn

from ..cuda_graph import GraphedStep
from .base import CompileContext, Step, StepCompiler


class EagerCompiler(StepCompiler):
    name = "eager"

    def static_outputs(self, ctx: CompileContext) -> bool:
        return ctx.device.type == "cuda" and ctx.cuda_graphs

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        step: Step = model
        dtype = ctx.compute_dtype
        if dtype is not None:
            device_type = ctx.device.type

            def autocast_step(*args: Any) -> Any:
                with torch.autocast(device_type, dtype=dtype):
                    return model(*args)
            step = autocast_step
        if not self.static_outputs(ctx):
            return step
        try:
            with torch.inference_mode():
                return GraphedStep(step, example)
        except Exception as exc:  # graph capture is an optimisation; eager is always correct
            ctx.notes.append(f"CUDA graph capture failed ({exc}); running eagerly.")
            ctx.cuda_graphs = False
            return step
