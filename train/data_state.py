"""The training data's augmentation random stream, which a checkpoint must hold for a resumed run to draw
the same crops.

train.py makes the ``AugmentationRNG`` and hands it to ``datasets.get_data``, so its state is saved and
restored here without reaching into the loader. With ``--dataloader-worker 0`` all augmentation draws
come from the main process's generator; worker processes re-seed themselves and are not covered.
"""
from __future__ import annotations

from typing import List

import torch

from cnns.datasets.seeding import AugmentationRNG


def augmentation_state(rng: AugmentationRNG) -> List[torch.Tensor]:
    """The stream's state as a one-element list (the checkpoint field's layout)."""
    return [rng.generator().get_state()]


def load_augmentation_state(rng: AugmentationRNG, states: List[torch.Tensor]) -> None:
    for state in states[:1]:
        rng.generator().set_state(state)
