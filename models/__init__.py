"""Image classifiers for the CNN benchmarks: construction, weights, pipeline splits, input normalisation."""
from .errors import ModelConfigError
from .factory import get_model
from .norm import NORM_TYPES, keep_norm_in_float32
from .normalize import IMAGENET_MEAN, IMAGENET_STD, NormalizeInputModel
from .pipeline import apply_pipeline_splits, pipeline_split_names
from .preprocessing import IMAGENET, Preprocessing
from .registry import (MODEL_TABLE, ModelSpec, available_models, canonical_model_name, model_input_size,
                       model_preprocessing)

__all__ = [
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_TABLE",
    "NORM_TYPES",
    "ModelConfigError",
    "ModelSpec",
    "NormalizeInputModel",
    "Preprocessing",
    "apply_pipeline_splits",
    "available_models",
    "canonical_model_name",
    "get_model",
    "keep_norm_in_float32",
    "model_input_size",
    "model_preprocessing",
    "pipeline_split_names",
]
