"""``get_model``: build a classifier, pick its weights and apply the norm and variant options."""
from __future__ import annotations

from typing import Callable, List, Optional

from torch import nn

from .efficientnet import STANDARD_EXPAND_RATIO, STANDARD_GROUP_DIM, build_efficientnet
from .errors import ModelConfigError
from .norm import configure_norm, validate_norm_type
from .registry import ModelSpec, model_spec
from .weights import download_failure_reason, fail_fast_network, load_weights_file

PRETRAINED_NUM_CLASSES = 1000


def get_model(name: str, *, num_classes: int = 1000, norm_type: str = "batch", norm_num_groups: int = 32,
              norm_eps: Optional[float] = None, batchnorm_momentum: Optional[float] = None,
              full_precision_norm: bool = False, efficientnet_expand_ratio: int = STANDARD_EXPAND_RATIO,
              efficientnet_group_dim: int = STANDARD_GROUP_DIM, weights: Optional[str] = None,
              pretrained: bool = True, log: Callable[[str], None] = print) -> nn.Module:
    """Builds model ``name`` (aliases accepted) with weights from ``weights``, a download, or random.

    A download that fails (e.g. offline) falls back to random weights with one log line instead of
    failing. ``full_precision_norm`` is only recorded on the model; see ``keep_norm_in_float32``.
    """
    spec = model_spec(name)
    validate_norm_type(norm_type)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(f"num_classes must be a positive integer, got {num_classes!r}.")
    is_variant = (efficientnet_expand_ratio, efficientnet_group_dim) != (STANDARD_EXPAND_RATIO, STANDARD_GROUP_DIM)
    if is_variant and spec.family != "efficientnet":
        raise ModelConfigError(
            f"EfficientNet expand ratio / group dimension options apply only to efficientnet-b0..b7, "
            f"not to {spec.name}; leave them at {STANDARD_EXPAND_RATIO} and {STANDARD_GROUP_DIM}.")

    def build(use_pretrained: bool) -> nn.Module:
        if is_variant:
            return build_efficientnet(spec.name, num_classes, use_pretrained,
                                      efficientnet_expand_ratio, efficientnet_group_dim)
        return spec.builder(num_classes, use_pretrained)

    model = _initial_model(spec, build, weights, pretrained,
                           _pretrained_misfits(num_classes, norm_type, is_variant), log)
    configure_norm(model, norm_type, norm_num_groups, norm_eps, batchnorm_momentum)
    if weights is not None:
        load_weights_file(model, weights, spec.name)
        log(f"Loaded weights for {spec.name} from {weights}.")
    model.full_precision_norm = bool(full_precision_norm)
    return model


def _initial_model(spec: ModelSpec, build: Callable[[bool], nn.Module], weights: Optional[str],
                   pretrained: bool, misfits: List[str], log: Callable[[str], None]) -> nn.Module:
    """Random-weight model for a weights file or when pretrained is off or unusable, else the download."""
    if weights is not None:
        return build(False)
    if not pretrained:
        log(f"Using random weights for {spec.name}.")
        return build(False)
    if misfits:
        log(f"Pretrained weights for {spec.name} do not fit this configuration ({'; '.join(misfits)}); "
            f"using random weights.")
        return build(False)
    model = _build_with_download(spec, build, log)
    return build(False) if model is None else model


def _pretrained_misfits(num_classes: int, norm_type: str, is_variant: bool) -> List[str]:
    misfits = []
    if num_classes != PRETRAINED_NUM_CLASSES:
        misfits.append(f"num_classes={num_classes} instead of {PRETRAINED_NUM_CLASSES}")
    if norm_type != "batch":
        misfits.append(f"norm_type={norm_type!r} instead of 'batch'")
    if is_variant:
        misfits.append("non-standard EfficientNet variant")
    return misfits


def _build_with_download(spec: ModelSpec, build: Callable[[bool], nn.Module],
                         log: Callable[[str], None]) -> Optional[nn.Module]:
    """The pretrained model, or None (after logging why) when the download fails."""
    try:
        with fail_fast_network():
            model = build(True)
    except (OSError, RuntimeError) as error:
        log(f"Pretrained weights for {spec.name} could not be downloaded ({download_failure_reason(error)}); "
            f"using random weights.")
        return None
    log(f"Using pretrained weights for {spec.name} ({spec.pretrained_source}).")
    return model
