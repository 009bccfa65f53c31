"""Builders for Cadene's ``pretrainedmodels`` ResNeXt-101s (the table's resnext101_32x4d; the ONNX bulk
benchmark also exports the 64x4d, the other ResNeXt-101 the original offered)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .pretrained import load_pretrained_state_dict

MODEL_KEY = "resnext101_32x4d"
RESNEXT101_KEYS = ("resnext101_32x4d", "resnext101_64x4d")


def build_cadene_resnext101(key: str, num_classes: int, pretrained: bool) -> nn.Module:
    """Builds ``pretrainedmodels.<key>`` with its own copy of the feature extractor.

    ``pretrainedmodels`` keeps the feature layers in a module-level global that every instance
    shares, so two models would silently share weights; a private re-initialised copy avoids that.
    The copy is moved to the current default device first: the global lives wherever the first import
    happened (the meta device, when a memory estimate imported the package).
    The fixed 7x7 average pool is made adaptive so that other input sizes work too; at 224x224
    it computes the same result. ``pretrained`` loads the ImageNet weights through the checked loader.
    """
    import pretrainedmodels

    model = getattr(pretrainedmodels, key)(num_classes=num_classes, pretrained=None)
    model.features = copy.deepcopy(model.features).to_empty(device=torch.get_default_device())
    for module in model.features.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
    if pretrained:
        model.load_state_dict(load_pretrained_state_dict(pretrained_url(key)))
    return model


def pretrained_url(key: str) -> str:
    """Where pretrainedmodels publishes ``key``'s ImageNet weights."""
    import pretrainedmodels

    return pretrainedmodels.pretrained_settings[key]["imagenet"]["url"]


def build_resnext101_32x4d(num_classes: int, pretrained: bool) -> nn.Module:
    """The model table's builder (``builder(num_classes, pretrained)``)."""
    return build_cadene_resnext101(MODEL_KEY, num_classes, pretrained)
