"""Executor streams: the micro-batch split into sub-batches that run at once, one per group of cores.

A CNN's small layers (depthwise convolutions, squeeze-excite, the classifier) do not keep every core
busy within one call; OpenVINO's and ONNX Runtime's throughput modes run several requests at once
instead, each on a share of the cores. Here a stream count ``n`` splits the micro-batch along its
first dimension into ``n`` sub-batches, runs them concurrently and gives back the concatenated
outputs, so the caller sees the same step with the same results.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .. import tree as pytree

SubStep = Callable[..., Any]


def micro_batch(example: Tuple[Any, ...]) -> int:
    """Leading size of the step's first tensor input (1 when it takes no tensor)."""
    for t in example:
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


def candidate_counts(batch: int, threads: int, requested: Optional[int]) -> List[int]:
    """Stream counts to build: the one asked for (at most one per sample), or for auto 1 and one per thread."""
    if requested is not None:
        return [max(1, min(requested, batch))]
    wide = min(threads, batch)
    return [1, wide] if wide > 1 else [1]


def even_count(batch: int, streams: int) -> int:
    """The largest count <= ``streams`` that divides ``batch`` (static-shape runtimes need equal parts)."""
    return next(n for n in range(min(streams, batch), 0, -1) if batch % n == 0)


def split_sizes(batch: int, streams: int) -> List[int]:
    """Sub-batch sizes, as equal as possible, larger ones first."""
    base, extra = divmod(batch, streams)
    return [base + (1 if i < extra else 0) for i in range(streams)]


def split_args(args: Sequence[Any], sizes: List[int]) -> List[Tuple[Any, ...]]:
    """Per stream, the step's arguments with every batched tensor cut to that stream's rows."""
    batch = sum(sizes)
    parts: List[List[Any]] = [[] for _ in sizes]
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dim() > 0 and arg.shape[0] == batch:
            for part, piece in zip(parts, torch.split(arg, sizes)):
                part.append(piece)
        else:
            for part in parts:
                part.append(arg)
    return [tuple(p) for p in parts]


def concat_outputs(outputs: Sequence[Any]) -> Any:
    """The streams' outputs joined along the batch dimension, in the model's output nesting."""
    flat = [pytree.tree_flatten(o) for o in outputs]
    spec = flat[0][1]
    leaves = [torch.cat(group) for group in zip(*(leaves for leaves, _ in flat))]
    return pytree.tree_unflatten(leaves, spec)


def outputs_are_batched(example: Tuple[Any, ...], outputs: Any) -> bool:
    """True when every output has the micro-batch as its first dimension, so sub-batch outputs concatenate."""
    batch = micro_batch(example)
    leaves = pytree.tree_flatten(outputs)[0]
    return bool(leaves) and all(isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == batch
                                for t in leaves)


class ThreadedStreams:
    """Runs ``n`` sub-steps on ``n`` threads (the calling thread takes the first), for runtimes that
    release the GIL while they compute (ONNX Runtime's ``run``)."""

    def __init__(self, sub_steps: Sequence[SubStep], batch: int) -> None:
        self.sub_steps = list(sub_steps)
        self.sizes = split_sizes(batch, len(self.sub_steps))
        self.pool = ThreadPoolExecutor(max_workers=len(self.sub_steps) - 1, thread_name_prefix="stream")

    def __call__(self, *args: Any) -> Any:
        parts = split_args(args, self.sizes)
        futures = [self.pool.submit(sub, *part) for sub, part in zip(self.sub_steps[1:], parts[1:])]
        first = self.sub_steps[0](*parts[0])
        return concat_outputs([first] + [f.result() for f in futures])

    def __del__(self) -> None:
        self.pool.shutdown(wait=False)
