"""``poptorch.optim``: PyTorch optimisers with PopTorch's extra constructor arguments.

What the extra arguments do here:

- ``loss_scaling``: static loss scaling, done exactly by the training executor (the loss is
  multiplied by it before backward and the gradients divided by it before the step), so the
  update equals the unscaled one up to rounding. It is read at every call, so ``setOptimizer``
  changes apply on the next call.
- ``velocity_scaling`` (SGD): PopTorch stores the velocity multiplied by this factor and divides
  it out when applying it, which changes nothing in exact arithmetic; here the velocity is kept
  unscaled in its own dtype, so the factor is recorded and has no numerical effect.
- ``accum_type`` and the ``*_accum_type`` arguments: when any of them is float32 and a parameter
  is float16/bfloat16 (a model converted with ``.half()``), the optimiser keeps a float32 master
  copy of that parameter, steps the master with float32 gradients and state, and writes the
  rounded result back into the model. Otherwise they are recorded only.
- ``use_combined_accum`` (SGD): PopTorch's choice between two mathematically equal velocity
  layouts; recorded only.
- ``max_grad_norm``: gradients (after loss-scale removal) are clipped to this global norm.
- ``use_tf_variant`` (RMSprop): TensorFlow's RMSprop (epsilon inside the square root, mean-square
  accumulator initialised to 1, learning rate folded into the momentum buffer).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class VariableAttributes:
    """Which optimiser attributes may change through ``setOptimizer`` (all variable by default)."""

    def __init__(self, attributes: Iterable[str]) -> None:
        self._known = set(attributes)
        self._constant: set = set()

    def _check(self, attr: str) -> None:
        if attr not in self._known:
            raise ValueError(f"Unknown optimizer attribute {attr!r}; known attributes: {sorted(self._known)}.")

    def markAsConstant(self, attr: str) -> None:
        self._check(attr)
        self._constant.add(attr)

    def markAsVariable(self, attr: str) -> None:
        self._check(attr)
        self._constant.discard(attr)

    def isConstant(self, attr: str) -> bool:
        return attr in self._constant

    def constants(self) -> List[str]:
        return sorted(self._constant)


class _PortableOptimizer:
    """Mixin: loss scaling, accumulation types, fp32 master copies and PopTorch's attribute API."""

    _OPTIMIZER_ATTRS = ("loss_scaling", "max_grad_norm")

    def _portable_init(self, loss_scaling: Optional[float], max_grad_norm: Optional[float],
                       accum_types: Dict[str, Optional[torch.dtype]], **recorded: Any) -> None:
        self.loss_scaling = 1.0 if loss_scaling is None else float(loss_scaling)
        if self.loss_scaling <= 0:
            raise ValueError(f"loss_scaling must be > 0, got {loss_scaling}.")
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.accum_types = dict(accum_types)
        self.recorded_settings = {k: v for k, v in recorded.items() if v is not None}
        self._wants_master = any(t == torch.float32 for t in self.accum_types.values())
        self._masters: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
        group_attrs = {k for g in self.param_groups for k in g if k != "params"}
        self.variable_attrs = VariableAttributes(group_attrs | set(self._OPTIMIZER_ATTRS))

    def portable_model_params(self) -> List[torch.Tensor]:
        """The model's own parameters (never the master copies), whose ``.grad`` backward fills."""
        swapped = {id(m): p for p, m in (self._masters or [])}
        return [swapped.get(id(q), q) for g in self.param_groups for q in g["params"]]

    def _ensure_masters(self) -> None:
        """Replace low-precision parameters by float32 masters inside the param groups (once)."""
        if not self._wants_master or self._masters is not None:
            return
        self._masters = []
        for group in self.param_groups:
            new_params = []
            for p in group["params"]:
                if p.dtype not in _LOW_PRECISION:
                    new_params.append(p)
                    continue
                master = p.detach().clone().float().requires_grad_(p.requires_grad)
                if p in self.state:
                    self.state[master] = {k: v.float() if torch.is_tensor(v) and v.dim() > 0 else v
                                          for k, v in self.state.pop(p).items()}
                self._masters.append((p, master))
                new_params.append(master)
            group["params"] = new_params

    def _sync_devices(self) -> None:
        """Keep masters and optimiser state next to their parameters after the executor moved the model."""
        for p, master in self._masters or []:
            if master.device != p.device:
                master.data = master.data.to(p.device)
        for group in self.param_groups:
            for q in group["params"]:
                state = self.state.get(q)
                if not state:
                    continue
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.device != q.device:
                        state[key] = value.to(q.device)

    def step(self, closure: Any = None) -> Any:
        self._ensure_masters()
        self._sync_devices()
        for p, master in self._masters or []:
            master.grad = None if p.grad is None else p.grad.detach().float()
        result = self._base_step(closure)
        with torch.no_grad():
            for p, master in self._masters or []:
                p.copy_(master)
        return result

    def _base_step(self, closure: Any) -> Any:
        return super().step(closure)  # type: ignore[misc]

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)  # type: ignore[misc]
        for p, _ in self._masters or []:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> Dict[str, Any]:
        sd = super().state_dict()  # type: ignore[misc]
        sd["loss_scaling"] = self.loss_scaling
        if self._masters:
            flat = [q for g in self.param_groups for q in g["params"]]
            index = {id(q): i for i, q in enumerate(flat)}
            sd["master_params"] = {index[id(m)]: m.detach().clone() for _, m in self._masters}
        return sd

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("master_params", None)
        if "loss_scaling" in state_dict:
            self.loss_scaling = float(state_dict.pop("loss_scaling"))
        self._ensure_masters()
        super().load_state_dict(state_dict)  # type: ignore[misc]
        if masters:
            flat = [q for g in self.param_groups for q in g["params"]]
            with torch.no_grad():
                for i, value in masters.items():
                    flat[int(i)].copy_(value)

    def hyperparameters(self) -> Dict[str, Any]:
        """Attribute values ``setOptimizer`` compares and copies (PopTorch's variable attributes)."""
        values: Dict[str, Any] = {a: getattr(self, a) for a in self._OPTIMIZER_ATTRS}
        for i, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key != "params":
                    values[f"{key}@{i}"] = value
        return values


class SGD(_PortableOptimizer, torch.optim.SGD):
    """SGD with momentum; weight decay is L2 added to the gradient, as in PyTorch and PopTorch."""

    def __init__(self, params: Any, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, loss_scaling: Optional[float] = None,
                 velocity_scaling: Optional[float] = None, use_combined_accum: Optional[bool] = None,
                 accum_type: Optional[torch.dtype] = None, velocity_accum_type: Optional[torch.dtype] = None,
                 max_grad_norm: Optional[float] = None) -> None:
        torch.optim.SGD.__init__(self, params, lr=lr, momentum=momentum, dampening=dampening,
                                 weight_decay=weight_decay, nesterov=nesterov)
        for group in self.param_groups:
            group.setdefault("velocity_scaling", 1.0 if velocity_scaling is None else float(velocity_scaling))
        self._portable_init(loss_scaling, max_grad_norm,
                            {"accum_type": accum_type, "velocity_accum_type": velocity_accum_type},
                            use_combined_accum=use_combined_accum, velocity_scaling=velocity_scaling)


class AdamW(_PortableOptimizer, torch.optim.AdamW):
    """Adam with decoupled weight decay (PopTorch's default weight decay 0.01)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 loss_scaling: Optional[float] = None, accum_type: Optional[torch.dtype] = None,
                 first_order_momentum_accum_type: Optional[torch.dtype] = None,
                 second_order_momentum_accum_type: Optional[torch.dtype] = None,
                 max_grad_norm: Optional[float] = None) -> None:
        torch.optim.AdamW.__init__(self, params, lr=lr, betas=betas, eps=eps,
                                   weight_decay=weight_decay, amsgrad=amsgrad)
        self._portable_init(loss_scaling, max_grad_norm, {
            "accum_type": accum_type, "first_order_momentum_accum_type": first_order_momentum_accum_type,
            "second_order_momentum_accum_type": second_order_momentum_accum_type})


class Adam(_PortableOptimizer, torch.optim.Adam):
    """Adam with L2 weight decay added to the gradient."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 loss_scaling: Optional[float] = None, accum_type: Optional[torch.dtype] = None,
                 first_order_momentum_accum_type: Optional[torch.dtype] = None,
                 second_order_momentum_accum_type: Optional[torch.dtype] = None,
                 max_grad_norm: Optional[float] = None) -> None:
        torch.optim.Adam.__init__(self, params, lr=lr, betas=betas, eps=eps,
                                  weight_decay=weight_decay, amsgrad=amsgrad)
        self._portable_init(loss_scaling, max_grad_norm, {
            "accum_type": accum_type, "first_order_momentum_accum_type": first_order_momentum_accum_type,
            "second_order_momentum_accum_type": second_order_momentum_accum_type})


class RMSprop(_PortableOptimizer, torch.optim.RMSprop):
    """RMSprop, PyTorch's form by default or TensorFlow's with ``use_tf_variant=True``."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 loss_scaling: Optional[float] = None, use_tf_variant: bool = False,
                 accum_type: Optional[torch.dtype] = None,
                 first_order_momentum_accum_type: Optional[torch.dtype] = None,
                 second_order_momentum_accum_type: Optional[torch.dtype] = None,
                 max_grad_norm: Optional[float] = None) -> None:
        torch.optim.RMSprop.__init__(self, params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                     momentum=momentum, centered=centered)
        self.use_tf_variant = bool(use_tf_variant)
        self._portable_init(loss_scaling, max_grad_norm, {
            "accum_type": accum_type, "first_order_momentum_accum_type": first_order_momentum_accum_type,
            "second_order_momentum_accum_type": second_order_momentum_accum_type})

    def _base_step(self, closure: Any) -> Any:
        if not self.use_tf_variant:
            return super()._base_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._tf_update(p, group)
        return loss

    def _tf_update(self, p: torch.Tensor, group: Dict[str, Any]) -> None:
        """ms = a*ms + (1-a)*g^2 (ms starts at 1); mom = m*mom + lr*g/sqrt(ms [- mg^2] + eps); p -= mom."""
        grad = p.grad
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        state = self.state[p]
        if "square_avg" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["square_avg"] = torch.ones_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p)
        state["step"] += 1
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
            denom = square_avg.addcmul(grad_avg, grad_avg, value=-1).add_(group["eps"]).sqrt_()
        else:
            denom = square_avg.add(group["eps"]).sqrt_()
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, denom, value=group["lr"])
            p.sub_(buf)
        else:
            p.addcdiv_(grad, denom, value=-group["lr"])


__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "VariableAttributes"]
