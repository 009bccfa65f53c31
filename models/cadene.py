"""Builder for Cadene's ``pretrainedmodels`` ResNeXt101 32x4d."""
from __future__ import annotations

import copy

from torch import nn

from .pretrained import load_pretrained_state_dict

MODEL_KEY = "resnext101_32x4d"


def build_resnext101_32x4d(num_classes: int, pretrained: bool) -> nn.Module:
    """Builds the model with its own copy of the feature extractor.

    ``pretrainedmodels`` keeps the feature layers in a module-level global that every instance
    shares, so two models would silently share weights; a private re-initialised copy avoids that.
    The fixed 7x7 average pool is made adaptive so that other input sizes work too; at 224x224
    it computes the same result.
    """
    import pretrainedmodels

    model = pretrainedmodels.resnext101_32x4d(num_classes=num_classes, pretrained=None)
    model.features = copy.deepcopy(model.features)
    for module in model.features.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
    if pretrained:
        url = pretrainedmodels.pretrained_settings[MODEL_KEY]["imagenet"]["url"]
        model.load_state_dict(load_pretrained_state_dict(url))
    return model
