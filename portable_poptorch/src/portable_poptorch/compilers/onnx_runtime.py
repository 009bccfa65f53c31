"""ONNX Runtime: the model exported to ONNX (PopART's own input format), optimised and run by ORT.

With a cache folder the exported graph and ORT's optimised model are kept under ``<cache>/onnxruntime``
and a later run with the same key loads the optimised model without exporting again.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Optional, Tuple

import torch
from torch import nn

from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, float32_only, import_problem, write_atomically
from .graph_io import input_arrays, output_spec, outputs_from_arrays, tensor_inputs

OPSET = 17


def export_onnx(model: nn.Module, example: Tuple[Any, ...], path: str) -> None:
    """TorchScript-based export (fast, what ORT and OpenVINO read best); torch.export-based where it is gone."""
    names = [f"input_{i}" for i in range(len(tensor_inputs(example)))]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, example, path, dynamo=False, opset_version=OPSET, input_names=names)
        except TypeError:
            torch.onnx.export(model, example, path, opset_version=OPSET, input_names=names)


class OnnxRuntimeCompiler(StepCompiler):
    name = "onnxruntime"

    def environment_problem(self, ctx: CompileContext) -> Optional[str]:
        if ctx.device.type != "cpu":
            return f"the onnxruntime executor runs on the CPU only here, not on {ctx.device.type}"
        return import_problem("onnxruntime")

    def model_problem(self, model: nn.Module, ctx: CompileContext) -> Optional[str]:
        return float32_only(model, ctx, "onnxruntime")

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        import onnxruntime as ort
        reason = self.unavailable_reason(model, example, ctx)
        if reason:
            raise CompilerUnavailable(reason)
        spec = output_spec(model, example)
        optimised = ctx.artefact_path(self.name, ".optimised.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if optimised and os.path.exists(optimised):
            session = ort.InferenceSession(optimised, options, providers=providers)
        else:
            with tempfile.TemporaryDirectory(prefix="portable_onnx_") as tmp:
                exported = os.path.join(tmp, "model.onnx")
                export_onnx(model, example, exported)
                if optimised:
                    def save(path: str) -> None:
                        options.optimized_model_filepath = path
                        holder["session"] = ort.InferenceSession(exported, options, providers=providers)
                    holder: dict = {}
                    write_atomically(optimised, save)
                    session = holder["session"]
                else:
                    session = ort.InferenceSession(exported, options, providers=providers)
        names = [i.name for i in session.get_inputs()]

        def step(*args: Any) -> Any:
            arrays = input_arrays(args)
            return outputs_from_arrays(session.run(None, dict(zip(names, arrays))), spec)
        return step
