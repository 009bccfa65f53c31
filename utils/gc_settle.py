"""Python's garbage collector settled before measured calls, so a timed call never pays for start-up.

A full collection walks every object the collector tracks: after importing torch, torchvision and the
runtimes that is ~300-550 k objects and 0.1-0.2 s, and the allocations of a few hundred calls trigger
one. Landing in one 15 ms call it took 3-5% off resnet18's batch-1 figure through ONNX Runtime
(benchmarks/RESULTS.md). Collecting once and freezing what survives (``gc.freeze``, as long-running
servers do) leaves later collections only the objects made since: the measured calls see the steady
state, and a run's figure does not depend on how much was imported before it.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Dict


def settle() -> Dict[str, Any]:
    """Collect, then move every surviving object to the permanent generation; what was done, for results.json."""
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    seconds = time.perf_counter() - start
    frozen = gc.get_freeze_count()
    return {"gc_frozen_objects": frozen, "gc_settle_s": round(seconds, 3),
            "note": (f"Python's garbage collector: {frozen} objects from start-up collected and frozen in "
                     f"{seconds:.2f} s before the measured calls, so no full collection of them lands in a timed call.")}
