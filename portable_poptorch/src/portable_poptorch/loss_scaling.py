"""Gradient post-processing between backward and the optimiser step: loss-scale removal, overflow
checks for automatic loss scaling, and global-norm clipping."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

import torch

# Automatic loss scaling: halve on overflow (the step is skipped), double after this many clean steps.
ALS_GROWTH_INTERVAL = 2000
ALS_MAX_SCALE = 2.0 ** 24


def _grads(params: List[torch.Tensor]) -> Dict[Tuple[torch.device, torch.dtype], List[torch.Tensor]]:
    """Gradients grouped by device and dtype so the foreach kernels take their fast path."""
    groups: Dict[Tuple[torch.device, torch.dtype], List[torch.Tensor]] = defaultdict(list)
    for p in params:
        if p.grad is not None:
            groups[(p.grad.device, p.grad.dtype)].append(p.grad)
    return groups


def unscale_(params: List[torch.Tensor], scale: float) -> None:
    """Divide every gradient by the loss scaling the loss was multiplied by."""
    if scale == 1.0:
        return
    for grads in _grads(params).values():
        for grad in grads:
            grad.mul_(1.0 / scale)


def all_finite(params: List[torch.Tensor]) -> bool:
    """True when no gradient holds inf or NaN (one device sync)."""
    flags = [torch.stack([torch.isfinite(g).all() for g in grads]).all()
             for grads in _grads(params).values()]
    if not flags:
        return True
    return bool(torch.stack([f.cpu() for f in flags]).all())


def clip_(params: List[torch.Tensor], max_norm: float) -> None:
    with_grad = [p for p in params if p.grad is not None]
    if with_grad:
        torch.nn.utils.clip_grad_norm_(with_grad, max_norm)


class AutoLossScaler:
    """Dynamic loss scaling in place of PopTorch's automatic loss scaling (histogram based on IPUs).

    The optimiser's ``loss_scaling`` attribute is updated in place, so the harness logs the value used.
    """

    def __init__(self) -> None:
        self.clean_steps = 0

    def update(self, optimizer: torch.optim.Optimizer, finite: bool) -> bool:
        """Adjust the scale after a step's backward; returns whether the step should be applied."""
        scale = float(getattr(optimizer, "loss_scaling", 1.0))
        if not finite:
            optimizer.loss_scaling = max(scale / 2.0, 2.0 ** -24)
            self.clean_steps = 0
            return False
        self.clean_steps += 1
        if self.clean_steps >= ALS_GROWTH_INTERVAL:
            optimizer.loss_scaling = min(scale * 2.0, ALS_MAX_SCALE)
            self.clean_steps = 0
        return True
