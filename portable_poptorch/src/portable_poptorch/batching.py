"""PopTorch's host-batch arithmetic and output modes, shared by the inference and training executors."""
from __future__ import annotations

from typing import Any, Iterable, List, Sequence

import torch

from . import tree as pytree
from .enums import OutputMode
from .errors import BatchSizeError


def tensors_in(args: Sequence[Any], kwargs: dict) -> List[torch.Tensor]:
    if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
        return list(args)   # plain tensor arguments (every call of a benchmark): nothing to flatten
    leaves, _ = pytree.tree_flatten((tuple(args), dict(kwargs)))
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def input_shapes(args: Sequence[Any]) -> tuple:
    """Shape and dtype of every tensor in ``args``: what a compiled step is specialised for."""
    return tuple((t.shape, t.dtype) for t in tensors_in(args, {}))


def steps_per_call(args: Sequence[Any], kwargs: dict, steps: int, what: str) -> int:
    """Samples per device step; raises BatchSizeError when dim 0 of an input does not split evenly."""
    sizes = {t.shape[0] for t in tensors_in(args, kwargs) if t.dim() > 0}
    if not sizes:
        raise BatchSizeError("The model was called without any batched tensor input.")
    if len(sizes) > 1:
        raise BatchSizeError(f"Inputs have different batch dimensions {sorted(sizes)}; all inputs need the same dim 0.")
    n = sizes.pop()
    if n % steps != 0 or n == 0:
        raise BatchSizeError(
            f"Host batch of {n} samples does not split into {what} = {steps}; "
            f"dim 0 must be a positive multiple of {steps}.")
    return n // steps


def slice_step(tree: Any, step: int, per_step: int) -> Any:
    """The ``step``-th chunk of ``per_step`` samples of every tensor in ``tree``; a tensor that is
    the whole chunk already is passed as it is (no view made on every call)."""
    lo, hi = step * per_step, (step + 1) * per_step

    def cut(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or (lo == 0 and t.shape[0] == hi):
            return t
        return t[lo:hi]
    return pytree.tree_map(cut, tree)


class OutputCollector:
    """Keeps the micro-step outputs PopTorch's output mode asks for and combines them once."""

    def __init__(self, mode: OutputMode, period: int, steps: int) -> None:
        self.mode, self.period, self.steps = mode, max(1, period), steps
        self._kept: List[Any] = []
        self._sum: Any = None
        self._spec: Any = None

    def add(self, step: int, out: Any, clone: bool = False) -> None:
        leaves, self._spec = pytree.tree_flatten(out)
        if self.mode == OutputMode.Sum:
            self._sum = [x.clone() for x in leaves] if self._sum is None else [a + b for a, b in zip(self._sum, leaves)]
            return
        keep = (self.mode == OutputMode.All
                or (self.mode == OutputMode.Final and step == self.steps - 1)
                or (self.mode == OutputMode.EveryN and (step + 1) % self.period == 0))
        if keep:
            self._kept.append([x.clone() if clone and isinstance(x, torch.Tensor) else x for x in leaves])

    def result(self) -> Any:
        if self._spec is None:
            return None
        if self.mode == OutputMode.Sum:
            leaves = self._sum
        elif len(self._kept) == 1:
            leaves = self._kept[0]
        else:
            leaves = [torch.cat([row[i] if row[i].dim() > 0 else row[i].reshape(1) for row in self._kept])
                      if isinstance(self._kept[0][i], torch.Tensor) else self._kept[-1][i]
                      for i in range(len(self._kept[0]))]
        return pytree.tree_unflatten(leaves, self._spec)


def to_device(tree: Any, device: torch.device, non_blocking: bool) -> Any:
    """One host->device copy per tensor; host tensors are pinned first on CUDA so the copy is async."""
    def move(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.device == device:
            return t
        if device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
            t = t.pin_memory()
        return t.to(device, non_blocking=non_blocking)
    return pytree.tree_map(move, tree)


def to_host(tree: Any) -> Any:
    """Every tensor of ``tree`` on the host; host tensors are returned as they are, without a call."""
    return pytree.tree_map(lambda t: t.cpu() if isinstance(t, torch.Tensor) and not t.is_cpu else t, tree)


def iter_leaves(tree: Any) -> Iterable[torch.Tensor]:
    return [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def synthetic_like(tree: Any, device: torch.device) -> Any:
    """Random tensors shaped like ``tree``'s, made on ``device`` once (enableSyntheticData)."""
    def make(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if t.dtype.is_floating_point:
            return torch.randn(t.shape, dtype=t.dtype, device=device)
        if t.dtype == torch.uint8:
            return torch.randint(0, 256, t.shape, dtype=t.dtype, device=device)
        return torch.zeros(t.shape, dtype=t.dtype, device=device)
    return pytree.tree_map(make, tree)


def memory_format(tree: Any, channels_last: bool) -> Any:
    """4-D inputs in channels-last layout when the run asks for it (faster convolutions on CUDA)."""
    if not channels_last:
        return tree
    return pytree.tree_map(lambda t: t.contiguous(memory_format=torch.channels_last)
                           if isinstance(t, torch.Tensor) and t.dim() == 4 else t, tree)
