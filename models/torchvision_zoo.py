"""Builders for the torchvision classifiers (ResNet, ResNeXt, MobileNet)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .pretrained import load_pretrained_state_dict

PRETRAINED_TAG = "IMAGENET1K_V1"


def pretrained_url(function_name: str) -> str:
    """The published URL of torchvision's ImageNet V1 weights for ``function_name``."""
    import torchvision.models

    return torchvision.models.get_model_weights(function_name)[PRETRAINED_TAG].url


def torchvision_builder(function_name: str) -> Callable[[int, bool], nn.Module]:
    """Returns ``build(num_classes, pretrained)``; pretrained loads the ImageNet V1 weights through
    ``load_pretrained_state_dict`` (hash checked, tensors only) rather than torchvision's own loader."""

    def build(num_classes: int, pretrained: bool) -> nn.Module:
        import torchvision.models

        model = getattr(torchvision.models, function_name)(weights=None, num_classes=num_classes)
        if pretrained:
            model.load_state_dict(load_pretrained_state_dict(pretrained_url(function_name)))
        return model

    build.__name__ = f"build_{function_name}"
    return build
