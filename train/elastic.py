"""Elastic restarts (``torchrun --max-restarts N``, ``poprun --max-restarts N``): after an instance dies,
torch.distributed.run starts every instance again; the restarted run continues from the last checkpoint
this launch wrote (with each instance's own RNG states), so it ends with an uninterrupted run's weights."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

from cnns.train.checkpoint import load_checkpoint
from cnns.utils.atomic import write_json

RECORD = "elastic_launch.json"


def launch_id() -> Optional[str]:
    """torch.distributed.run's run id: the same for every attempt of one launch, new for the next launch
    (poprun and ``torchrun --standalone`` draw one; a static rendezvous has the placeholder "none")."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return None if run_id in (None, "", "none") else run_id


def record(folder: str, checkpoint: str) -> None:
    """Note which launch wrote ``checkpoint`` (the newest), atomically, for a restarted attempt to find."""
    if launch_id() is None:
        return
    write_json(os.path.join(folder, RECORD), {"launch_id": launch_id(), "checkpoint": os.path.basename(checkpoint)})


def checkpoint_to_resume(folder: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The newest checkpoint written by an earlier attempt of this launch, or None (first attempt, no
    checkpoint yet, or a folder last written by another launch). Judged by the launch id, not by the
    restart count: torch.distributed.run counts restarts only on the host where the failure was."""
    path = os.path.join(folder or "", RECORD)
    if launch_id() is None or not folder or not os.path.isfile(path):
        return None
    with open(path) as f:
        noted = json.load(f)
    if noted.get("launch_id") != launch_id():
        return None
    checkpoint = os.path.join(folder, noted["checkpoint"])
    return checkpoint, load_checkpoint(checkpoint)
