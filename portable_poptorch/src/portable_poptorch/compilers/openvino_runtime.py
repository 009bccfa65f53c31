"""OpenVINO: the model converted from torch to OpenVINO's IR and compiled for the CPU plugin.

Inference precision is pinned to float32 (OpenVINO would otherwise run float32 models in bfloat16 on
CPUs that have it, changing what precision 32.32 means). With a cache folder the converted IR is
kept under ``<cache>/openvino`` and OpenVINO's own compiled-blob cache is pointed there too. The
converted graph is reshaped to the step's static input shapes before compiling (the CPU plugin picks
its kernels for the known shape); with executor streams it is compiled with ``NUM_STREAMS`` for the
sub-batch shape and the sub-batches run as concurrent infer requests.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, ContextManager, Dict, List, Tuple

import numpy as np

import torch
from torch import nn

from .base import CompileContext, Step, scoped_environ
from .exported_graph import ExportedGraphCompiler
from . import signal_stack
from .graph_io import input_arrays, outputs_from_arrays, tensor_inputs
from .streams import concat_outputs, even_count, split_args, split_sizes


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


def without_telemetry() -> Any:
    """OpenVINO's model converter sends usage telemetry unless it sees a CI job (its documented
    ``disable_in_ci`` switch: the CI environment variable). Each send forks this process, ten per
    conversion; a fork taken while another thread holds the resolver's lock (a runtime's thread pool, a
    data loader) hangs in getaddrinfo for good, and the benchmark with it when it joins the child at
    exit. A benchmark has nothing to report, so the conversion runs with telemetry declined."""
    return scoped_environ({"CI": "true"})


class OpenVinoCompiler(ExportedGraphCompiler):
    name = "openvino"

    def import_scope(self) -> ContextManager[Any]:
        return without_telemetry()   # importing openvino starts its telemetry too

    def compile_streams(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                        counts: List[int]) -> Dict[int, Step]:
        _, spec, batch, counts = self.prepare(model, example, ctx, counts)
        import openvino as ov
        core = ov.Core()
        xml = ctx.artefact_path(self.name, ".xml")
        blobs = None
        if xml:
            blobs = os.path.join(os.path.dirname(xml), "blobs")
            os.makedirs(blobs, exist_ok=True)
        if xml and os.path.exists(xml) and os.path.exists(xml[:-4] + ".bin"):
            ov_model = core.read_model(xml)
        else:
            with torch.no_grad(), warnings.catch_warnings(), without_telemetry():
                warnings.simplefilter("ignore")
                ov_model = ov.convert_model(model, example_input=example if len(example) > 1 else example[0])
            if xml:
                _save_ir(ov, ov_model, xml)
        shapes = [tuple(t.shape) for t in tensor_inputs(example)]
        steps: Dict[int, Step] = {}
        for wanted in counts:
            streams = even_count(batch, wanted)
            if streams in steps:
                continue
            static = ov_model.clone()
            rows = batch // streams
            static.reshape({i: ov.PartialShape([rows, *s[1:]] if s and s[0] == batch else list(s))
                            for i, s in enumerate(shapes)})
            config: Dict[str, Any] = {"INFERENCE_NUM_THREADS": ctx.threads, "INFERENCE_PRECISION_HINT": "f32",
                                      "NUM_STREAMS": streams}
            if streams == 1:
                config["PERFORMANCE_HINT"] = "LATENCY"
            if blobs:
                config["CACHE_DIR"] = blobs
            with signal_stack.kept():  # see signal_stack: OpenVINO's own stack would dangle once freed
                compiled = core.compile_model(static, "CPU", config)
            steps[streams] = _requests_step(compiled, streams, batch, spec)
        return steps


def _requests_step(compiled: Any, streams: int, batch: int, spec: Any) -> Step:
    """One infer request per stream; with several, the sub-batches are started together and awaited."""
    requests = [compiled.create_infer_request() for _ in range(streams)]
    if streams == 1:
        request = requests[0]

        def step(*args: Any) -> Any:
            result = request.infer(input_arrays(args), share_inputs=True, share_outputs=False)
            return outputs_from_arrays(result.to_tuple(), spec)
        return step
    sizes = split_sizes(batch, streams)
    outputs = len(compiled.outputs)

    def streamed(*args: Any) -> Any:
        parts = split_args(args, sizes)
        for request, part in zip(requests, parts):
            request.start_async(input_arrays(part), share_inputs=True)
        gathered = []
        for request in requests:
            request.wait()
            arrays = [np.array(request.get_output_tensor(i).data) for i in range(outputs)]
            gathered.append(outputs_from_arrays(arrays, spec))
        return concat_outputs(gathered)
    return streamed
