"""CPU time per call, as the measurement scripts take it: the median of several rounds of
process CPU time (not wall time, so other work on a shared machine does not count)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["median_cpu_us"]


def median_cpu_us(work: Callable[[], object], count: int, *, rounds: int) -> float:
    """Microseconds of process CPU per call of ``work``: ``rounds`` rounds of ``count`` calls."""
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            work()
        figures.append((time.process_time() - started) / count * 1e6)
    return statistics.median(figures)
