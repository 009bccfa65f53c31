"""The optimiser a run asks for, with PopTorch's loss-scaling arguments and no weight decay on 1-D
parameters (biases and norm scales/shifts), as the original application does."""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def get_optimizer(args: Any, model: nn.Module, optim: Any, float32_master: bool = False) -> Any:
    """``optim`` is ``poptorch.optim`` of the backend in use; ``float32_master`` asks for float32
    accumulation (master weights and state) for a half model."""
    groups = parameter_groups(model, args.weight_decay)
    scaling = args.initial_loss_scaling
    accum = {"accum_type": torch.float32} if float32_master else {}
    if args.optimizer == "sgd":
        return optim.SGD(groups, lr=args.lr, momentum=args.momentum, loss_scaling=scaling, use_combined_accum=False,
                         **accum)
    if args.optimizer == "sgd_combined":
        return optim.SGD(groups, lr=args.lr, momentum=args.momentum, loss_scaling=scaling,
                         velocity_scaling=scaling, use_combined_accum=True, **accum)
    if args.optimizer == "adamw":
        return optim.AdamW(groups, lr=args.lr, eps=args.optimizer_eps, loss_scaling=scaling, **accum)
    use_tf = args.optimizer == "rmsprop_tf"
    if args.optimizer in ("rmsprop", "rmsprop_tf"):
        return optim.RMSprop(groups, lr=args.lr, alpha=args.rmsprop_decay, eps=args.optimizer_eps,
                             momentum=args.momentum, loss_scaling=scaling, use_tf_variant=use_tf, **accum)
    raise ValueError(f"Unknown optimizer {args.optimizer!r}.")


def set_loss_scaling(optimizer: Any, args: Any, scaling: float) -> None:
    """Loss scaling for the next steps; sgd_combined keeps velocity scaling equal to it, as the original."""
    optimizer.loss_scaling = scaling
    if args.optimizer == "sgd_combined":
        for group in optimizer.param_groups:
            group["velocity_scaling"] = scaling


def set_learning_rate(optimizer: Any, lr: float) -> bool:
    """Set every group's rate; returns whether anything changed (so setOptimizer is called only then)."""
    changed = False
    for group in optimizer.param_groups:
        if group["lr"] != lr:
            group["lr"] = lr
            changed = True
    return changed
