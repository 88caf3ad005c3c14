"""Summaries of latency samples: percentiles, throughput, and a ratio with a bootstrap interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["paired_ratio", "summarize"]


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99 and mean in microseconds, and calls per second for one caller back to back."""
    if not seconds:
        return {"samples": 0, "p50_us": None, "p95_us": None, "p99_us": None, "mean_us": None, "per_s": None}
    arr = np.asarray(seconds, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    total = float(arr.sum())
    return {
        "samples": len(arr),
        "p50_us": float(p50) * 1e6,
        "p95_us": float(p95) * 1e6,
        "p99_us": float(p99) * 1e6,
        "mean_us": total / len(arr) * 1e6,
        "per_s": len(arr) / total if total > 0 else None,
    }


def paired_ratio(
    contender: Sequence[float], baseline: Sequence[float], resamples: int = 1000, seed: int = 0
) -> dict[str, float]:
    """median(contender) / median(baseline) and its 95 % bootstrap interval.

    Samples are paired by round (call i of each side ran back to back in the same round), and
    the bootstrap resamples rounds, so what drifted during the run drifts on both sides alike.
    ``added_us`` is the median of the paired differences.
    """
    a = np.asarray(contender, dtype=float)
    b = np.asarray(baseline, dtype=float)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    ratios = np.median(a[picks], axis=1) / np.median(b[picks], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {
        "ratio": ratio,
        "ratio_low": float(low),
        "ratio_high": float(high),
        "added_us": float(np.median(a - b)) * 1e6,
    }
