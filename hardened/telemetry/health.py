"""Health score 0-100 of a client and of the whole process, with the reasons that cost it points.

Levels as in the seed documents: excellent (>= 90), good (75-89), fair (60-74), poor (40-59),
critical (< 40). Seven components, each deducting points with a reason naming the endpoint:

- error rate: failed share of the last minute's calls (up to 50 points);
- breakers: an open breaker costs 25, a half-open one 10;
- latency: an endpoint's p50 against its own baseline (a time-weighted EWMA of the p50 seen in
  earlier snapshots, so a slow exchange is not "unhealthy" for being slow, only for getting
  slower), and a p95 far above the p50 (erratic answers); differences under a floor never count;
- skips: share of calls the gate skipped;
- stale: share of calls answered with stale cached data (stale-if-error hides failures);
- data quality: the last quality score under 80;
- process memory: resident set size (psutil) against ``memory_limit_mb``.

The score says how the connection is now rather than since start-up. ``overall_health()`` is the
mean of the registered clients' scores (each client's reasons prefixed with its name).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import psutil

__all__ = [
    "LEVELS",
    "HealthPolicy",
    "LatencyBaselines",
    "client_health",
    "configure_health",
    "level_of",
    "overall_health",
    "policy",
    "process_memory_mb",
]

LEVELS = ((90.0, "excellent"), (75.0, "good"), (60.0, "fair"), (40.0, "poor"), (0.0, "critical"))
COMPONENTS = ("error_rate", "breakers", "latency", "skips", "stale", "quality", "memory")


def level_of(score: float) -> str:
    """The status word of a score."""
    for floor, name in LEVELS:
        if score >= floor:
            return name
    return "critical"


@dataclass
class HealthPolicy:
    """The thresholds of the score; change them with ``configure_health(...)``.

    ``memory_limit_mb`` defaults to ``HARDENED_MEMORY_LIMIT_MB`` or 1024 (the seed's "keep under 1GB").
    """

    memory_limit_mb: float = float(os.environ.get("HARDENED_MEMORY_LIMIT_MB", "1024"))
    latency_floor_ms: float = 50.0  # latency differences below this never cost points
    latency_ratio: float = 2.0  # p50 at this multiple of its baseline starts to cost points
    tail_ratio: float = 10.0  # p95 at this multiple of p50 counts as erratic
    baseline_tau_s: float = 600.0  # time constant of the latency baseline (EWMA), seconds


policy = HealthPolicy()


def configure_health(**changes: Any) -> HealthPolicy:
    """Change thresholds of the process-wide ``policy`` (``memory_limit_mb=2048``, ...)."""
    known = {f.name for f in fields(HealthPolicy)}
    for name, value in changes.items():
        if name not in known:
            raise ValueError(f"unknown health setting {name!r}; known: {', '.join(sorted(known))}")
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"health setting {name} must be a positive number, got {value!r}")
        setattr(policy, name, float(value))
    return policy


class LatencyBaselines:
    """Per client x endpoint EWMA of the p50 latency, weighted by the time between snapshots."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], tuple[float, float]] = {}

    def observe(
        self, key: tuple[str, str], p50: float, tau_s: float, now: float | None = None
    ) -> float | None:
        """Fold ``p50`` into the baseline of ``key``; returns the baseline as it was before."""
        now = time.monotonic() if now is None else now
        with self._lock:
            previous = self._values.get(key)
            if previous is None:
                self._values[key] = (p50, now)
                return None
            baseline, seen = previous
            alpha = 1.0 - math.exp(-max(0.0, now - seen) / tau_s)
            self._values[key] = (baseline + alpha * (p50 - baseline), now)
            return baseline

    def get(self, key: tuple[str, str]) -> float | None:
        """The current baseline of ``key`` (milliseconds), if any."""
        with self._lock:
            found = self._values.get(key)
        return found[0] if found else None

    def clear(self) -> None:
        """Forget every baseline."""
        with self._lock:
            self._values.clear()


baselines = LatencyBaselines()
_process: psutil.Process | None = None


def process_memory_mb() -> float:
    """Resident set size of this process in MiB."""
    global _process
    if _process is None:
        _process = psutil.Process()
    return _process.memory_info().rss / (1024 * 1024)


def _latency_points(
    client: str, name: str, latency: Mapping[str, Any], store: LatencyBaselines
) -> tuple[float, list[str]]:
    p50, p95 = latency.get("p50"), latency.get("p95")
    if p50 is None:
        return 0.0, []
    points, reasons = 0.0, []
    baseline = store.observe((client, name), float(p50), policy.baseline_tau_s)
    if baseline is not None and baseline > 0:
        ratio = p50 / baseline
        if ratio >= policy.latency_ratio and p50 - baseline >= policy.latency_floor_ms:
            points += min(15.0, 5.0 * (ratio - policy.latency_ratio + 1.0))
            reasons.append(f"{name}: p50 latency {p50:.0f} ms is {ratio:.1f}x its baseline {baseline:.0f} ms")
    if p95 is not None and p50 > 0:
        tail = p95 / p50
        if tail >= policy.tail_ratio and p95 - p50 >= policy.latency_floor_ms:
            points += 5.0
            reasons.append(f"{name}: p95 latency {p95:.0f} ms is {tail:.0f}x the p50 (erratic answers)")
    return min(15.0, points), reasons


def _memory_points() -> tuple[float, list[str], dict[str, float]]:
    rss = process_memory_mb()
    limit = policy.memory_limit_mb
    info = {"rss_mb": round(rss, 1), "limit_mb": limit}
    share = rss / limit
    if share >= 1.0:
        return (
            min(50.0, 30.0 + (share - 1.0) * 40.0),
            [f"process memory {rss:.0f} MB is over its {limit:.0f} MB limit"],
            info,
        )
    if share >= 0.8:
        return (
            (share - 0.8) / 0.2 * 15.0,
            [f"process memory {rss:.0f} MB is {share:.0%} of its {limit:.0f} MB limit"],
            info,
        )
    return 0.0, [], info


def client_health(
    stats: dict[str, Any], *, memory: bool = True, store: LatencyBaselines | None = None
) -> dict[str, Any]:
    """Score one client's ``stats()``: ``{score, status, reasons, components}``.

    ``components`` holds the points each component deducted. ``memory=False`` leaves the
    process-wide memory component out; ``store`` replaces the process-wide latency baselines.
    """
    store = baselines if store is None else store
    client = str(stats.get("client") or stats.get("exchange") or "")
    points = dict.fromkeys(COMPONENTS, 0.0)
    reasons: list[str] = []
    total_calls = total_failures = 0
    for name, data in stats.get("endpoints", {}).items():
        recent = data.get("recent", {})
        total_calls += recent.get("calls", 0)
        total_failures += recent.get("failures", 0)
        state = data.get("breaker", {}).get("state", "closed")
        if state == "open":
            points["breakers"] += 25.0
            reasons.append(f"{name}: breaker open")
        elif state == "half_open":
            points["breakers"] += 10.0
            reasons.append(f"{name}: breaker half-open, probing")
        quality = data.get("last_quality")
        if quality is not None and quality < 80:
            points["quality"] += min(15.0, (80 - quality) / 4)
            reasons.append(f"{name}: last data quality {quality:.0f}/100")
        skips = data.get("skips", 0)
        if skips and data.get("calls", 0):
            share = skips / max(1, data["calls"])
            if share > 0.05:
                points["skips"] += min(10.0, share * 20)
                reasons.append(f"{name}: {share:.0%} of calls skipped by the gate")
        stale = data.get("stale_served", 0)
        if stale and data.get("calls", 0):
            share = stale / max(1, data["calls"])
            if share > 0.05:
                points["stale"] += min(15.0, share * 20)
                reasons.append(f"{name}: {share:.0%} of calls answered with stale data")
        lat_points, lat_reasons = _latency_points(client, name, data.get("latency_ms") or {}, store)
        points["latency"] += lat_points
        reasons.extend(lat_reasons)
    if total_calls:
        rate = total_failures / total_calls
        if rate > 0.01:
            points["error_rate"] = min(50.0, rate * 100)
            reasons.append(f"{rate:.1%} of calls failed in the last minute ({total_failures}/{total_calls})")
    points["latency"] = min(30.0, points["latency"])
    result: dict[str, Any] = {}
    if memory:
        points["memory"], mem_reasons, result["memory"] = _memory_points()
        reasons.extend(mem_reasons)
    score = max(0.0, min(100.0, 100.0 - sum(points.values())))
    if not reasons:
        reasons.append("all endpoints healthy" if total_calls else "no calls in the last minute")
    result.update(
        score=round(score, 1),
        status=level_of(score),
        reasons=reasons,
        components={k: round(v, 1) for k, v in points.items()},
    )
    return result


def overall_health(stats_by_client: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The process's health: the mean of client scores, memory counted once, reasons by client.

    ``stats_by_client`` (name -> ``stats()``) defaults to every client in the registry.
    """
    if stats_by_client is None:
        from hardened.telemetry import registry

        stats_by_client = {}
        for name, client in registry.clients().items():
            try:
                stats_by_client[name] = client.stats()
            except Exception:  # a client being torn down: leave it out of this reading
                continue
    mem_points, mem_reasons, mem_info = _memory_points()
    per_client: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for name, stats in stats_by_client.items():
        health = client_health(stats, memory=False)
        per_client[name] = health
        reasons.extend(f"{name}: {r}" for r in health["reasons"])
    if per_client:
        mean = sum(h["score"] for h in per_client.values()) / len(per_client)
    else:
        mean = 100.0
        reasons.append("no clients registered")
    score = max(0.0, min(100.0, mean - mem_points))
    reasons = mem_reasons + reasons
    return {
        "score": round(score, 1),
        "status": level_of(score),
        "reasons": reasons,
        "clients": per_client,
        "memory": {**mem_info, "points": round(mem_points, 1)},
    }
