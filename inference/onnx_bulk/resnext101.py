"""ResNeXt-101 model files and the ONNX Runtime session that runs them.

On IPUs each process compiled the ONNX graph with PopART for one device.  Here
each process opens one ONNX Runtime session; the execution provider stands in
for the device and the intra-op thread count for the share of the host it gets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnns.models import model_input_size, model_preprocessing
from cnns.models.cadene import MODEL_KEY, RESNEXT101_KEYS
from cnns.models.preprocessing import Preprocessing

MODEL_NAMES = RESNEXT101_KEYS


def input_preprocessing() -> tuple[Preprocessing, int]:
    """The model table's preprocessing and input side for these models. The table holds the 32x4d;
    pretrainedmodels publishes the same input settings for the 64x4d, so that entry serves both."""
    return model_preprocessing(MODEL_KEY), model_input_size(MODEL_KEY)


def model_file(model_dir: Path, model_name: str, batch_size: int) -> Path:
    """Where get_model.py writes, and the launcher looks for, a fixed-batch model."""
    return Path(model_dir) / model_name / f"{model_name}_bs{batch_size}.onnx"


def onnx_model_problem(path: Path, need_graph: bool = True) -> str | None:
    """Why ``path`` is not an ONNX model ONNX Runtime can open (not ONNX, truncated, or with
    ``need_graph`` an empty graph), as the end of a sentence naming it; None when it reads."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises protobuf's DecodeError and its own types
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return f"cannot be read ({detail})"
    if need_graph and not (model.graph.node and model.graph.input and model.graph.output):
        return "holds no ONNX graph (no nodes, inputs or outputs)"
    return None


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity where exposed)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_process(num_processes: int, requested: int = 0) -> int:
    """Split the host's CPUs evenly between sessions unless a count was requested."""
    if requested > 0:
        return requested
    return max(1, available_cpus() // max(1, num_processes))


def choose_providers(preference: str = "auto") -> list[str]:
    """Map 'auto'/'cpu'/'cuda' to ONNX Runtime execution providers, CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if preference == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError("CUDAExecutionProvider is not available; install onnxruntime-gpu or use cpu.")
    if preference in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ResNeXtSession:
    """One fixed-batch ONNX Runtime session; ``run`` returns logits fetched to the host."""

    def __init__(self, path: Path, intra_op_threads: int, providers: list[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        model_input = self.session.get_inputs()[0]
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        self.batch_size = model_input.shape[0]
        self.providers = self.session.get_providers()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of one batch, fed in the element type the model declares (float16 models get float16)."""
        feed = batch.astype(self.input_dtype, copy=False)
        return self.session.run([self.output_name], {self.input_name: feed})[0]


def top5(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-5 class indices and softmax probabilities per row, best first."""
    logits = logits.astype(np.float32, copy=False)  # float16 models' logits, summed in float32
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    return order, np.take_along_axis(probs, order, axis=1)
