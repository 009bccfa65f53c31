"""Throughput and latency statistics, combined across instances as docs/DESIGN.md §5 prescribes."""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from . import distributed


@dataclasses.dataclass
class Step:
    images: int
    seconds: float
    latency: Optional[Tuple[float, float, float]] = None  # seconds: min, max, mean


def summarise(steps: List[Step]) -> Dict[str, float]:
    """Per-step rates for min/max/std; mean = all images / all wall time (never a mean of rates).

    With several instances a step's images are summed and its time is the slowest instance's; each
    instance's own figure (its images / its time) and their sum are kept too, as scaling reports show both.
    """
    images = distributed.sum_all([float(s.images) for s in steps])
    seconds = distributed.max_all([s.seconds for s in steps])
    rates = [i / t for i, t in zip(images, seconds) if t > 0]
    total_t = sum(seconds)
    out: Dict[str, float] = {
        "steps": len(steps),
        "images": sum(images),
        "seconds": total_t,
        "throughput_min": min(rates) if rates else 0.0,
        "throughput_max": max(rates) if rates else 0.0,
        "throughput_mean": sum(images) / total_t if total_t > 0 else 0.0,
        "throughput_std": _std(rates),
    }
    own_images, own_seconds = float(sum(s.images for s in steps)), sum(s.seconds for s in steps)
    measured = distributed.gather_objects(own_images / own_seconds if own_seconds > 0 else 0.0)
    if len(measured) > 1:
        out["instance_throughputs"] = [float(m) for m in measured]  # each instance: its images / its time
        out["throughput_sum"] = float(sum(measured))
    lats = [s.latency for s in steps if s.latency is not None]
    if lats:
        lo = distributed.min_all([min(l[0] for l in lats)])[0]
        hi = distributed.max_all([max(l[1] for l in lats)])[0]
        means = distributed.sum_all([sum(l[2] for l in lats), float(len(lats))])
        out.update(latency_min_ms=lo * 1e3, latency_max_ms=hi * 1e3, latency_mean_ms=means[0] / means[1] * 1e3)
    return out


def spread(ratios: Sequence[float]) -> str:
    """Median and interquartile range of paired ratios, e.g. '0.981 (0.952-1.010)' (the median alone for
    one), as the benchmarks print how far a ratio's distance from 1 is resolved."""
    middle = statistics.median(ratios)
    if len(ratios) < 2:
        return f"{middle:.3f}"
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{middle:.3f} ({low:.3f}-{high:.3f})"


def _std(values: List[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
