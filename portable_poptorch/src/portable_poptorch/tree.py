"""Flatten and rebuild the nested inputs and outputs of a model: tuples (named ones too), lists and
dicts of tensors.

torch's own pytree module is private (``torch.utils._pytree``) in the torch versions this package
supports, so the few operations the executors need are written here against Python's containers.
As in torch's pytree, ``None`` is an empty container (it has no leaves) and every other object is a
leaf.
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

Spec = Any  # a nested structure of ("tuple" | "namedtuple" | "list" | "dict" | "none" | "leaf", ...) nodes


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


_LEAF: Spec = ("leaf",)
_NONE: Spec = ("none",)


def tree_flatten(tree: Any) -> Tuple[List[Any], Spec]:
    """The leaves of ``tree`` in depth-first order and the structure ``tree_unflatten`` needs."""
    leaves: List[Any] = []

    def walk(node: Any) -> Spec:
        kind = type(node)
        if kind is tuple:  # the plain containers first: an executor flattens them on every call
            return ("tuple", tuple, [walk(x) for x in node])
        if kind is list:
            return ("list", list, [walk(x) for x in node])
        if node is None:
            return _NONE
        if not isinstance(node, (tuple, list, dict)):
            leaves.append(node)
            return _LEAF
        if _is_namedtuple(node):
            return ("namedtuple", kind, [walk(x) for x in node])
        if isinstance(node, (tuple, list)):
            return ("tuple" if isinstance(node, tuple) else "list", kind, [walk(x) for x in node])
        keys = list(node.keys())
        factory = getattr(node, "default_factory", None)  # defaultdict keeps its factory
        return ("dict", kind, keys, [walk(node[k]) for k in keys], factory)

    return leaves, walk(tree)


def tree_unflatten(leaves: List[Any], spec: Spec) -> Any:
    """Rebuild the structure ``spec`` (from ``tree_flatten``) around ``leaves``, taken in order."""
    it = iter(leaves)

    def build(node: Spec) -> Any:
        kind = node[0]
        if kind == "leaf":
            return next(it)
        if kind == "none":
            return None
        if kind == "namedtuple":
            return node[1](*[build(x) for x in node[2]])
        if kind == "tuple":
            return tuple([build(x) for x in node[2]]) if node[1] is tuple else node[1](build(x) for x in node[2])
        if kind == "list":
            return node[1](build(x) for x in node[2])
        items = [(k, build(x)) for k, x in zip(node[2], node[3])]
        if node[1] is dict:
            return dict(items)
        return node[1](items) if node[4] is None else node[1](node[4], items)

    out = build(spec)
    if next(it, _END) is not _END:
        raise ValueError("tree_unflatten was given more leaves than the structure holds.")
    return out


_END = object()


def tree_leaves(tree: Any) -> List[Any]:
    return tree_flatten(tree)[0]


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``tree`` with every leaf replaced by ``fn(leaf)``."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten([fn(x) for x in leaves], spec)
