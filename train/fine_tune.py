"""Fine-tuning after --half-res-training: the options of that phase and the layers it freezes.

As the original: the averaged weights are trained a few epochs at full resolution with plain SGD
(cosine from --fine-tune-lr, no warm-up, no mixup or cutmix), on centre crops, with every parameter
before --fine-tune-first-trainable-layer frozen and the batch norms and dropouts before it in eval mode.
"""
from __future__ import annotations

import argparse
import copy

from torch import nn

from cnns.models import NormalizeInputModel
from cnns.models.original_names import translate_module_path
from cnns.utils.errors import UsageError


def fine_tune_args(args: argparse.Namespace) -> argparse.Namespace:
    """The fine-tuning phase's options, derived from the training run's."""
    ft = copy.copy(args)
    ft.half_res_training = False
    ft.mixup_alpha, ft.mixup_enabled = 0.0, False
    ft.cutmix_lambda_low = ft.cutmix_lambda_high = 0.0
    ft.cutmix_enabled = False
    ft.optimizer, ft.momentum, ft.warmup_epoch = "sgd", 0.0, 0
    ft.lr, ft.lr_schedule, ft.lr_scheduler_freq = args.fine_tune_lr, "cosine", 0
    ft.batch_size, ft.gradient_accumulation = args.fine_tune_batch_size, args.fine_tune_gradient_accumulation
    ft.epoch = args.fine_tune_epoch
    ft.initial_loss_scaling = args.loss_scaling
    ft.weight_avg_strategy, ft.validation_mode = "none", "none"
    ft.notes = []
    return ft


def freeze_before(model: nn.Module, model_name: str, first_trainable: str) -> int:
    """Freeze the parameters (and put norms and dropouts in eval mode) of the modules that come before
    ``first_trainable`` (a module path, the original's names accepted); returns the frozen count."""
    root = model.model if isinstance(model, NormalizeInputModel) else model
    first = translate_module_path(model_name, first_trainable)
    names = [name.replace(".", "/") for name, _ in root.named_modules() if name]
    if not any(n == first or n.startswith(first + "/") for n in names):
        shallow = ", ".join(n for n in names if n.count("/") <= 1)[:600]
        raise UsageError(f"--fine-tune-first-trainable-layer {first_trainable!r} is not a module of {model_name}; "
                         f"module paths look like {shallow}.")
    frozen = 0
    for name, param in root.named_parameters():
        if name.replace(".", "/").startswith(first):
            break
        param.requires_grad = False
        frozen += 1
    for name, module in root.named_modules():
        if name.replace(".", "/").startswith(first):
            break
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
            module.eval()
            module.register_forward_pre_hook(_stay_in_eval)
    return frozen


def _stay_in_eval(module: nn.Module, inputs: object) -> None:
    """Frozen norms and dropouts keep eval behaviour even when the training wrapper calls model.train()."""
    module.training = False
