"""Latency statistics shared by evaluate-gateway and the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an already sorted list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    def as_dict(self, digits: int = 2) -> dict[str, float | int]:
        return {
            key: (round(value, digits) if isinstance(value, float) else value)
            for key, value in asdict(self).items()
        }


def summarize(values: Iterable[float]) -> Summary | None:
    """Count, mean and p50/p95/p99 of some values; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Summary(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 0.50),
        p95=percentile(ordered, 0.95),
        p99=percentile(ordered, 0.99),
        min=ordered[0],
        max=ordered[-1],
    )
