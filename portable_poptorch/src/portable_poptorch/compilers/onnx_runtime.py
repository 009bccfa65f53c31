"""ONNX Runtime: the model exported to ONNX (PopART's own input format), optimised and run by ORT.

Each session runs one sub-batch size, so the graph is exported for that static shape, as PopART
compiles for one: measured on efficientnet-b0 at batch 1, a static export ran ~4% faster than the
same graph with a free batch dimension, fixed or not by a session override (shape arithmetic folded
away at export). inferenceModel compiles again when a call brings other shapes. Executor streams run
one session per stream, each on its share of the threads. With a cache folder ORT's optimised model
is kept under ``<cache>/onnxruntime``, one per sub-batch size, and a later run with the same key loads
it without exporting again.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .base import CompileContext, Step, write_atomically
from .exported_graph import ExportedGraphCompiler
from .graph_io import input_arrays, outputs_from_arrays, tensor_inputs
from .streams import ThreadedStreams, split_sizes

OPSET = 17


def export_onnx(model: nn.Module, example: Tuple[Any, ...], path: str, outputs: int = 1,
                free_batch: bool = True) -> None:
    """TorchScript-based export (fast, what ORT and OpenVINO read best; torch.export-based where it is
    gone), with the batch dimension of every input and output left free unless ``free_batch`` is off."""
    names = [f"input_{i}" for i in range(len(tensor_inputs(example)))]
    output_names = [f"output_{i}" for i in range(outputs)]
    free = {name: {0: "batch"} for name in names + output_names} if free_batch else None
    kwargs = dict(opset_version=OPSET, input_names=names, output_names=output_names, dynamic_axes=free)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, example, path, dynamo=False, **kwargs)
        except TypeError:
            torch.onnx.export(model, example, path, **kwargs)


def _rows_of(example: Tuple[Any, ...], batch: int, rows: int) -> Tuple[Any, ...]:
    """The example with every batched tensor cut to its first ``rows`` samples."""
    return tuple(t[:rows] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == batch else t
                 for t in example)


class OnnxRuntimeCompiler(ExportedGraphCompiler):
    name = "onnxruntime"

    def compile_streams(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                        counts: List[int]) -> Dict[int, Step]:
        leaves, spec, batch, counts = self.prepare(model, example, ctx, counts)
        import onnxruntime as ort

        def session(source: str, threads: int, save_to: Optional[str] = None) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if save_to:
                options.optimized_model_filepath = save_to
            return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

        sources: Dict[int, str] = {}

        def source_for(rows: int, tmp: str) -> str:
            """The graph for sub-batches of ``rows`` samples: exported once per size, or the cached one."""
            if rows not in sources:
                optimised = ctx.artefact_path(self.name, f".rows{rows}.optimised.onnx")
                if optimised and os.path.exists(optimised):
                    sources[rows] = optimised
                else:
                    exported = os.path.join(tmp, f"model_rows{rows}.onnx")
                    export_onnx(model, _rows_of(example, batch, rows), exported, len(leaves), free_batch=False)
                    if optimised:
                        write_atomically(optimised, lambda path: session(exported, ctx.threads, save_to=path))
                    sources[rows] = optimised or exported
            return sources[rows]

        steps: Dict[int, Step] = {}
        with tempfile.TemporaryDirectory(prefix="portable_onnx_") as tmp:
            for n in counts:
                sizes = split_sizes(batch, n)
                steps[n] = self._step(session, {rows: source_for(rows, tmp) for rows in sizes},
                                      ctx.threads, sizes, spec, batch)
        return steps

    @staticmethod
    def _step(session: Any, sources: Dict[int, str], threads: int, sizes: List[int], spec: Any, batch: int) -> Step:
        """One session per stream, built from the graph for that stream's rows. Streams of one thread
        each share one session per size (ORT runs a one-thread session's operators on the calling
        thread, and concurrent runs are safe), so the weights are held once per size; streams of
        several threads get a session each, so their thread pools do not contend."""
        def runner(sess: Any) -> Step:
            names = [i.name for i in sess.get_inputs()]

            def run(*args: Any) -> Any:
                return outputs_from_arrays(sess.run(None, dict(zip(names, input_arrays(args)))), spec)
            return run
        if len(sizes) == 1:
            return runner(session(sources[batch], threads))
        share = max(1, threads // len(sizes))
        if share == 1:
            shared = {rows: runner(session(source, 1)) for rows, source in sources.items()}
            return ThreadedStreams([shared[rows] for rows in sizes], batch)
        return ThreadedStreams([runner(session(sources[rows], share)) for rows in sizes], batch)
