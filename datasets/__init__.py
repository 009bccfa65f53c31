"""Data sources and preprocessing shared by inference and training."""
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, ToModelInput, eval_transform, train_transform
from .sources import DATA_MODES, DATASETS_INFO, get_data, input_dtype
