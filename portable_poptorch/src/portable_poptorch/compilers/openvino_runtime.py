"""OpenVINO: the model converted from torch to OpenVINO's IR and compiled for the CPU plugin.

Inference precision is pinned to float32 (OpenVINO would otherwise run float32 models in bfloat16 on
CPUs that have it, changing what precision 32.32 means). With a cache folder the converted IR is
kept under ``<cache>/openvino`` and OpenVINO's own compiled-blob cache is pointed there too.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Optional, Tuple

import torch
from torch import nn

from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, float32_only, import_problem
from .graph_io import input_arrays, output_spec, outputs_from_arrays


def _save_ir(ov: Any, ov_model: Any, xml_path: str) -> None:
    """Write the IR pair under temporary names, then rename the weights before the graph that names them;
    the temporaries are removed whether or not it completes."""
    tmp_xml = f"{xml_path[:-4]}.tmp{os.getpid()}.xml"
    temporaries = (tmp_xml, tmp_xml[:-4] + ".bin", xml_path + f".tmp{os.getpid()}")
    try:
        ov.save_model(ov_model, tmp_xml, compress_to_fp16=False)
        os.replace(temporaries[1], xml_path[:-4] + ".bin")
        with open(tmp_xml) as f:
            text = f.read()
        with open(temporaries[2], "w") as f:
            f.write(text)
        os.replace(temporaries[2], xml_path)
    finally:
        for tmp in temporaries:
            if os.path.exists(tmp):
                os.remove(tmp)


class OpenVinoCompiler(StepCompiler):
    name = "openvino"

    def environment_problem(self, ctx: CompileContext) -> Optional[str]:
        if ctx.device.type != "cpu":
            return f"the openvino executor runs on the CPU only here, not on {ctx.device.type}"
        return import_problem("openvino")

    def model_problem(self, model: nn.Module, ctx: CompileContext) -> Optional[str]:
        return float32_only(model, ctx, "openvino")

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        import openvino as ov
        reason = self.unavailable_reason(model, example, ctx)
        if reason:
            raise CompilerUnavailable(reason)
        spec = output_spec(model, example)
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": ctx.threads, "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        xml = ctx.artefact_path(self.name, ".xml")
        if xml:
            blobs = os.path.join(os.path.dirname(xml), "blobs")
            os.makedirs(blobs, exist_ok=True)
            config["CACHE_DIR"] = blobs
        if xml and os.path.exists(xml) and os.path.exists(xml[:-4] + ".bin"):
            compiled = core.compile_model(xml, "CPU", config)
        else:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ov_model = ov.convert_model(model, example_input=example if len(example) > 1 else example[0])
            if xml:
                _save_ir(ov, ov_model, xml)
                compiled = core.compile_model(xml, "CPU", config)
            else:
                compiled = core.compile_model(ov_model, "CPU", config)
        request = compiled.create_infer_request()

        def step(*args: Any) -> Any:
            result = request.infer(input_arrays(args), share_inputs=True, share_outputs=False)
            return outputs_from_arrays(result.to_tuple(), spec)
        return step
