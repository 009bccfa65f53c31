"""Elastic restarts (``torchrun --max-restarts N``, ``poprun --max-restarts N``): after an instance dies,
torch.distributed.run starts every instance again; the restarted run continues from the last checkpoint
this launch wrote (with each instance's own RNG states), so it ends with an uninterrupted run's weights."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from train.checkpoint import epoch_of, load_checkpoint


def restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def launch_id() -> Optional[str]:
    """torch.distributed.run's run id: the same for every attempt of one launch, new for the next launch."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or None


def checkpoint_to_resume(checkpoint_path: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The newest checkpoint written by an earlier attempt of this launch, or None (first attempt, no
    checkpoint yet, or only checkpoints of other launches in the folder)."""
    if restart_count() == 0 or not checkpoint_path or not os.path.isdir(checkpoint_path):
        return None
    files = [os.path.join(checkpoint_path, f) for f in os.listdir(checkpoint_path) if epoch_of(f) is not None]
    for path in sorted(files, key=lambda f: epoch_of(f) or 0, reverse=True):
        ckpt = load_checkpoint(path)
        if launch_id() is not None and ckpt.get("launch_id") == launch_id():
            return path, ckpt
    return None
