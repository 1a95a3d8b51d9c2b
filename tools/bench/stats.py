"""Small statistics and formatting helpers (no numpy: the bench runs in the project's venv)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between order statistics."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, p10/p90 and quartiles, in the samples' unit."""
    return {
        "n": float(len(samples)),
        "median": statistics.median(samples),
        "p10": percentile(samples, 10),
        "p25": percentile(samples, 25),
        "p75": percentile(samples, 75),
        "p90": percentile(samples, 90),
        "min": min(samples),
        "max": max(samples),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(size: float) -> str:
    return f"{size / 1_000_000:.1f} MB"


def spread(stats: dict[str, float]) -> str:
    """`median (p10-p90)` in ms."""
    return (
        f"{stats['median'] * 1000:.1f} ms "
        f"(p10 {stats['p10'] * 1000:.1f}, p90 {stats['p90'] * 1000:.1f})"
    )
