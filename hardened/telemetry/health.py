"""Health score 0-100 of a client, with the reasons that cost it points.

Levels as in the seed documents: excellent (>= 90), good (75-89), fair (60-74), poor (40-59),
critical (< 40). Built from the last minute's error rate, open or half-open breakers, data
quality and gate skips, so it says how the connection is now rather than since start-up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["client_health", "level_of"]

LEVELS = ((90.0, "excellent"), (75.0, "good"), (60.0, "fair"), (40.0, "poor"), (0.0, "critical"))


def level_of(score: float) -> str:
    """The status word of a score."""
    for floor, name in LEVELS:
        if score >= floor:
            return name
    return "critical"


def client_health(stats: dict[str, Any]) -> dict[str, Any]:
    """Score one client's ``stats()``; each deduction comes with a reason naming the endpoint."""
    score = 100.0
    reasons: list[str] = []
    endpoints = stats.get("endpoints", {})
    total_calls = total_failures = 0
    for name, data in endpoints.items():
        recent = data.get("recent", {})
        calls, failures = recent.get("calls", 0), recent.get("failures", 0)
        total_calls += calls
        total_failures += failures
        state = data.get("breaker", {}).get("state", "closed")
        if state == "open":
            score -= 25.0
            reasons.append(f"{name}: breaker open")
        elif state == "half_open":
            score -= 10.0
            reasons.append(f"{name}: breaker half-open, probing")
        quality = data.get("last_quality")
        if quality is not None and quality < 80:
            score -= min(15.0, (80 - quality) / 4)
            reasons.append(f"{name}: last data quality {quality:.0f}/100")
        skips = data.get("skips", 0)
        if skips and data.get("calls", 0):
            share = skips / max(1, data["calls"])
            if share > 0.05:
                score -= min(10.0, share * 20)
                reasons.append(f"{name}: {share:.0%} of calls skipped by the gate")
    if total_calls:
        rate = total_failures / total_calls
        if rate > 0.01:
            score -= min(50.0, rate * 100)
            reasons.append(f"{rate:.1%} of calls failed in the last minute ({total_failures}/{total_calls})")
    score = max(0.0, min(100.0, score))
    if not reasons:
        reasons.append("all endpoints healthy" if total_calls else "no calls in the last minute")
    return {"score": round(score, 1), "status": level_of(score), "reasons": reasons}
