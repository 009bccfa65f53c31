"""Recomputation for training: PopTorch's checkpoint marks mapped onto ``torch.utils.checkpoint``.

PopTorch keeps the tensors passed to ``recomputationCheckpoint`` and recomputes everything between
them in the backward pass. Here the marks are found once, on a probe forward: a mark placed on a
module's output (the harness puts them there through forward hooks) makes that module a
recomputation region. Its forward runs under a non-reentrant ``torch.utils.checkpoint``, so only
its input and output stay alive and its inner activations are recomputed in backward. When
recomputation is requested without marks, the whole forward is one region.

Buffers (batch-norm running statistics) are restored after the recomputed forward so statistics
are updated exactly once per micro-batch, as without recomputation.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import blocks

_WRAPPED_ATTR = "_portable_recompute_original_forward"


class MarkProbe:
    """Context manager recording which modules produced tensors marked by ``recomputationCheckpoint``."""

    def __init__(self, model: nn.Module) -> None:
        self._names = {id(m): n for n, m in model.named_modules()}
        self._producers: Dict[int, Tuple[torch.Tensor, str]] = {}
        self.marks: List[torch.Tensor] = []
        self._handle: Any = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        name = self._names.get(id(module))
        if name is not None and isinstance(output, torch.Tensor) and id(output) not in self._producers:
            self._producers[id(output)] = (output, name)

    def __enter__(self) -> "MarkProbe":
        blocks._block_state.checkpoints = self.marks
        self._handle = nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        blocks._block_state.checkpoints = None
        self._handle.remove()

    def marked_modules(self) -> Tuple[List[str], int]:
        """Names of the innermost modules whose outputs were marked, and how many marks matched none."""
        names: List[str] = []
        unmatched = 0
        for t in self.marks:
            hit = self._producers.get(id(t))
            if hit is None or hit[0] is not t:
                unmatched += 1
            elif hit[1] not in names:
                names.append(hit[1])
        return names, unmatched


def _recompute_forward(module: nn.Module, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    first = [True]

    def run(*inner: Any) -> Any:
        if first[0]:
            first[0] = False
            return forward(*inner, **kwargs)
        saved = [(b, b.clone()) for b in module.buffers()]
        try:
            return forward(*inner, **kwargs)
        finally:
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)
    return checkpoint(run, *args, use_reentrant=False)


def wrap_regions(model: nn.Module, names: List[str]) -> List[nn.Module]:
    """Make each named module (``""`` is the whole model) a recomputation region; returns them."""
    modules = dict(model.named_modules())
    wrapped = []
    for name in names:
        mod = modules[name]
        if hasattr(mod, _WRAPPED_ATTR):
            continue
        original = mod.forward
        setattr(mod, _WRAPPED_ATTR, original)
        mod.forward = functools.partial(_recompute_forward, mod, original)
        wrapped.append(mod)
    return wrapped


def unwrap_regions(modules: List[nn.Module]) -> None:
    """Give the modules their own forward back."""
    for mod in modules:
        if hasattr(mod, _WRAPPED_ATTR):
            delattr(mod, _WRAPPED_ATTR)
            del mod.forward
