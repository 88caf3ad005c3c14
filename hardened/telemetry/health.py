"""Health score 0-100 of a client and of the whole process, with the reasons that cost it points.

Levels as in the seed documents: excellent (>= 90), good (75-89), fair (60-74), poor (40-59),
critical (< 40). The score is 100 minus the points each component deducts, each with a reason
naming the endpoint. "Now" is the last minute (each endpoint's ``recent`` window); ``N`` is the
client's calls in it, ``n_e`` an endpoint's, ``E`` the number of endpoints listed:

- error rate (up to 50): ``min(50, 100 * F / N) * min(1, N / min_calls)`` when more than 1 % of
  the last minute's ``N`` calls failed (``F``); with fewer than ``min_calls`` (20) calls the rate
  is uncertain and counts only in proportion, so three failures of a quiet client are not an outage;
- breakers (up to 50 together): each breaker not closed costs
  ``50 * share * age * (1 if open else 0.5)``, where ``share = (n_e + 1) / (N + E)`` is the part of
  the traffic it carries (an idle endpoint weighs little, never nothing) and
  ``age = 0.3 + 0.7 * min(1, tripped_for / breaker_sustained_s)``: a breaker that just opened is
  the pipeline doing its job, one open for minutes (120 s) is an outage. A few breakers open on
  light endpoints at ~3 % failing calls cost a few points, not the whole score;
- latency (up to 30): compares only answers that reached the exchange (``exchange_latency_ms``;
  cache hits and refused calls would put the p50 at microseconds). An endpoint's p50 against its
  own baseline (a time-weighted EWMA of the p50 seen in earlier readings, so a slow exchange is
  not "unhealthy" for being slow, only for getting slower) costs up to 15; a p95 over 10x the p50
  (erratic answers) 5; differences under ``latency_floor_ms`` (50 ms) never count;
- skips: share of calls the gate skipped (up to 10 an endpoint);
- stale: share of calls answered with stale cached data (up to 15 an endpoint);
- data quality: the last quality score under 80 (up to 15 an endpoint);
- process memory: resident set size (psutil) against ``memory_limit_mb``.

``overall_health()`` is the mean of the registered clients' scores less the memory points (each
client's reasons prefixed with its name).

``/health`` must not flap under a load balancer, so its 200/503 decision (``HealthGate``) reads a
smoothed score, an EWMA over time (``smoothing_tau_s``, 15 s), with hysteresis: it turns unhealthy
when the smoothed score falls below ``unhealthy_below`` (50) and healthy again only once it is back
at ``healthy_above`` (65) or more.

Latency baselines are kept per client name and endpoint; they are dropped when the client closes
or is garbage collected (``hardened.telemetry.registry`` tells this module), so short-lived
clients do not leak them.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import psutil

from hardened.telemetry import registry

__all__ = [
    "LEVELS",
    "HealthGate",
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


DEFAULT_MEMORY_LIMIT_MB = 1024.0  # the seed's "keep under 1GB"


def _env_memory_limit_mb() -> float:
    """``HARDENED_MEMORY_LIMIT_MB`` when it is a positive number of MiB, else 1024 with a warning.

    Read at import: a bad value must neither break ``import hardened`` nor reach the score (0 made
    every /health and /metrics reading divide by zero, a negative one switched the check off).
    """
    text = os.environ.get("HARDENED_MEMORY_LIMIT_MB")
    if text is None:
        return DEFAULT_MEMORY_LIMIT_MB
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    warnings.warn(
        f"HARDENED_MEMORY_LIMIT_MB={text!r} is not a positive number of MiB; "
        f"using {DEFAULT_MEMORY_LIMIT_MB:g}",
        RuntimeWarning,
        stacklevel=2,
    )
    return DEFAULT_MEMORY_LIMIT_MB


@dataclass
class HealthPolicy:
    """The thresholds of the score; change them with ``configure_health(...)``.

    ``memory_limit_mb`` defaults to ``HARDENED_MEMORY_LIMIT_MB`` or 1024 (the seed's "keep under 1GB").
    """

    memory_limit_mb: float = field(default_factory=_env_memory_limit_mb)
    latency_floor_ms: float = 50.0  # latency differences below this never cost points
    latency_ratio: float = 2.0  # p50 at this multiple of its baseline starts to cost points
    tail_ratio: float = 10.0  # p95 at this multiple of p50 counts as erratic
    baseline_tau_s: float = 600.0  # time constant of the latency baseline (EWMA), seconds
    min_calls: float = 20.0  # calls in the window below which the error rate counts only in part
    breaker_sustained_s: float = 120.0  # a breaker not closed this long counts in full
    smoothing_tau_s: float = 15.0  # time constant of the score /health decides on (EWMA), seconds
    unhealthy_below: float = 50.0  # /health turns 503 when the smoothed score falls below this...
    healthy_above: float = 65.0  # ...and back to 200 only once it is at least this


policy = HealthPolicy()


def configure_health(**changes: Any) -> HealthPolicy:
    """Change thresholds of the process-wide ``policy`` (``memory_limit_mb=2048``, ...)."""
    known = {f.name for f in fields(HealthPolicy)}
    for name, value in changes.items():
        if name not in known:
            raise ValueError(f"unknown health setting {name!r}; known: {', '.join(sorted(known))}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value > 0)
        ):
            raise ValueError(f"health setting {name} must be a positive number, got {value!r}")
    merged = {**vars(policy), **{k: float(v) for k, v in changes.items()}}
    if merged["healthy_above"] < merged["unhealthy_below"]:
        raise ValueError(
            f"health setting healthy_above ({merged['healthy_above']}) must be at least "
            f"unhealthy_below ({merged['unhealthy_below']}), or /health would flap"
        )
    for name, value in changes.items():
        setattr(policy, name, float(value))
    return policy


class HealthGate:
    """The 200/503 decision of ``/health``: the score smoothed over time, with hysteresis.

    ``observe(score)`` folds a reading into an EWMA weighted by the time since the previous one
    (``policy.smoothing_tau_s``) and returns whether the process counts as healthy: it turns
    unhealthy below ``policy.unhealthy_below`` and healthy again at ``policy.healthy_above``.
    ``clock`` is injectable for tests.
    """

    __slots__ = ("_clock", "_lock", "_seen", "healthy", "smoothed")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: float | None = None
        self.smoothed: float | None = None
        self.healthy = True

    def observe(self, score: float) -> bool:
        """Fold ``score`` in; returns the decision (True: answer 200)."""
        now = self._clock()
        with self._lock:
            if self.smoothed is None or self._seen is None:
                self.smoothed = score
            else:
                alpha = 1.0 - math.exp(-max(0.0, now - self._seen) / policy.smoothing_tau_s)
                self.smoothed += alpha * (score - self.smoothed)
            self._seen = now
            if self.healthy and self.smoothed < policy.unhealthy_below:
                self.healthy = False
            elif not self.healthy and self.smoothed >= policy.healthy_above:
                self.healthy = True
            return self.healthy

    def report(self, health: dict[str, Any]) -> dict[str, Any]:
        """``health`` (an ``overall_health()`` report) with this gate's reading of it added."""
        healthy = self.observe(float(health["score"]))
        assert self.smoothed is not None
        return {**health, "healthy": healthy, "smoothed_score": round(self.smoothed, 1)}


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

    def forget(self, client: str) -> None:
        """Drop every baseline of ``client`` (it closed, or its name is about to be reused)."""
        with self._lock:
            for key in [key for key in self._values if key[0] == client]:
                del self._values[key]

    def clear(self) -> None:
        """Forget every baseline."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)


baselines = LatencyBaselines()
registry.on_forget(baselines.forget)
_process: psutil.Process | None = None


def process_memory_mb() -> float:
    """Resident set size of this process in MiB.

    The ``psutil.Process`` is cached, but per pid: a worker forked after a first reading would
    otherwise go on reporting its parent's memory in its health and ``/metrics``.
    """
    global _process
    if _process is None or _process.pid != os.getpid():
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
            reasons.append(
                f"{name}: p95 latency {p95:.0f} ms is {tail:.0f}x the p50 of {p50:.0f} ms (erratic answers)"
            )
    return min(15.0, points), reasons


def _breaker_points(name: str, breaker: Mapping[str, Any], share: float) -> tuple[float, str | None]:
    """Points for one breaker: by the share of traffic it carries and how long it has not been closed."""
    state = breaker.get("state", "closed")
    if state not in ("open", "half_open"):
        return 0.0, None
    tripped_for = float(breaker.get("tripped_for") or 0.0)
    age = 0.3 + 0.7 * min(1.0, tripped_for / policy.breaker_sustained_s)
    weight = 1.0 if state == "open" else 0.5
    points = 50.0 * share * age * weight
    what = "open" if state == "open" else "half-open, probing"
    return points, f"{name}: breaker {what} for {tripped_for:.0f} s ({share:.0%} of traffic)"


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
    """Score one client's ``stats()``: ``{score, status, reasons, components}`` (formula above).

    ``components`` holds the points each component deducted. ``memory=False`` leaves the
    process-wide memory component out; ``store`` replaces the process-wide latency baselines.
    """
    store = baselines if store is None else store
    client = str(stats.get("client") or stats.get("exchange") or "")
    points = dict.fromkeys(COMPONENTS, 0.0)
    reasons: list[str] = []
    endpoints: dict[str, Any] = stats.get("endpoints", {})
    recent_calls = {name: int((data.get("recent") or {}).get("calls", 0)) for name, data in endpoints.items()}
    total_calls = sum(recent_calls.values())
    total_failures = sum(int((data.get("recent") or {}).get("failures", 0)) for data in endpoints.values())
    for name, data in endpoints.items():
        share = (recent_calls[name] + 1) / (total_calls + len(endpoints))
        breaker_points, breaker_reason = _breaker_points(name, data.get("breaker") or {}, share)
        if breaker_reason is not None:
            points["breakers"] += breaker_points
            reasons.append(breaker_reason)
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
        latency = data.get("exchange_latency_ms") or data.get("latency_ms") or {}
        lat_points, lat_reasons = _latency_points(client, name, latency, store)
        points["latency"] += lat_points
        reasons.extend(lat_reasons)
    if total_calls:
        rate = total_failures / total_calls
        if rate > 0.01:
            confidence = min(1.0, total_calls / policy.min_calls)
            points["error_rate"] = min(50.0, rate * 100) * confidence
            reasons.append(f"{rate:.1%} of calls failed in the last minute ({total_failures}/{total_calls})")
    points["breakers"] = min(50.0, points["breakers"])
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
