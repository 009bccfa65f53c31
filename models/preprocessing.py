"""How a model's input images are prepared: channel mean/std and the evaluation crop ratio.

A field of every model-table entry (``ModelSpec.preprocessing``); datasets, on-device normalisation and
the ONNX export read it from there. Standard library only, so light processes can import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Preprocessing:
    """``mean``/``std`` are for [0, 1] RGB images; evaluation resizes the shorter side to
    ``side / crop_ratio`` and centre-crops ``side`` (the usual 224 of 256)."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    crop_ratio: float

    def eval_resize(self, side: int) -> int:
        """Shorter side before the centre crop of ``side`` pixels."""
        return int(round(side / self.crop_ratio))


IMAGENET = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_ratio=224 / 256)
