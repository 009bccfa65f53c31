"""What both executors report back: PopTorch's getLatency and the portable extensions."""
from __future__ import annotations

from typing import List, Tuple


class ExecutorReporting:
    """Mixin over ``self._latencies`` (seconds per micro-batch or step of the last call) and ``self._log``."""

    _latencies: List[float]
    _log: List[str]

    def getLatency(self) -> Tuple[float, float, float]:
        """(min, max, mean) seconds of the last call, as PopTorch's getLatency."""
        lat = self._latencies
        if not lat:
            return (0.0, 0.0, 0.0)
        return (min(lat), max(lat), sum(lat) / len(lat))

    def latencySamples(self) -> List[float]:
        """Per-micro-batch latencies of the last call in seconds (portable extension, for percentiles)."""
        return list(self._latencies)

    def portableMessages(self) -> List[str]:
        """Things the executor fell back on, for the harness log (portable extension)."""
        return list(dict.fromkeys(self._log))
