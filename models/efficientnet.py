"""EfficientNet B0-B7 builders, including the expand-ratio and grouped-depthwise variants."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .errors import ModelConfigError
from .pretrained import load_pretrained_state_dict

STANDARD_EXPAND_RATIO = 6
STANDARD_GROUP_DIM = 1


def build_efficientnet(name: str, num_classes: int, pretrained: bool,
                       expand_ratio: int = STANDARD_EXPAND_RATIO, group_dim: int = STANDARD_GROUP_DIM) -> nn.Module:
    """Builds ``name`` with the given variant; non-standard variants never receive pretrained weights.

    Swish is switched to the plain autograd version so that the model can be traced and exported.
    """
    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import get_model_params

    if expand_ratio < 1:
        raise ModelConfigError(f"EfficientNet expand ratio must be a positive integer, got {expand_ratio}.")
    if group_dim < 1:
        raise ModelConfigError(f"EfficientNet group dimension must be a positive integer, got {group_dim}.")
    blocks_args, global_params = get_model_params(name, {"num_classes": num_classes})
    blocks_args = [args if stage == 0 else args._replace(expand_ratio=expand_ratio)
                   for stage, args in enumerate(blocks_args)]
    model = EfficientNet(blocks_args, global_params)
    if group_dim != STANDARD_GROUP_DIM:
        _group_depthwise_convs(model, group_dim)
    if pretrained:
        _load_pretrained(model, name, load_fc=num_classes == 1000)
    model.set_swish(memory_efficient=False)
    return model


def _load_pretrained(model: nn.Module, name: str, load_fc: bool) -> None:
    """The published ImageNet weights (hash checked, tensors only); the classifier only when it fits."""
    from efficientnet_pytorch.utils import url_map

    state = load_pretrained_state_dict(url_map[name])
    if not load_fc:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - (set() if load_fc else {"_fc.weight", "_fc.bias"})
    if missing or result.unexpected_keys:
        raise ModelConfigError(f"Pretrained weights for {name} do not fit the model "
                               f"(missing {sorted(missing)[:3]}, unexpected {result.unexpected_keys[:3]}).")


def efficientnet_builder(name: str) -> Callable[[int, bool], nn.Module]:
    """Returns ``build(num_classes, pretrained)`` for the standard variant of ``name``."""

    def build(num_classes: int, pretrained: bool) -> nn.Module:
        return build_efficientnet(name, num_classes, pretrained)

    build.__name__ = f"build_{name.replace('-', '_')}"
    return build


def _group_depthwise_convs(model: nn.Module, group_dim: int) -> None:
    """Turns each depthwise conv into a grouped conv of ``channels // group_dim`` groups (at least one), as
    the original application did; a layer whose channels are not a multiple of ``group_dim`` (e.g. 24 in
    EfficientNet-B4 with 16) gets fewer, larger groups."""
    for index, block in enumerate(model._blocks):
        conv = block._depthwise_conv
        channels = conv.in_channels
        groups = max(channels // group_dim, 1)
        if channels % groups:
            raise ModelConfigError(
                f"EfficientNet group dimension {group_dim} splits the {channels} channels of the depthwise conv "
                f"in block {index} into {groups} unequal groups; choose a group dimension that divides them.")
        conv.groups = groups
        conv.weight = nn.Parameter(conv.weight.new_empty(conv.out_channels, channels // groups, *conv.kernel_size))
        conv.reset_parameters()
