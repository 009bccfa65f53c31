"""gc_settle: start-up garbage is collected and what survives frozen, so a later full collection no
longer walks it."""
import gc
import weakref

from cnns.utils import gc_settle


class Node:
    pass


def test_settle_collects_cycles_and_freezes_survivors():
    kept = [[i] for i in range(20000)]
    cycle = Node()
    cycle.self = cycle
    dead = weakref.ref(cycle)
    del cycle
    try:
        done = gc_settle.settle()
        assert dead() is None
        assert done["gc_frozen_objects"] == gc.get_freeze_count() >= len(kept)
        assert len(gc.get_objects(2)) < len(kept)
        assert f"{done['gc_frozen_objects']} objects" in done["note"]
    finally:
        gc.unfreeze()
