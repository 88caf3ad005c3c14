"""Anomaly detection: IsolationForest over each endpoint's latency and error-rate series.

The recorded calls of an endpoint are cut into time buckets (a minute by default); each bucket is
a point (mean latency, p95 latency, error share). IsolationForest scores how isolated each point
is among that endpoint's own history; a bucket is an anomaly when the forest calls it an outlier
*and* it is worse than usual (slower or failing more than the median bucket): an unusually quiet
minute is not news.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

__all__ = ["find_anomalies"]

MIN_BUCKETS = 12  # fewer points than this per endpoint: no verdict (a forest of nothing)


def find_anomalies(
    calls: Sequence[tuple[float, str | None, str | None, float | None, int]],
    bucket_seconds: float = 60.0,
    contamination: float = 0.02,
    min_calls: int = 5,
) -> tuple[list[dict[str, Any]], int]:
    """Anomalous buckets in ``calls`` (ts, exchange, endpoint, latency s, had_error) and how many
    endpoints had enough history to judge. Buckets with fewer than ``min_calls`` calls are left
    out (one slow call in a quiet minute is not a pattern)."""
    series: dict[tuple[str | None, str | None], dict[int, list[tuple[float, int]]]] = {}
    for ts, exchange, endpoint, latency, failed in calls:
        bucket = int(ts // bucket_seconds)
        series.setdefault((exchange, endpoint), {}).setdefault(bucket, []).append(
            (float(latency or 0.0), int(failed or 0))
        )
    found: list[dict[str, Any]] = []
    judged = 0
    for (exchange, endpoint), buckets in series.items():
        ids = sorted(b for b, points in buckets.items() if len(points) >= min_calls)
        if len(ids) < MIN_BUCKETS:
            continue
        judged += 1
        rows = []
        for b in ids:
            lat = np.array([p[0] for p in buckets[b]])
            err = np.array([p[1] for p in buckets[b]])
            rows.append((lat.mean(), np.percentile(lat, 95), err.mean()))
        x = np.array(rows)
        # log latency: a spike from 20 ms to 2 s stands out; 2.0 s vs 2.1 s does not
        features = np.column_stack([np.log1p(x[:, 0] * 1000), np.log1p(x[:, 1] * 1000), x[:, 2]])
        forest = IsolationForest(n_estimators=100, contamination=contamination, random_state=0)
        labels = forest.fit_predict(features)
        scores = forest.score_samples(features)
        median = np.median(x, axis=0)
        spread = np.median(np.abs(x - median), axis=0) + 1e-9
        for i, b in enumerate(ids):
            if labels[i] != -1:
                continue
            lat_worse = x[i, 1] > median[1] + 3 * spread[1] and x[i, 1] > 1.5 * median[1]
            err_worse = x[i, 2] > median[2] + max(0.1, 3 * spread[2])
            if not (lat_worse or err_worse):
                continue
            metric = "latency" if lat_worse else "error_rate"
            value = float(x[i, 1] if lat_worse else x[i, 2])
            baseline = float(median[1] if lat_worse else median[2])
            if metric == "latency":
                detail = f"p95 latency {value * 1000:.0f} ms, usually {baseline * 1000:.0f} ms"
            else:
                detail = f"error rate {value:.0%}, usually {baseline:.0%}"
            found.append(
                {
                    "ts": b * bucket_seconds,
                    "exchange": exchange,
                    "endpoint": endpoint,
                    "metric": metric,
                    "value": round(value, 6),
                    "baseline": round(baseline, 6),
                    "score": round(float(-scores[i]), 4),  # higher: more isolated
                    "calls": len(buckets[b]),
                    "message": f"{exchange} {endpoint}: {detail}",
                    "detail": detail,  # the message without the endpoint (alerts add their own)
                }
            )
    found.sort(key=lambda a: a["ts"])
    return found, judged
