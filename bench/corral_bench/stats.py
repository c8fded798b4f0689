"""Percentiles and summaries, one definition for every figure of the table."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (the C++ load client uses the same rule); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize_ms(samples_s: Iterable[float]) -> dict:
    """p50, p99 and max in milliseconds of durations given in seconds."""
    values = [s * 1000.0 for s in samples_s]
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median(values: list[float]) -> float | None:
    return percentile(values, 50)
