"""Reaching into a training loader's augmentation pipeline: the random-resized-crop range, and the
augmentation random streams a checkpoint must hold for a resumed run to draw the same crops.

The datasets package gives each process its own augmentation generator (``AugmentationRNG``). With
``--dataloader-worker 0`` all augmentation draws come from the main process's generator, whose state
is saved and restored here; worker processes re-seed themselves and are not covered.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import torch


def _steps(loader: Any) -> List[Any]:
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    return list(getattr(transform, "steps", []))


def set_crop_scale(loader: Any, scale: Sequence[float]) -> bool:
    """Set the area range of the loader's random-resized crop; False when it has none."""
    crops = [s for s in _steps(loader) if hasattr(s, "scale") and hasattr(s, "ratio")]
    for crop in crops:
        crop.scale = tuple(float(v) for v in scale)
    return bool(crops)


def augmentation_rngs(loader: Any) -> List[Any]:
    """The distinct augmentation random streams of the loader's transform steps."""
    found: List[Any] = []
    for step in _steps(loader):
        rng = getattr(step, "rng", None)
        if rng is not None and hasattr(rng, "generator") and all(rng is not r for r in found):
            found.append(rng)
    return found


def augmentation_state(loader: Any) -> List[torch.Tensor]:
    return [rng.generator().get_state() for rng in augmentation_rngs(loader)]


def load_augmentation_state(loader: Any, states: List[torch.Tensor]) -> None:
    for rng, state in zip(augmentation_rngs(loader), states):
        rng.generator().set_state(state)
