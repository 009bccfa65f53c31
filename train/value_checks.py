"""Checks of a training run's input before any work: the ranges of the training options argparse cannot
express (NaN, infinities, factors outside (0, 1]), that the run fits in memory, and that the ImageNet
folder holds the splits the run reads."""
from __future__ import annotations

import argparse
import math

from cnns.utils.run_memory import check_run_fits
from cnns.utils.validation import check_common, in_range


def check_training_values(args: argparse.Namespace) -> None:
    """Every training number in its accepted range, and the common options checked too, so restore.py
    and validate.py (whose options come partly from a checkpoint) check as much as train.py."""
    check_common(args)
    in_range(args, "lr_decay", 0.0, 1.0, low_open=True)
    in_range(args, "momentum", 0.0, 1.0, high_open=True)
    in_range(args, "rmsprop_decay", 0.0, 1.0, high_open=True)
    in_range(args, "optimizer_eps", 0.0, 1.0, low_open=True)
    in_range(args, "lr_epoch_decay", 0.0, math.inf, low_open=True)


def check_training_fits(args: argparse.Namespace) -> None:
    """train.py and restore.py: the training images, weights and kept activations fit in memory."""
    from cnns.train.validate import train_input_size
    check_run_fits(args, train_input_size(args), training=True)


def check_training_data(args: argparse.Namespace) -> None:
    """train.py and restore.py: an ImageNet folder holds the training split, and the validation split when
    the run validates, so a missing one is refused before an epoch is trained instead of after."""
    from cnns.datasets import check_imagenet_path
    if args.data == "imagenet" and args.imagenet_data_path:
        check_imagenet_path(args.imagenet_data_path, train=True)
        if args.validation_mode != "none":
            check_imagenet_path(args.imagenet_data_path, train=False)
