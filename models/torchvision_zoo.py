"""Builders for the torchvision classifiers (ResNet, ResNeXt, MobileNet)."""
from __future__ import annotations

from typing import Callable

from torch import nn

PRETRAINED_TAG = "IMAGENET1K_V1"


def torchvision_builder(function_name: str) -> Callable[[int, bool], nn.Module]:
    """Returns ``build(num_classes, pretrained)``; pretrained downloads the ImageNet V1 weights."""

    def build(num_classes: int, pretrained: bool) -> nn.Module:
        import torchvision.models

        constructor = getattr(torchvision.models, function_name)
        return constructor(weights=PRETRAINED_TAG if pretrained else None, num_classes=num_classes)

    build.__name__ = f"build_{function_name}"
    return build
