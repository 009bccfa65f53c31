"""Pipeline splits: naming modules by path and marking the first module of each stage."""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from torch import nn

from .errors import ModelConfigError
from .normalize import NormalizeInputModel

SEPARATOR = "/"
_MAX_LISTED_NAMES = 40


def _split_root(model: nn.Module) -> nn.Module:
    """Split names are relative to the classifier, also when it is wrapped for input normalisation."""
    return model.model if isinstance(model, NormalizeInputModel) else model


def _ordered_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Non-root modules in definition order, which is execution order for the supported models."""
    return [(name.replace(".", SEPARATOR), module)
            for name, module in _split_root(model).named_modules() if name]


def pipeline_split_names(model: nn.Module) -> List[str]:
    """Every valid split name: module paths written with '/', e.g. 'layer3/0' or '_blocks/4'."""
    return [name for name, _ in _ordered_modules(model)]


def apply_pipeline_splits(model: nn.Module, splits: Sequence[str], begin_block: Callable) -> int:
    """Marks the first layer with ``ipu_id=0`` and ``splits[i]`` with ``ipu_id=i+1``; returns the stage count.

    ``begin_block`` follows ``poptorch.BeginBlock``; whatever it returns replaces the module in its
    parent. Each stage must contain at least one layer, so splits must be distinct, in execution
    order and not directly at the start of the previous stage.
    """
    if not splits:
        return 1
    ordered = _ordered_modules(model)
    index_of: Dict[str, int] = {name: index for index, (name, _) in enumerate(ordered)}
    unknown = [split for split in splits if split not in index_of]
    if unknown:
        raise ModelConfigError(_unknown_split_message(unknown[0], [name for name, _ in ordered]))
    first = _first_layer_index(ordered)
    starts = [first] + [index_of[split] for split in splits]
    boundaries = [ordered[first][0]] + list(splits)
    for stage in range(len(splits)):
        if not _has_layer_between(ordered, starts[stage], starts[stage + 1]):
            raise ModelConfigError(
                f"Pipeline split {splits[stage]!r} leaves stage {stage} (starting at {boundaries[stage]!r}) "
                f"without layers; give splits in execution order, each after the previous one.")
    targets = [(ordered[index][0], ordered[index][1]) for index in starts]
    root = _split_root(model)
    sites = [(_parent_of(root, path), path.rsplit(SEPARATOR, 1)[-1], module) for path, module in targets]
    for ipu_id, (parent, child_name, module) in enumerate(sites):
        marked = begin_block(module, ipu_id=ipu_id)
        if isinstance(marked, nn.Module) and marked is not module:
            setattr(parent, child_name, marked)
    return len(splits) + 1


def _first_layer_index(ordered: List[Tuple[str, nn.Module]]) -> int:
    """The first module holding its own parameters (the stem conv), else the first leaf."""
    for index, (_, module) in enumerate(ordered):
        if next(module.parameters(recurse=False), None) is not None:
            return index
    for index, (_, module) in enumerate(ordered):
        if next(module.children(), None) is None:
            return index
    return 0


def _has_layer_between(ordered: List[Tuple[str, nn.Module]], start: int, stop: int) -> bool:
    """Whether modules [start, stop) include a leaf or a parameterised module."""
    return any(next(module.children(), None) is None or next(module.parameters(recurse=False), None) is not None
               for _, module in ordered[start:stop])


def _parent_of(root: nn.Module, path: str) -> nn.Module:
    parent = root
    for part in path.split(SEPARATOR)[:-1]:
        parent = getattr(parent, part)
    return parent


def _unknown_split_message(split: str, names: List[str]) -> str:
    if len(names) <= _MAX_LISTED_NAMES:
        shown = ", ".join(names)
        return f"Unknown pipeline split {split!r}; valid splits are: {shown}."
    shallow = [name for name in names if name.count(SEPARATOR) <= 1]
    if len(shallow) > _MAX_LISTED_NAMES:
        shallow = shallow[:_MAX_LISTED_NAMES] + ["..."]
    return (f"Unknown pipeline split {split!r}; this model has {len(names)} valid splits, module paths "
            f"written with '/', such as: {', '.join(shallow)}.")

