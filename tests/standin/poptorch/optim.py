"""poptorch.optim of PopTorch 2.4: torch's optimisers with PopTorch's extra constructor arguments."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch


class _PopTorchOptimizer:
    def _keep(self, loss_scaling: Optional[float], accum_type: Optional[torch.dtype], **extra: Any) -> None:
        self.loss_scaling = 1.0 if loss_scaling is None else float(loss_scaling)
        if accum_type not in (None, torch.float16, torch.float32):
            raise ValueError("accum_type must be torch.float16 or torch.float32")
        self.accum_type = accum_type
        for key, value in extra.items():
            setattr(self, key, value)


class SGD(torch.optim.SGD, _PopTorchOptimizer):
    def __init__(self, params: Iterable, lr: float, momentum: Optional[float] = None, dampening: Optional[float] = None,
                 weight_decay: Optional[float] = None, nesterov: Optional[bool] = None, maximize: Optional[bool] = None,
                 foreach: Optional[bool] = None, differentiable: Optional[bool] = None,
                 loss_scaling: Optional[float] = None, velocity_scaling: Optional[float] = None,
                 use_combined_accum: Optional[bool] = None, accum_type: Optional[torch.dtype] = None,
                 velocity_accum_type: Optional[torch.dtype] = None, max_grad_norm: Optional[float] = None) -> None:
        super().__init__(params, lr=lr, momentum=momentum or 0.0, dampening=dampening or 0.0,
                         weight_decay=weight_decay or 0.0, nesterov=bool(nesterov))
        for group in self.param_groups:
            group.setdefault("velocity_scaling", 1.0 if velocity_scaling is None else velocity_scaling)
        self._keep(loss_scaling, accum_type, use_combined_accum=use_combined_accum)


class AdamW(torch.optim.AdamW, _PopTorchOptimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Any = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, bias_correction: bool = True,
                 loss_scaling: Optional[float] = None, accum_type: Optional[torch.dtype] = None,
                 first_order_momentum_accum_type: Optional[torch.dtype] = None,
                 second_order_momentum_accum_type: Optional[torch.dtype] = None,
                 max_grad_norm: Optional[float] = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self._keep(loss_scaling, accum_type)


class RMSprop(torch.optim.RMSprop, _PopTorchOptimizer):
    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 loss_scaling: Optional[float] = None, accum_type: Optional[torch.dtype] = None,
                 first_order_momentum_accum_type: Optional[torch.dtype] = None,
                 second_order_momentum_accum_type: Optional[torch.dtype] = None,
                 use_tf_variant: bool = False) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered)
        self._keep(loss_scaling, accum_type, use_tf_variant=use_tf_variant)
