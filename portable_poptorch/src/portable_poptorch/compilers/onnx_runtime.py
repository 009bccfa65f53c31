"""ONNX Runtime: the model exported to ONNX (PopART's own input format), optimised and run by ORT.

The graph is exported with a free batch dimension, so one optimised model serves the whole micro-batch
and the sub-batches of executor streams (one session per stream, each on its share of the threads).
With a cache folder ORT's optimised model is kept under ``<cache>/onnxruntime`` and a later run with
the same key loads it without exporting again.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, float32_only, import_problem, write_atomically
from .graph_io import input_arrays, outputs_from_arrays, sample_outputs, tensor_inputs
from .streams import ThreadedStreams, micro_batch, outputs_are_batched

OPSET = 17


def export_onnx(model: nn.Module, example: Tuple[Any, ...], path: str, outputs: int = 1) -> None:
    """TorchScript-based export (fast, what ORT and OpenVINO read best; torch.export-based where it is
    gone), with the batch dimension of every input and output left free."""
    names = [f"input_{i}" for i in range(len(tensor_inputs(example)))]
    output_names = [f"output_{i}" for i in range(outputs)]
    free = {name: {0: "batch"} for name in names + output_names}
    kwargs = dict(opset_version=OPSET, input_names=names, output_names=output_names, dynamic_axes=free)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, example, path, dynamo=False, **kwargs)
        except TypeError:
            torch.onnx.export(model, example, path, **kwargs)


class OnnxRuntimeCompiler(StepCompiler):
    name = "onnxruntime"
    supports_streams = True

    def environment_problem(self, ctx: CompileContext) -> Optional[str]:
        if ctx.device.type != "cpu":
            return f"the onnxruntime executor runs on the CPU only here, not on {ctx.device.type}"
        return import_problem("onnxruntime")

    def model_problem(self, model: nn.Module, ctx: CompileContext) -> Optional[str]:
        return float32_only(model, ctx, "onnxruntime")

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        return self.compile_streams(model, example, ctx, [1])[1]

    def compile_streams(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                        counts: List[int]) -> Dict[int, Step]:
        import onnxruntime as ort
        reason = self.unavailable_reason(model, example, ctx)
        if reason:
            raise CompilerUnavailable(reason)
        leaves, spec = sample_outputs(model, example)
        if not outputs_are_batched(example, leaves):
            counts = [1]
        optimised = ctx.artefact_path(self.name, ".optimised.onnx")

        def session(source: str, threads: int, save_to: Optional[str] = None) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if save_to:
                options.optimized_model_filepath = save_to
            return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

        with tempfile.TemporaryDirectory(prefix="portable_onnx_") as tmp:
            if optimised and os.path.exists(optimised):
                source = optimised
            else:
                source = os.path.join(tmp, "model.onnx")
                export_onnx(model, example, source, len(leaves))
                if optimised:
                    write_atomically(optimised, lambda path: session(source, ctx.threads, save_to=path))
                    source = optimised
            return {n: self._step(session, source, ctx.threads, n, spec, micro_batch(example)) for n in counts}

    @staticmethod
    def _step(session: Any, source: str, threads: int, streams: int, spec: Any, batch: int) -> Step:
        """One session for one stream. Streams of one thread each share one session (ORT runs a one-thread
        session's operators on the calling thread, and concurrent runs are safe), so the weights are held
        once; streams of several threads get a session each, so their thread pools do not contend."""
        def runner(sess: Any) -> Step:
            names = [i.name for i in sess.get_inputs()]

            def run(*args: Any) -> Any:
                return outputs_from_arrays(sess.run(None, dict(zip(names, input_arrays(args)))), spec)
            return run
        if streams == 1:
            return runner(session(source, threads))
        share = max(1, threads // streams)
        if share == 1:
            shared = runner(session(source, 1))
            return ThreadedStreams([shared] * streams, batch)
        return ThreadedStreams([runner(session(source, share)) for _ in range(streams)], batch)
