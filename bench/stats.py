"""Percentiles, and the median of repeated runs (one stall on a shared machine moves a
sub-millisecond p99 a lot; the median of several runs' p99 does not)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: int) -> float:
    """The pct-th percentile (exclusive method; a single sample is its own percentile)."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        return float(samples[0])
    return statistics.quantiles(samples, n=100)[pct - 1]


def p99(samples: Sequence[float]) -> float:
    return percentile(samples, 99)


def p95(samples: Sequence[float]) -> float:
    return percentile(samples, 95)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> list[float]:
    """Every repetition's figure, for the record beside the median."""
    return [round(v * scale, digits) for v in values]
