"""portable_poptorch.tree: the nested-container flatten/unflatten the executors use instead of torch's
private pytree module."""
import collections

import pytest
import torch

from portable_poptorch import tree

Pair = collections.namedtuple("Pair", "logits loss")


class Row(tuple):
    """A tuple subclass that is not a namedtuple."""


class Items(list):
    pass


def test_leaves_come_depth_first_and_none_is_empty():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    leaves, _ = tree.tree_flatten(((a, [b, None]), {"x": c, "y": 5}))
    assert [x is y for x, y in zip(leaves, [a, b, c])] == [True, True, True] and leaves[3] == 5
    assert len(leaves) == 4
    assert tree.tree_leaves(None) == []


@pytest.mark.parametrize("value", [
    torch.arange(3),
    (torch.zeros(2), torch.ones(2)),
    [torch.zeros(1), (torch.ones(1), None)],
    {"b": torch.zeros(1), "a": [torch.ones(1), 3]},
    Pair(torch.zeros(2), torch.tensor(1.0)),
    collections.OrderedDict([("z", torch.zeros(1)), ("a", torch.ones(1))]),
    Row((torch.zeros(1), [torch.ones(1)])),
    Items([torch.zeros(1), Row((None, 4))]),
])
def test_unflatten_gives_back_the_same_structure(value):
    leaves, spec = tree.tree_flatten(value)
    rebuilt = tree.tree_unflatten(leaves, spec)
    assert type(rebuilt) is type(value)
    assert repr(rebuilt) == repr(value)


def test_defaultdict_keeps_its_factory():
    d = collections.defaultdict(list, {"a": torch.zeros(1)})
    rebuilt = tree.tree_map(lambda t: t + 1, d)
    assert isinstance(rebuilt, collections.defaultdict) and rebuilt.default_factory is list
    assert rebuilt["a"].item() == 1.0


def test_map_keeps_namedtuples_and_replaces_every_leaf():
    out = tree.tree_map(lambda t: t * 2, Pair(torch.ones(2), (torch.ones(1),)))
    assert isinstance(out, Pair)
    assert out.logits.tolist() == [2.0, 2.0] and out.loss[0].tolist() == [2.0]


def test_too_many_leaves_is_an_error():
    _, spec = tree.tree_flatten((torch.zeros(1),))
    with pytest.raises(ValueError):
        tree.tree_unflatten([torch.zeros(1), torch.zeros(1)], spec)


def test_subclassed_containers_keep_their_type_and_leaves():
    a, b = torch.zeros(1), torch.ones(1)
    leaves, spec = tree.tree_flatten(Items([Row((a, b)), "s"]))
    assert leaves[0] is a and leaves[1] is b and leaves[2] == "s"
    rebuilt = tree.tree_unflatten([1, 2, 3], spec)
    assert type(rebuilt) is Items and type(rebuilt[0]) is Row and list(rebuilt[0]) == [1, 2] and rebuilt[1] == 3
