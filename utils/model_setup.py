"""Build the model a run asks for: zoo model, pipeline stages, device-side normalisation, precision."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .backend import Backend


def prepare_model(args: Any, backend: Backend, num_classes: int, log: Callable[[str], None],
                  pretrained: bool = True) -> nn.Module:
    """The model wrapped and converted as the args say; ``args.precision`` '16.32' on the portable
    backend keeps fp32 weights (autocast is set in the options), '16.x' otherwise converts to half."""
    from cnns import models
    model = models.get_model(
        args.model, num_classes=num_classes, norm_type=args.norm_type, norm_num_groups=args.norm_num_groups,
        norm_eps=args.norm_eps, batchnorm_momentum=args.batchnorm_momentum,
        full_precision_norm=args.full_precision_norm, efficientnet_expand_ratio=args.efficientnet_expand_ratio,
        efficientnet_group_dim=args.efficientnet_group_dim, weights=args.weights, pretrained=pretrained, log=log)
    if getattr(args, "input_image_padding", False):
        from cnns.models.padding import pad_first_conv
        padded = pad_first_conv(model)
        log(f"Input image padding: {padded or 'no 3-channel first convolution'} takes 4 channels (the 4th zero).")
    if args.pipeline_splits:
        models.apply_pipeline_splits(model, args.pipeline_splits, backend.poptorch.BeginBlock)
    if args.normalization_location == "ipu":
        stats = models.model_preprocessing(args.model)
        model = models.NormalizeInputModel(model, stats.mean, stats.std)
    if args.precision.startswith("16") and not (backend.is_portable and args.precision == "16.32"):
        model = model.to(backend.half_dtype)
        if args.full_precision_norm:
            models.keep_norm_in_float32(model)
    return model


def check_pipeline_splits(args: Any) -> None:
    """The splits name modules of the model, in order, each stage with layers: checked on a meta-device
    copy when the options are parsed, so a typo is refused before a model is built or a log folder made."""
    if not args.pipeline_splits:
        return
    from cnns import models
    from .memory_need import meta_zoo_model
    model = meta_zoo_model(args.model, args.efficientnet_expand_ratio, args.efficientnet_group_dim)
    models.apply_pipeline_splits(model, args.pipeline_splits, lambda module, *_, **__: module)


def input_preprocessing(args: Any) -> Any:
    """The model's mean/std and crop ratio (``models.Preprocessing``), for the data pipeline."""
    from cnns import models
    return models.model_preprocessing(args.model)


def for_executor(model: nn.Module, args: Any, backend: Backend) -> nn.Module:
    """What is handed to inferenceModel/trainingModel: on IPUs with --num-io-tiles the model with its IO
    marked for overlap, as the original (off IPU the executor overlaps copies itself). The model
    itself, and so its checkpoints, stay the same."""
    if args.num_io_tiles and not backend.is_portable:
        from cnns.models.overlap import OverlapIO
        return OverlapIO(model, backend.poptorch)
    return model


def input_size(args: Any) -> int:
    from cnns import models
    return models.model_input_size(args.model)
