"""Which training outputs come back to the host, per PopTorch's output mode.

One call is ``DI`` optimiser steps of ``GA`` micro-steps, and each micro-step runs every replica
on its own micro-batch. Per-sample outputs are concatenated along dim 0 in ``[DI, GA, R, mb]``
order; scalar outputs such as the loss get one entry per replica micro-batch:

- ``Final`` (training default): the last micro-step of the last step: outputs ``[R*mb, ...]``,
  loss ``[R]`` (a 0-dim scalar when R == 1).
- ``All``: every micro-batch: outputs ``[DI*GA*R*mb, ...]``, loss ``[DI*GA*R]``.
- ``EveryN(n)``: every micro-batch of each n-th optimiser step: outputs ``[DI/n*GA*R*mb, ...]``,
  loss ``[DI/n*GA*R]``.
- ``Sum``: element-wise sums over steps and micro-steps, per replica: outputs ``[R*mb, ...]``,
  loss ``[R]`` (0-dim when R == 1).
"""
from __future__ import annotations

from typing import Any, List, Optional

import torch

from . import tree as pytree
from .enums import OutputMode


def _combine(rows: List[List[Any]], squeeze_single: bool) -> List[Any]:
    """Concatenate per-micro-batch leaves: tensors along dim 0, scalars stacked."""
    if squeeze_single and len(rows) == 1:
        return rows[0]
    out = []
    for i, first in enumerate(rows[0]):
        if not isinstance(first, torch.Tensor):
            out.append(rows[-1][i])
        elif first.dim() == 0:
            out.append(torch.stack([row[i] for row in rows]))
        else:
            out.append(torch.cat([row[i] for row in rows]))
    return out


class TrainingOutputs:
    """Keeps what the output mode asks for while the micro-steps run; combines once at the end."""

    def __init__(self, mode: OutputMode, period: int, device_iterations: int, accumulation: int,
                 replicas: int) -> None:
        self.mode = OutputMode.Final if mode == OutputMode.Default else OutputMode(mode)
        self.period = max(1, int(period))
        self.di, self.ga, self.replicas = device_iterations, accumulation, replicas
        self._rows: List[List[Any]] = []
        self._sums: List[Optional[List[Any]]] = [None] * replicas
        self._spec: Any = None

    def wants(self, step: int, micro_step: int) -> bool:
        """Whether outputs of this (optimiser step, micro-step) are needed at all."""
        if self.mode in (OutputMode.All, OutputMode.Sum):
            return True
        if self.mode == OutputMode.EveryN:
            return (step + 1) % self.period == 0
        return step == self.di - 1 and micro_step == self.ga - 1

    def add(self, step: int, micro_step: int, replica: int, out: Any) -> None:
        if not self.wants(step, micro_step):
            return
        leaves, self._spec = pytree.tree_flatten(out)
        leaves = [x.detach() if isinstance(x, torch.Tensor) else x for x in leaves]
        if self.mode != OutputMode.Sum:
            self._rows.append(leaves)
            return
        acc = self._sums[replica]
        self._sums[replica] = leaves if acc is None else [
            a + b if isinstance(a, torch.Tensor) else b for a, b in zip(acc, leaves)]

    def result(self) -> Any:
        if self._spec is None:
            return None
        rows = self._sums if self.mode == OutputMode.Sum else self._rows
        single = self.mode in (OutputMode.Sum, OutputMode.Final)
        return pytree.tree_unflatten(_combine(rows, squeeze_single=single), self._spec)
