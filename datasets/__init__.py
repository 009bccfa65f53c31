"""Data sources and preprocessing shared by inference and training."""
from .corrupt import CorruptImageError, skipped_images
from .options import add_data_options
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, ToModelInput, eval_transform, train_transform
from .sources import (DATA_MODES, DATASETS_INFO, RANDOM_RESIZED_CROP_DATA, check_imagenet_path, get_data, input_dtype,
                      instance_of)

__all__ = ["CorruptImageError", "DATASETS_INFO", "DATA_MODES", "IMAGENET_MEAN", "IMAGENET_STD", "ToModelInput",
           "RANDOM_RESIZED_CROP_DATA", "add_data_options", "check_imagenet_path", "eval_transform", "get_data",
           "input_dtype", "instance_of", "skipped_images", "train_transform"]
