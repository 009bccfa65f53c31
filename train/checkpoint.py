"""Checkpoint files: ``<model>_<data>_<epoch>.pt`` after every epoch, written atomically, holding what
a resumed run needs (model, optimiser, schedule, RNG states, options) in types that
``torch.load(weights_only=True)`` accepts, so ``--weights FILE`` can read them too."""
from __future__ import annotations

import os
import random
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from cnns.models.tensor_file import UnreadableTensorFile, load_tensor_file
from cnns.utils.atomic import FolderLock, atomic_file, remove_stale_temporaries
from cnns.utils.errors import UsageError
from cnns.utils.validation import check_free_space, writable_folder

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
    with atomic_file(path) as f:
        torch.save(payload, f)
    return path


def claim_folder(folder: str) -> Tuple[FolderLock, int]:
    """Checks ``folder`` is writable, locks it against a second run writing the same checkpoint names,
    and removes temporaries a killed run left; returns the lock and how many were removed."""
    writable_folder(folder, "--checkpoint-path")
    os.makedirs(folder, exist_ok=True)
    lock = FolderLock(folder, "--checkpoint-path")
    return lock, remove_stale_temporaries(folder)


def check_space_for(folder: str, weight_bytes: int) -> None:
    """Room for at least the first checkpoint's weights (its optimiser state varies with the optimiser, and
    the temporary becomes the file by a rename), so a folder too small is refused before any training and
    a folder that fits is never refused."""
    check_free_space(folder, weight_bytes, "A checkpoint")


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by train.py; anything else is a usage error naming the file."""
    if not os.path.isfile(path):
        raise UsageError(f"Checkpoint {path!r} does not exist; --checkpoint-path must name a .pt file written by train.py.")
    try:
        ckpt = load_tensor_file(path)
    except UnreadableTensorFile as exc:
        raise UsageError(f"Checkpoint {path!r} could not be read as a PyTorch file ({exc}).") from None
    needed = ("model_state_dict", "args", "epoch", "num_classes")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        raise UsageError(f"File {path!r} is not a train.py checkpoint (it lacks {', '.join(needed)}).")
    check_fields(ckpt, path)
    return ckpt


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_fields(ckpt: Dict[str, Any], path: str) -> None:
    """Each field a script reads has the type and range train.py writes, so an edited or foreign
    checkpoint is refused with the field named instead of failing later with a KeyError."""
    def bad(field: str, accepted: str) -> UsageError:
        return UsageError(f"Checkpoint {path!r} has an unusable {field!r} field ({type(ckpt.get(field)).__name__} "
                          f"{str(ckpt.get(field))[:60]!r}); accepted: {accepted}.")
    state = ckpt["model_state_dict"]
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("model_state_dict", "a non-empty mapping of parameter names to tensors")
    if not isinstance(ckpt["args"], dict) or not isinstance(ckpt["args"].get("model"), str):
        raise bad("args", "the mapping of options train.py recorded, with a model name")
    if not _is_count(ckpt["epoch"], 0):
        raise bad("epoch", "an integer >= 0")
    if not _is_count(ckpt["num_classes"], 1):
        raise bad("num_classes", "an integer >= 1")
    for field in ("optimizer_state_dict", "lr_schedule", "augmentation_rng", "rng_state"):
        if field in ckpt and not isinstance(ckpt[field], dict):
            raise bad(field, "a mapping as train.py writes it")
    rng = ckpt.get("rng_state")
    if rng is not None and not (torch.is_tensor(rng.get("torch")) and isinstance(rng.get("python"), list)
                                and isinstance(rng.get("numpy"), dict)):
        raise bad("rng_state", "torch, python and numpy generator states as train.py writes them")


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
