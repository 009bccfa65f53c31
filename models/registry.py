"""The model table: canonical names, aliases, input sizes, input preprocessing and how each model is built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

from torch import nn

from .cadene import build_resnext101_32x4d
from .efficientnet import efficientnet_builder
from .errors import ModelConfigError
from .preprocessing import IMAGENET, Preprocessing
from .torchvision_zoo import PRETRAINED_TAG, torchvision_builder

EFFICIENTNET_INPUT_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)


@dataclass(frozen=True)
class ModelSpec:
    """One supported model; ``builder(num_classes, pretrained)`` returns a fresh instance."""

    name: str
    family: str
    builder: Callable[[int, bool], nn.Module]
    input_size: int
    pretrained_source: str
    preprocessing: Preprocessing = IMAGENET


def _torchvision_spec(name: str, family: str, function_name: str) -> ModelSpec:
    return ModelSpec(name, family, torchvision_builder(function_name), 224,
                     f"torchvision {function_name} {PRETRAINED_TAG}, SHA256 prefix checked")


def _build_table() -> Dict[str, ModelSpec]:
    specs = [_torchvision_spec(f"resnet{depth}", "resnet", f"resnet{depth}") for depth in (18, 34, 50, 101, 152)]
    specs += [
        _torchvision_spec("resnext50", "resnext", "resnext50_32x4d"),
        _torchvision_spec("resnext101", "resnext", "resnext101_32x8d"),
        ModelSpec("resnext101_32x4d", "resnext", build_resnext101_32x4d, 224,
                  "Cadene pretrainedmodels resnext101_32x4d imagenet, no published hash: read as tensors only"),
        _torchvision_spec("mobilenet", "mobilenet", "mobilenet_v2"),
        _torchvision_spec("mobilenet-v3-small", "mobilenet", "mobilenet_v3_small"),
        _torchvision_spec("mobilenet-v3-large", "mobilenet", "mobilenet_v3_large"),
    ]
    for level, size in enumerate(EFFICIENTNET_INPUT_SIZES):
        name = f"efficientnet-b{level}"
        specs.append(ModelSpec(name, "efficientnet", efficientnet_builder(name), size,
                               f"efficientnet_pytorch {name} ImageNet, no published hash: read as tensors only"))
    return {spec.name: spec for spec in specs}


MODEL_TABLE: Dict[str, ModelSpec] = _build_table()

_EXTRA_ALIASES = {
    "mobilenet-v2": "mobilenet",
    "resnext50-32x4d": "resnext50",
    "resnext101-32x8d": "resnext101",
}


def _squash(name: str) -> str:
    """Spelling-insensitive key: case, '-' and '_' do not matter."""
    return name.strip().lower().replace("-", "").replace("_", "")


_LOOKUP: Dict[str, str] = {_squash(name): name for name in MODEL_TABLE}
_LOOKUP.update({_squash(alias): target for alias, target in _EXTRA_ALIASES.items()})


def available_models() -> List[str]:
    """Canonical model names, sorted."""
    return sorted(MODEL_TABLE)


def canonical_model_name(name: str) -> str:
    """Resolves aliases such as 'efficientnetb0' or 'EfficientNet_B0' to the canonical name."""
    canonical = _LOOKUP.get(_squash(name)) if isinstance(name, str) else None
    if canonical is None:
        raise ModelConfigError(
            f"Unknown model {name!r}; accepted models are {', '.join(available_models())} "
            f"(case, '-' and '_' are ignored, so e.g. 'efficientnetb0' also works).")
    return canonical


def model_spec(name: str) -> ModelSpec:
    return MODEL_TABLE[canonical_model_name(name)]


def model_preprocessing(name: str) -> Preprocessing:
    """Mean/std and evaluation crop ratio of ``name``'s published weights (ImageNet statistics for all today)."""
    return model_spec(name).preprocessing


def model_input_size(name: str) -> int:
    """The square image side the model was designed (and pretrained) for."""
    return model_spec(name).input_size
