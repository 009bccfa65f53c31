"""Keys for compiled artefacts and for auto's choice, so a changed input never reuses a stale one.

An artefact (an ONNX Runtime model, an OpenVINO IR) bakes in the weights, so its key covers the model's
structure, its weights, the micro-step's input shapes and dtypes, the precision, the device and the
library versions. Which executor is fastest does not depend on the weights' values, so auto's choice
is keyed without them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
from typing import Any, Iterable, Optional, Tuple

import torch
from torch import nn

LIBRARIES = ("torch", "onnx", "onnxruntime", "openvino")
ARTEFACT_FORMAT = 2   # raised when what an artefact holds changes (2: free batch dimension, static IR reshape)


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def library_versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}=-")
    return ",".join(found)


def _structure(model: nn.Module) -> Iterable[bytes]:
    yield repr(model).encode()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        yield f"{name}:{tuple(t.shape)}:{t.dtype}".encode()


def _weights(model: nn.Module) -> Iterable[bytes]:
    for t in list(model.parameters()) + list(model.buffers()):
        data = t.detach().cpu().contiguous().reshape(-1)
        yield data.view(torch.uint8).numpy().tobytes() if data.numel() else b""


def _inputs(example: Tuple[Any, ...]) -> Iterable[bytes]:
    for t in example:
        yield (f"{tuple(t.shape)}:{t.dtype}" if isinstance(t, torch.Tensor) else repr(t)).encode()


def _context(device_name: str, threads: int, compute_dtype: Optional[torch.dtype]) -> Iterable[bytes]:
    yield (f"{device_name}|threads={threads}|autocast={compute_dtype}|format={ARTEFACT_FORMAT}|"
           f"{library_versions()}").encode()


def choice_key(model: nn.Module, example: Tuple[Any, ...], device_name: str, threads: int,
               compute_dtype: Optional[torch.dtype], streams: Optional[int] = None) -> str:
    """Key of auto's choice: the stream count asked for (None = auto) changes what was chosen among."""
    return _digest([*_structure(model), *_inputs(example), *_context(device_name, threads, compute_dtype),
                    f"streams={streams}".encode()])


def artefact_key(model: nn.Module, example: Tuple[Any, ...], device_name: str, threads: int,
                 compute_dtype: Optional[torch.dtype]) -> str:
    return _digest([*_structure(model), *_weights(model), *_inputs(example),
                    *_context(device_name, threads, compute_dtype)])
