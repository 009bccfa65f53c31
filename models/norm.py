"""Normalisation layer choices: keep batch norm, swap it for group norm or drop it, and fp32 norms."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import nn

from .errors import ModelConfigError

NORM_TYPES = ("batch", "group", "none")
_NORM_CLASSES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
_FP32_FLAG = "_keeps_float32_norm"
_INPUT_DTYPE = "_float32_norm_input_dtype"


def configure_norm(model: nn.Module, norm_type: str, num_groups: int = 32, eps: Optional[float] = None,
                   momentum: Optional[float] = None) -> None:
    """Applies the requested norm type in place; all BatchNorm2d layers are affected alike."""
    validate_norm_type(norm_type)
    if eps is not None and eps <= 0:
        raise ModelConfigError(f"Norm epsilon must be positive, got {eps}.")
    if norm_type == "batch":
        _tune_batchnorm(model, eps, momentum)
        return
    if norm_type == "group" and num_groups < 1:
        raise ModelConfigError(f"Group norm needs at least one group, got norm_num_groups={num_groups}.")
    for parent, child_name, bn in _batchnorm_sites(model):
        if norm_type == "none":
            replacement: nn.Module = nn.Identity()
        else:
            replacement = _group_norm_for(bn, num_groups, eps)
        setattr(parent, child_name, replacement)


def validate_norm_type(norm_type: str) -> None:
    if norm_type not in NORM_TYPES:
        raise ModelConfigError(f"Unknown norm type {norm_type!r}; accepted values are {', '.join(NORM_TYPES)}.")


def _tune_batchnorm(model: nn.Module, eps: Optional[float], momentum: Optional[float]) -> None:
    """Overrides eps/momentum; momentum uses torch's convention, which PopTorch shares."""
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ModelConfigError(f"Batch norm momentum must lie in [0, 1], got {momentum}.")
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if eps is not None:
                module.eps = eps
            if momentum is not None:
                module.momentum = momentum


def _batchnorm_sites(model: nn.Module) -> list:
    sites = []
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                sites.append((parent, child_name, child))
    return sites


def _group_norm_for(bn: nn.BatchNorm2d, num_groups: int, eps: Optional[float]) -> nn.GroupNorm:
    channels = bn.num_features
    if channels % num_groups:
        raise ModelConfigError(
            f"norm_num_groups={num_groups} does not divide a norm layer with {channels} channels; "
            f"choose a group count that divides every layer's channels (e.g. a small power of two).")
    return nn.GroupNorm(num_groups, channels, eps=bn.eps if eps is None else eps, affine=True)


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, _NORM_CLASSES)


def keep_norm_in_float32(model: nn.Module) -> None:
    """After ``model.half()``, runs every norm layer in float32 for accuracy, casting back afterwards."""
    for module in model.modules():
        if not is_norm_layer(module) or getattr(module, _FP32_FLAG, False):
            continue
        module.float()
        module.register_forward_pre_hook(_cast_input_to_float32)
        module.register_forward_hook(_cast_output_back)
        setattr(module, _FP32_FLAG, True)


def _cast_input_to_float32(module: nn.Module, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    first = args[0]
    setattr(module, _INPUT_DTYPE, first.dtype)
    return (first.float(),) + tuple(args[1:])


def _cast_output_back(module: nn.Module, args: Tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    return output.to(getattr(module, _INPUT_DTYPE))
