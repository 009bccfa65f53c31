"""Checkpoint files: ``<model>_<data>_<epoch>.pt`` after every epoch, written atomically, holding what
a resumed run needs (model, optimiser, schedule, RNG states, options) in types that
``torch.load(weights_only=True)`` accepts, so ``--weights FILE`` can read them too."""
from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from utils.errors import UsageError

_EPOCH_FILE = re.compile(r"^(?P<stem>.+)_(?P<epoch>\d+)\.pt$")


def checkpoint_name(model: str, data: str, epoch: int) -> str:
    return f"{model}_{data}_{epoch}.pt"


def plain(value: Any) -> Any:
    """Options as primitives (lists, strings, numbers, None) so the checkpoint loads with weights_only."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": plain(random.getstate()),
             "numpy": plain(np.random.get_state(legacy=False))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str, name: str, payload: Dict[str, Any]) -> str:
    """Write to a temporary file in ``folder`` and rename it, so a crash never leaves half a checkpoint."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by train.py; anything else is a usage error naming the file."""
    if not os.path.isfile(path):
        raise UsageError(f"Checkpoint {path!r} does not exist; --checkpoint-path must name a .pt file written by train.py.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"Checkpoint {path!r} could not be read as a PyTorch file ({reason}).") from None
    needed = ("model_state_dict", "args", "epoch")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        raise UsageError(f"File {path!r} is not a train.py checkpoint (it lacks {', '.join(needed)}).")
    return ckpt


def epoch_of(path: str) -> Optional[int]:
    match = _EPOCH_FILE.match(os.path.basename(path))
    return int(match.group("epoch")) if match else None


def list_checkpoints(folder: str) -> List[str]:
    """Per-epoch checkpoints in ``folder``, oldest epoch first (averaged checkpoints excluded)."""
    if not os.path.isdir(folder):
        raise UsageError(f"Checkpoint folder {folder!r} does not exist.")
    files = [os.path.join(folder, f) for f in os.listdir(folder) if epoch_of(f) is not None]
    if not files:
        raise UsageError(f"Checkpoint folder {folder!r} holds no <model>_<data>_<epoch>.pt checkpoint.")
    return sorted(files, key=lambda f: (epoch_of(f), f))
