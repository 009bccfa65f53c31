"""Pipeline stage annotations (BeginBlock / Block), execution strategies, loss and checkpoint markers.

On IPUs each stage runs on its own IPU. Here stage k runs on device k of the process's device list;
with one device the stages simply run in order, which gives the same numbers.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .enums import AutoStage

_STAGE_ATTR = "_portable_block"
_block_state = threading.local()


def BeginBlock(module: nn.Module, user_id: Optional[str] = None, ipu_id: Optional[int] = None) -> nn.Module:
    """Mark ``module`` as the first layer of a new pipeline stage; returns the module."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"BeginBlock expects an nn.Module, got {type(module).__name__}.")
    setattr(module, _STAGE_ATTR, (user_id, ipu_id))
    return module


class Block:
    """Context manager form of a stage marker, used inside ``forward``."""

    def __init__(self, user_id: Optional[str] = None, ipu_id: Optional[int] = None) -> None:
        self.user_id, self.ipu_id = user_id, ipu_id

    def __enter__(self) -> "Block":
        seen = getattr(_block_state, "seen", None)
        if seen is not None:
            seen.append((self.user_id, self.ipu_id))
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @staticmethod
    def useAutoId() -> None:
        return None


def record_runtime_blocks() -> List[Tuple[Optional[str], Optional[int]]]:
    """Start recording ``Block`` contexts entered during a forward; returns the live list."""
    _block_state.seen = []
    return _block_state.seen


def stop_recording_blocks() -> None:
    _block_state.seen = None


def marked_blocks(model: nn.Module) -> List[Tuple[str, nn.Module, Tuple[Optional[str], Optional[int]]]]:
    """Modules carrying a BeginBlock mark, in definition order."""
    return [(name, mod, getattr(mod, _STAGE_ATTR)) for name, mod in model.named_modules()
            if hasattr(mod, _STAGE_ATTR)]


def count_stages(marks: List[Tuple[Optional[str], Optional[int]]]) -> int:
    """Number of distinct stages among BeginBlock/Block marks (AutoIncrement when no ipu_id)."""
    if not marks:
        return 1
    ids = set()
    auto = 0
    for user_id, ipu_id in marks:
        if ipu_id is not None:
            ids.add(("ipu", int(ipu_id)))
        elif user_id is not None:
            ids.add(("user", user_id))
        else:
            ids.add(("auto", auto))
            auto += 1
    return len(ids)


def static_stage_count(model: nn.Module) -> int:
    """Stages from BeginBlock marks, counting the implicit stage 0 of layers before the first mark."""
    marks = count_stages([m for _, _, m in marked_blocks(model)])
    modules = dict(model.named_modules())
    used = {stage for name, stage in stage_assignment(model).items()
            if any(True for _ in modules[name].parameters(recurse=False))}
    return max(marks, len(used))


def stage_assignment(model: nn.Module) -> Dict[str, int]:
    """Map each module path to its stage index, by definition order between BeginBlock marks."""
    stage = 0
    out: Dict[str, int] = {}
    for name, mod in model.named_modules():
        mark = getattr(mod, _STAGE_ATTR, None)
        if mark is not None and mark[1] is not None:
            stage = int(mark[1])
        out[name] = stage
    return out


class _ExecutionStrategy:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class PipelinedExecution(_ExecutionStrategy):
    """Stages run as a pipeline (the default when blocks are present)."""


class ShardedExecution(_ExecutionStrategy):
    """Stages run one after another without overlap."""


class SerialPhasedExecution(_ExecutionStrategy):
    pass


class ParallelPhasedExecution(_ExecutionStrategy):
    pass


class Stage:
    def __init__(self, *block_ids: str) -> None:
        self.block_ids = block_ids


def identity_loss(x: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Mark ``x`` as the loss, reduced as PopTorch does ('sum', 'mean' or 'none')."""
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"identity_loss reduction must be 'sum', 'mean' or 'none', got {reduction!r}.")


def recomputationCheckpoint(*tensors: torch.Tensor) -> Any:
    """Mark activations to keep during recomputation; the training executor honours these marks."""
    marks = getattr(_block_state, "checkpoints", None)
    if marks is not None:
        marks.extend(tensors)
    return tensors[0] if len(tensors) == 1 else tensors


__all__ = ["BeginBlock", "Block", "AutoStage", "PipelinedExecution", "ShardedExecution",
           "SerialPhasedExecution", "ParallelPhasedExecution", "Stage", "identity_loss",
           "recomputationCheckpoint", "marked_blocks", "count_stages", "stage_assignment", "static_stage_count"]
