"""What the CPU runtimes of an exported graph (ONNX Runtime, OpenVINO) share: where they run, what they
cannot run, and the checks every compile starts with."""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Dict, List, Optional, Tuple

from torch import nn

from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, float32_only, import_problem
from .graph_io import sample_outputs
from .streams import micro_batch, outputs_are_batched


class ExportedGraphCompiler(StepCompiler):
    """A runtime fed the model as a float32 graph on the CPU, splitting the micro-batch into streams.

    Subclasses name their Python module (``name``, also the executor's name) and build the steps in
    ``compile_streams`` after ``prepare``."""

    supports_streams = True

    def import_scope(self) -> ContextManager[Any]:
        """What importing the runtime runs under (nothing here; OpenVINO declines its telemetry)."""
        return contextlib.nullcontext()

    def environment_problem(self, ctx: CompileContext) -> Optional[str]:
        if ctx.device.type != "cpu":
            return f"the {self.name} executor runs on the CPU only here, not on {ctx.device.type}"
        with self.import_scope():
            return import_problem(self.name)

    def model_problem(self, model: nn.Module, ctx: CompileContext) -> Optional[str]:
        return float32_only(model, ctx, self.name)

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        return self.compile_streams(model, example, ctx, [1])[1]

    def prepare(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                counts: List[int]) -> Tuple[List[Any], Any, int, List[int]]:
        """The model's flat sample outputs, their nesting, the micro-batch and the stream counts to build
        (one stream when an output is not batched, so sub-batch outputs could not be joined); raises
        CompilerUnavailable when this runtime cannot run the model here."""
        reason = self.unavailable_reason(model, example, ctx)
        if reason:
            raise CompilerUnavailable(reason)
        leaves, spec = sample_outputs(model, example)
        return leaves, spec, micro_batch(example), counts if outputs_are_batched(example, leaves) else [1]

    def compile_streams(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                        counts: List[int]) -> Dict[int, Step]:
        raise NotImplementedError
