"""Training options: the common harness options plus the original train.py's, and their checks.

restore.py and validate.py parse the same options so that any of them can override what a
checkpoint recorded; ``explicit_options`` tells which ones the user actually typed.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import List, Optional, Sequence, Set

from cnns.datasets import add_data_options
from cnns.utils.argparser import add_common_options, new_parser, parse_with_config
from cnns.utils.model_setup import check_pipeline_splits
from cnns.utils.errors import UsageError

from .recompute_setup import check_recompute_checkpoints
from .value_checks import check_training_values

CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs.yml")
DATA_MODES = ("cifar10", "imagenet", "synthetic", "generated")
OPTIMIZERS = ("sgd", "sgd_combined", "adamw", "rmsprop", "rmsprop_tf")
LR_SCHEDULES = ("step", "cosine", "exponential")
RECOMPUTE_MODES = ("none", "auto", "manual")
VALIDATION_MODES = ("none", "during", "after")
WEIGHT_AVG_STRATEGIES = ("mean", "exponential", "none")
MIN_INPUT_SIZE = 8


def add_weight_avg_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument
    p("--weight-avg-strategy", choices=WEIGHT_AVG_STRATEGIES, default="none",
      help="Average the weights of the last checkpoints after training: mean, exponential or none")
    p("--weight-avg-exp-decay", type=float, default=0.99,
      help="Decay of the exponential weight average: avg = decay * avg + (1 - decay) * next checkpoint")
    p("--weight-avg-N", "--weight-avg-n", dest="weight_avg_N", type=int, default=-1,
      help="Average the last N checkpoints; -1 means all of them")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The original train.py's options (the common ones come from cnns.utils.argparser)."""
    p = parser.add_argument
    p("--data", choices=DATA_MODES, default="cifar10",
      help="cifar10 (downloaded), imagenet (folder with train/ and validation/), generated (random host "
           "data sent every step) or synthetic (data made on the device, no host-device IO)")
    p("--iterations", type=int, default=100, help="Host calls per epoch for generated and synthetic data")
    p("--input-size", type=int, default=None,
      help="Image side in pixels (default: the model's own size, CIFAR-10 upscaled to it as the original; "
           "--input-size 32 keeps CIFAR-10 at its native 32 px)")
    p("--train-crop-scale", type=float, nargs=2, default=[0.08, 1.0], metavar=("MIN", "MAX"),
      help="Area range of the random-resized crop of training images (image folders)")
    p("--gradient-accumulation", type=int, default=1, help="Micro-batches accumulated per optimiser step")
    p("--epoch", "--epochs", dest="epoch", type=int, default=10, help="Number of training epochs")
    p("--optimizer", choices=OPTIMIZERS, default="sgd", help="Optimiser")
    p("--lr", type=float, default=0.01, help="Initial (peak, after warm-up) learning rate")
    p("--momentum", type=float, default=0.0, help="Momentum factor (SGD, RMSprop)")
    p("--weight-decay", type=float, default=0.0001, help="Weight decay; never applied to 1-D parameters (biases, norms)")
    p("--optimizer-eps", type=float, default=1e-8, help="Epsilon of the AdamW/RMSprop denominators")
    p("--rmsprop-decay", type=float, default=0.99, help="RMSprop smoothing constant (alpha)")
    p("--loss-scaling", type=float, default=1.0, help="Loss scaling, reached by the end of training")
    p("--initial-loss-scaling", type=float, default=None,
      help="First loss scaling; doubled at equal epoch intervals until --loss-scaling (default: --loss-scaling)")
    p("--auto-loss-scaling", action="store_true",
      help="Automatic loss scaling (dynamic scaling off IPU: halve on overflow and skip the step, double when stable)")
    p("--enable-stochastic-rounding", action="store_true", help="IPU stochastic rounding (no effect off IPU)")
    p("--enable-fp-exceptions", action="store_true", help="IPU floating-point exceptions (no effect off IPU)")
    p("--label-smoothing", type=float, default=0.0, help="Label smoothing factor in [0, 1)")
    p("--lr-schedule", choices=LR_SCHEDULES, default="step", help="Learning-rate schedule")
    p("--lr-decay", type=float, default=0.5,
      help="step: factor at each --lr-epoch-decay epoch; exponential: factor at every LR update")
    p("--lr-epoch-decay", type=float, nargs="+", default=[], help="Epochs at which the step schedule multiplies the LR")
    p("--warmup-epoch", type=float, default=0, help="Epochs of linear learning-rate warm-up")
    p("--lr-scheduler-freq", type=float, default=0,
      help="Learning-rate updates per epoch (0: after every optimiser step)")
    p("--mixup-alpha", type=float, default=0.0, help="Beta(alpha, alpha) mixup coefficients; 0 disables mixup")
    p("--cutmix-lambda-low", type=float, default=0.0, help="Lower bound of the cutmix lambda (uniform in [low, high))")
    p("--cutmix-lambda-high", type=float, default=0.0,
      help="Upper bound of the cutmix lambda; both bounds 0 or both 1 disable cutmix")
    p("--cutmix-disable-prob", type=float, default=0.0, help="Probability that cutmix is skipped for a sample")
    p("--recompute-mode", choices=RECOMPUTE_MODES, default="none",
      help="Recomputation: auto (checkpoint every block), manual (only --recompute-checkpoints) or none")
    p("--recompute-checkpoints", type=str, nargs="+", default=[],
      help="Regular expressions over module paths (written with '/') whose outputs are recomputation checkpoints")
    p("--offload-optimizer", action="store_true", help="Keep optimiser state off-chip (no effect off IPU)")
    p("--enable-optimizer-rts", action="store_true", help="Shard optimiser state over replicas (no effect off IPU)")
    p("--disable-stable-batchnorm", action="store_true", help="IPU's faster, less stable batch norm (no effect off IPU)")
    p("--validation-mode", choices=VALIDATION_MODES, default="after",
      help="Validate never, during training (every --validation-frequency epochs and after the last) or after it")
    p("--validation-frequency", type=int, default=4, help="Epochs between validations in --validation-mode during")
    p("--logs-per-epoch", type=int, default=1, help="Log points (training.csv rows, wandb entries) per epoch")
    p("--checkpoint-path", type=str, default="", help="Folder for a checkpoint after every epoch (none if empty)")
    p("--wandb", action="store_true", help="Log to Weights & Biases (optional package; offline unless WANDB_API_KEY is set)")
    p("--compile-only", action="store_true", help="Compile (place and check) the model with one batch, then exit")
    p("--wandb-weight-histogram", action="store_true",
      help="Log a histogram of every trainable weight to Weights & Biases at each log point (needs --wandb)")
    add_half_res_options(parser)
    add_weight_avg_options(parser)
    parser.set_defaults(seed=None)


def add_half_res_options(parser: argparse.ArgumentParser) -> None:
    """Half-resolution training, then fine-tuning at full resolution on the averaged weights."""
    p = parser.add_argument
    p("--half-res-training", action="store_true",
      help="Train on images of about half the area (224 -> 160 px, 380 -> 252 px; others x 5/7), then fine-tune "
           "at the full size on the averaged weights (needs --fine-tune-epoch, --fine-tune-first-trainable-layer "
           "and --weight-avg-strategy)")
    p("--fine-tune-epoch", type=int, default=0, help="Fine-tuning epochs after --half-res-training")
    p("--fine-tune-lr", type=float, default=0.25, help="Initial learning rate of the fine-tuning (cosine, plain SGD)")
    p("--fine-tune-batch-size", type=int, default=1, help="Micro-batch size of the fine-tuning")
    p("--fine-tune-gradient-accumulation", type=int, default=1, help="Gradient accumulation of the fine-tuning")
    p("--fine-tune-first-trainable-layer", type=str, default="",
      help="First module path (e.g. layer3, blocks/5/3) trained during fine-tuning; earlier weights are frozen "
           "and earlier batch norms and dropouts kept in eval mode")


def training_parser(description: str = "CNN training (PopTorch on IPU; portable_poptorch on CUDA/CPU)"
                    ) -> argparse.ArgumentParser:
    parser = new_parser(description)
    add_common_options(parser)
    add_training_options(parser)
    add_data_options(parser)
    return parser


def parse_arguments(argv: Optional[Sequence[str]] = None, parser: Optional[argparse.ArgumentParser] = None
                    ) -> argparse.Namespace:
    """Parse and check training options (presets from train/configs.yml)."""
    args = parse_with_config(parser or training_parser(), CONFIG_FILE, argv)
    return check_training_args(args)


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Set[str]:
    """Destinations of the options written on the command line (``--opt`` or ``--opt=value``)."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return {a.dest for a in parser._actions if typed & set(a.option_strings)}


VALIDATION_READS = frozenset({"data", "iterations", "input_size", "checkpoint_path"})
FROM_THE_CHECKPOINT = frozenset({"config", "weights"})   # restore.py and validate.py take these from the checkpoint


def own_options_parser() -> argparse.ArgumentParser:
    """A parser of train.py's own options only (half-resolution and weight averaging included): their
    destinations, flags and defaults, without the common and data options."""
    parser = argparse.ArgumentParser(add_help=False)
    add_training_options(parser)
    return parser


def training_only_options() -> Set[str]:
    """Destinations of train.py's own options that validation does not read."""
    return {a.dest for a in own_options_parser()._actions} - VALIDATION_READS


def refuse_unread(parser: argparse.ArgumentParser, explicit: Set[str], unread: Set[str], script: str, why: str) -> None:
    """A typed option that ``script`` would silently drop is a usage error naming it."""
    names = [a.option_strings[0] for a in parser._actions if a.dest in explicit & unread]
    if names:
        raise UsageError(f"{script} does not read {', '.join(names)}: {why}; the options it reads that you type "
                         "(e.g. --batch-size, --device) override the checkpoint's.")


def _fail(message: str) -> None:
    raise UsageError(message)


def check_training_args(args: argparse.Namespace) -> argparse.Namespace:
    """Checks argparse cannot do; each failure is one sentence naming the value and what is accepted."""
    positive = ("epoch", "gradient_accumulation", "logs_per_epoch", "validation_frequency", "iterations")
    for name in positive:
        if getattr(args, name) < 1:
            _fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    low, high = args.train_crop_scale
    if not 0.0 < low <= high <= 1.0:
        _fail(f"--train-crop-scale needs 0 < MIN <= MAX <= 1, got {low} and {high}.")
    if args.input_size is not None and args.input_size < MIN_INPUT_SIZE:
        _fail(f"--input-size must be at least {MIN_INPUT_SIZE} pixels, got {args.input_size}.")
    for name in ("lr", "momentum", "weight_decay", "warmup_epoch", "lr_scheduler_freq", "mixup_alpha"):
        if getattr(args, name) < 0:
            _fail(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}.")
    if not 0.0 <= args.label_smoothing < 1.0:
        _fail(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}.")
    if args.loss_scaling <= 0:
        _fail(f"--loss-scaling must be > 0, got {args.loss_scaling}.")
    if args.initial_loss_scaling is None:
        args.initial_loss_scaling = args.loss_scaling
    if not 0 < args.initial_loss_scaling <= args.loss_scaling:
        _fail(f"--initial-loss-scaling must be > 0 and at most --loss-scaling ({args.loss_scaling}), "
              f"got {args.initial_loss_scaling}.")
    _check_augmentation(args)
    check_training_values(args)
    check_pipeline_splits(args)
    stages = len(args.pipeline_splits) + 1
    if stages > 1 and args.gradient_accumulation < 2 * stages - 1:
        _fail(f"--gradient-accumulation {args.gradient_accumulation} is too small for {stages} pipeline stages; "
              f"pipelined training needs at least 2 x stages - 1 = {2 * stages - 1}.")
    if args.weight_avg_strategy != "none" and not args.checkpoint_path:
        _fail(f"--weight-avg-strategy {args.weight_avg_strategy} averages checkpoints, so it needs --checkpoint-path.")
    if not 0.0 <= args.weight_avg_exp_decay <= 1.0:
        _fail(f"--weight-avg-exp-decay must be in [0, 1], got {args.weight_avg_exp_decay}.")
    if args.weight_avg_N == 0 or args.weight_avg_N < -1:
        _fail(f"--weight-avg-N must be a positive count or -1 (all checkpoints), got {args.weight_avg_N}.")
    if args.recompute_checkpoints and args.recompute_mode == "none":
        args.notes = getattr(args, "notes", []) + [
            "--recompute-checkpoints were given with --recompute-mode none; using manual recomputation."]
        args.recompute_mode = "manual"
    check_recompute_checkpoints(args)
    _check_half_res(args)
    if args.wandb_weight_histogram and not args.wandb:
        _fail("--wandb-weight-histogram logs to Weights & Biases, so it needs --wandb.")
    if args.compile_only and args.data != "generated":
        # as the original: compiling needs one batch of the right shape, not the data set
        args.notes = getattr(args, "notes", []) + [
            f"--compile-only compiles with generated data; --data {args.data} is not read."]
        args.data, args.imagenet_data_path = "generated", None
    if args.data == "imagenet" and not args.imagenet_data_path:
        _fail("--data imagenet needs --imagenet-data-path pointing at a folder with train/ and validation/.")
    return args


def _check_half_res(args: argparse.Namespace) -> None:
    if not args.half_res_training:
        return
    if args.fine_tune_epoch < 1:
        _fail("--half-res-training fine-tunes at full resolution afterwards, so it needs --fine-tune-epoch >= 1.")
    if not args.fine_tune_first_trainable_layer:
        _fail("--half-res-training needs --fine-tune-first-trainable-layer (e.g. layer3): the layers before it "
              "stay frozen during fine-tuning.")
    if args.weight_avg_strategy == "none":
        _fail("--half-res-training fine-tunes the averaged weights, so it needs --weight-avg-strategy mean or "
              "exponential (and --checkpoint-path).")
    for name in ("fine_tune_batch_size", "fine_tune_gradient_accumulation"):
        if getattr(args, name) < 1:
            _fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")


def _check_augmentation(args: argparse.Namespace) -> None:
    low, high = args.cutmix_lambda_low, args.cutmix_lambda_high
    if not 0.0 <= low <= high <= 1.0:
        _fail(f"Cutmix bounds must satisfy 0 <= --cutmix-lambda-low <= --cutmix-lambda-high <= 1, got {low} and {high}.")
    if not 0.0 <= args.cutmix_disable_prob <= 1.0:
        _fail(f"--cutmix-disable-prob must be in [0, 1], got {args.cutmix_disable_prob}.")
    args.mixup_enabled = args.mixup_alpha > 0.0
    args.cutmix_enabled = (low, high) not in ((0.0, 0.0), (1.0, 1.0))
    needed = 4 if args.mixup_enabled and args.cutmix_enabled else 3 if args.cutmix_enabled else 2 if args.mixup_enabled else 1
    if args.batch_size < needed:
        what = "mixup and cutmix together" if needed == 4 else "cutmix" if needed == 3 else "mixup"
        _fail(f"--batch-size {args.batch_size} is too small for {what}, which mixes samples within a micro-batch; "
              f"use at least {needed}.")


def loss_scaling_steps(args: argparse.Namespace) -> List[float]:
    """Loss scaling per epoch (index 0 = epoch 1): doubles from the initial value to the final one."""
    doublings = int(math.floor(math.log2(args.loss_scaling / args.initial_loss_scaling) + 1e-9))
    phases = doublings + 1
    per_phase = max(1, args.epoch // phases)
    return [args.initial_loss_scaling * 2 ** min(doublings, (e - 1) // per_phase) for e in range(1, args.epoch + 1)]
