"""Loading weights from a local file and downloading pretrained ones without hanging offline."""
from __future__ import annotations

import contextlib
import os
import socket
from typing import Dict, Iterator

import torch
from torch import nn

from .errors import ModelConfigError
from .tensor_file import UnreadableTensorFile, load_tensor_file

DOWNLOAD_SOCKET_TIMEOUT_S = 5.0
_WRAPPER_PREFIXES = ("model.", "module.")


@contextlib.contextmanager
def fail_fast_network(timeout_s: float = DOWNLOAD_SOCKET_TIMEOUT_S) -> Iterator[None]:
    """Bounds each blocking socket operation so an unreachable server fails quickly; restores after."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_failure_reason(error: BaseException) -> str:
    """A short human reason, e.g. '[Errno -2] Name or service not known' rather than the full repr."""
    reason = getattr(error, "reason", None) or error
    return str(reason) or type(error).__name__


def load_weights_file(model: nn.Module, path: str, model_name: str) -> None:
    """Loads a state_dict, or a checkpoint dict holding one under 'model_state_dict', into ``model``."""
    if not os.path.isfile(path):
        raise ModelConfigError(f"Weights file {path!r} does not exist.")
    try:
        loaded = load_tensor_file(path)
    except UnreadableTensorFile as error:
        raise ModelConfigError(
            f"Weights file {path!r} could not be read as a PyTorch state_dict or checkpoint ({error}).") from None
    state_dict = loaded.get("model_state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ModelConfigError(
            f"Weights file {path!r} holds neither a state_dict nor a checkpoint with a 'model_state_dict' entry.")
    state_dict = _strip_wrapper_prefix(state_dict, set(model.state_dict()))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ModelConfigError(
            f"Weights file {path!r} does not fit model {model_name} as configured: {_mismatch_summary(error)}.") from error


def _strip_wrapper_prefix(state_dict: Dict[str, torch.Tensor], expected: set) -> Dict[str, torch.Tensor]:
    """Drops a 'model.' (training/normalising wrapper) or 'module.' (DataParallel) key prefix."""
    if set(state_dict) & expected:
        return state_dict
    for prefix in _WRAPPER_PREFIXES:
        inner = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
        if inner:
            return inner
    return state_dict


def _mismatch_summary(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = " ".join(lines[1:]) if len(lines) > 1 else str(error)
    return summary if len(summary) <= 400 else summary[:397] + "..."
