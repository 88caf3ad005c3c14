"""Rules: turn bus events and health readings into alerts. Pure: every decision takes ``now``.

Event kinds read (``hardened.telemetry.events``): ``breaker_transition``, ``call_failed`` (counted
in a sliding window per exchange x endpoint for the error-rate rule), ``quality_failed``,
``anomaly_detected``, ``rate_limit_ban`` and ``order_state_unknown``. Health is read on the
dispatcher's schedule (``on_health``), never per call. Each rule fires on the way in (a breaker
opens, a rate crosses its threshold, a score drops below its floor) and says when the condition
ended (``Alert.resolves``), so an escalation still waiting for it is cancelled.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hardened.alerts.alert import Alert, AlertType, Level

__all__ = ["EVENT_KINDS", "AlertRules", "ErrorRateRule", "HealthRule"]

# The bus events the rules read; the dispatcher's subscriber drops everything else at once.
EVENT_KINDS = frozenset(
    {
        "breaker_transition",
        "call_failed",
        "quality_failed",
        "anomaly_detected",
        "rate_limit_ban",
        "order_state_unknown",
    }
)
# Our own fail-fast refusals: each has its own alert (breaker open, ban), so they are not "errors".
_REFUSALS = frozenset({"CircuitOpenError", "RateLimitBackoff", "RequestSkipped"})


@dataclass(frozen=True, slots=True)
class ErrorRateRule:
    """Fire when an endpoint fails ``per_minute`` times in 60 s, or ``count`` times in ``window_s``.

    The seed documents' thresholds: more than 5 errors a minute, or 10 within 5 minutes.
    """

    per_minute: int = 5
    count: int = 10
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.count < 1 or self.window_s <= 0:
            raise ValueError("error rate rule needs per_minute >= 1, count >= 1 and window_s > 0")


@dataclass(frozen=True, slots=True)
class HealthRule:
    """Warn below ``min_score``, raise to ERROR below ``critical_score``; clear ``hysteresis`` above."""

    min_score: float = 60.0
    critical_score: float = 40.0
    hysteresis: float = 5.0


class _Window:
    """The last failures of one endpoint: enough timestamps to decide both thresholds, no more."""

    __slots__ = ("firing", "times")

    def __init__(self, keep: int) -> None:
        self.times: deque[float] = deque(maxlen=keep)
        self.firing = False


class AlertRules:
    """Stateful but pure: ``on_event``, ``on_health`` and ``tick`` return the alerts to consider."""

    def __init__(self, error_rate: ErrorRateRule | None = None, health: HealthRule | None = None) -> None:
        self.error_rate = error_rate or ErrorRateRule()
        self.health = health or HealthRule()
        self._keep = max(self.error_rate.per_minute, self.error_rate.count)
        self._windows: dict[tuple[str, str], _Window] = {}
        self._health_level: dict[str, Level] = {}

    # -- events --------------------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any], now: float) -> list[Alert]:
        """The alerts one bus event raises (often none)."""
        kind = event.get("kind")
        if kind == "breaker_transition":
            return self._breaker(event, now)
        if kind == "call_failed":
            return self._failure(event, now)
        if kind == "quality_failed":
            exchange, endpoint = event.get("exchange"), event.get("endpoint")
            return [
                Alert(
                    Level.WARNING,
                    AlertType.DATA_QUALITY,
                    f"data_quality:{exchange}:{endpoint}",
                    f"{exchange} {endpoint}: data quality {event.get('score')}/100 below the minimum "
                    f"(policy {event.get('policy')}): {event.get('report', '')}",
                    exchange,
                    endpoint,
                    now,
                    {"score": event.get("score"), "policy": event.get("policy")},
                )
            ]
        if kind == "anomaly_detected":
            exchange, endpoint, metric = event.get("exchange"), event.get("endpoint"), event.get("metric")
            text = event.get("message") or f"{metric} looks anomalous (score {event.get('score')})"
            return [
                Alert(
                    Level.WARNING,
                    AlertType.ANOMALY,
                    f"anomaly:{exchange}:{endpoint}:{metric}",
                    f"{exchange} {endpoint}: {text}",
                    exchange,
                    endpoint,
                    now,
                    {"metric": metric, "score": event.get("score")},
                )
            ]
        if kind == "rate_limit_ban":
            return [self._ban(event, now)]
        if kind == "order_state_unknown":
            # a create names the order by its client order id; a cancel by the exchange's order id
            exchange, cid, order_id = (
                event.get("exchange"),
                event.get("client_order_id"),
                event.get("order_id"),
            )
            oid = cid if cid is not None else order_id
            by = "client order id" if cid is not None else "order id"
            return [
                Alert(
                    Level.CRITICAL,
                    AlertType.ORDER_STATE_UNKNOWN,
                    f"order_state_unknown:{exchange}:{oid}",
                    f"{exchange}: state of order {oid} ({event.get('symbol')}) unknown after "
                    f"{event.get('operation', 'create_order')}: {event.get('reason', '')}; reconcile by its "
                    f"{by}",
                    exchange,
                    event.get("endpoint"),
                    now,
                    {"client_order_id": cid, "order_id": order_id, "symbol": event.get("symbol")},
                )
            ]
        return []

    def _breaker(self, event: Mapping[str, Any], now: float) -> list[Alert]:
        breaker, new, old = event.get("breaker"), event.get("new"), event.get("old")
        exchange, endpoint = event.get("exchange"), event.get("endpoint")
        if new == "open":
            return [
                Alert(
                    Level.ERROR,
                    AlertType.BREAKER_OPENED,
                    f"breaker_opened:{breaker}",
                    f"breaker {breaker} opened (was {old}): calls to {exchange} {endpoint} fail fast "
                    "until a probe succeeds",
                    exchange,
                    endpoint,
                    now,
                    {"breaker": breaker, "old": old, "new": new},
                )
            ]
        if new == "closed" and old in ("open", "half_open"):
            return [
                Alert(
                    Level.INFO,
                    AlertType.BREAKER_CLOSED,
                    f"breaker_closed:{breaker}",
                    f"breaker {breaker} closed again: {exchange} {endpoint} answers",
                    exchange,
                    endpoint,
                    now,
                    {"breaker": breaker, "old": old, "new": new},
                    resolves=(f"breaker_opened:{breaker}",),
                )
            ]
        return []

    def _ban(self, event: Mapping[str, Any], now: float) -> Alert:
        exchange, endpoint = event.get("exchange"), event.get("endpoint")
        banned = bool(event.get("banned"))
        retry_in = event.get("retry_in")
        wait = f"; calls allowed again in {retry_in:.0f} s" if isinstance(retry_in, int | float) else ""
        if banned:
            return Alert(
                Level.ERROR,
                AlertType.RATE_LIMIT_BAN,
                f"rate_limit_ban:{exchange}",
                f"{exchange}: banned by the exchange (HTTP {event.get('status', 418)}){wait}",
                exchange,
                endpoint,
                now,
                {"banned": True, "retry_in": retry_in, "status": event.get("status")},
            )
        return Alert(
            Level.WARNING,
            AlertType.RATE_LIMIT_BAN,
            f"rate_limit_exhausted:{exchange}:{endpoint}",
            f"{exchange} {endpoint}: rate-limit budget exhausted, calls refused{wait}",
            exchange,
            endpoint,
            now,
            {"banned": False, "retry_in": retry_in},
        )

    # -- error rate ------------------------------------------------------------------------------------

    def _failure(self, event: Mapping[str, Any], now: float) -> list[Alert]:
        if event.get("error") in _REFUSALS:
            return []
        exchange, endpoint = str(event.get("exchange")), str(event.get("endpoint"))
        window = self._windows.get((exchange, endpoint))
        if window is None:
            window = self._windows[(exchange, endpoint)] = _Window(self._keep)
        window.times.append(now)
        if window.firing:
            return []
        per_minute, in_window = self._counts(window, now)
        rule = self.error_rate
        if per_minute < rule.per_minute and in_window < rule.count:
            return []
        window.firing = True
        return [
            Alert(
                Level.WARNING,
                AlertType.ERROR_RATE,
                f"error_rate:{exchange}:{endpoint}",
                f"{exchange} {endpoint}: {per_minute} errors in the last minute, {in_window} in "
                f"{rule.window_s:.0f} s (thresholds {rule.per_minute}/min, {rule.count} per window); "
                f"last: {event.get('error')}: {event.get('message', '')}"[:600],
                exchange,
                endpoint,
                now,
                {"per_minute": per_minute, "in_window": in_window, "error": event.get("error")},
            )
        ]

    def _counts(self, window: _Window, now: float) -> tuple[int, int]:
        minute = sum(1 for t in window.times if now - t < 60.0)
        in_window = sum(1 for t in window.times if now - t < self.error_rate.window_s)
        return minute, in_window

    def tick(self, now: float) -> list[Alert]:
        """Error rates that fell back under both thresholds: a recovery alert that resolves each."""
        alerts: list[Alert] = []
        rule = self.error_rate
        for (exchange, endpoint), window in list(self._windows.items()):
            per_minute, in_window = self._counts(window, now)
            if window.firing and per_minute < rule.per_minute and in_window < rule.count:
                window.firing = False
                key = f"error_rate:{exchange}:{endpoint}"
                alerts.append(
                    Alert(
                        Level.INFO,
                        AlertType.ERROR_RATE_RECOVERED,
                        f"error_rate_recovered:{exchange}:{endpoint}",
                        f"{exchange} {endpoint}: error rate back under its thresholds",
                        exchange,
                        endpoint,
                        now,
                        {"per_minute": per_minute, "in_window": in_window},
                        resolves=(key,),
                    )
                )
            if not window.firing and in_window == 0:
                del self._windows[(exchange, endpoint)]
        return alerts

    # -- health ------------------------------------------------------------------------------------------

    def on_health(self, health: Mapping[str, Any], now: float) -> list[Alert]:
        """Alerts from ``overall_health()``: per client below the floor, and when it recovers."""
        clients = health.get("clients") or {}
        alerts: list[Alert] = []
        rule = self.health
        for name, reading in clients.items():
            score = reading.get("score")
            if not isinstance(score, int | float) or math.isnan(score):
                continue
            was = self._health_level.get(name)
            if score < rule.critical_score:
                level: Level | None = Level.ERROR
            elif score < rule.min_score:
                level = Level.WARNING
            elif was is not None and score < rule.min_score + rule.hysteresis:
                level = was  # inside the hysteresis band: unchanged
            else:
                level = None
            if level == was:
                continue
            if level is None:
                del self._health_level[name]
                alerts.append(
                    Alert(
                        Level.INFO,
                        AlertType.HEALTH_RECOVERED,
                        f"health_recovered:{name}",
                        f"{name}: health back to {score:.0f}/100 ({reading.get('status')})",
                        name.split("#")[0],
                        None,
                        now,
                        {"client": name, "score": score},
                        resolves=(f"health_low:{name}:warning", f"health_low:{name}:error"),
                    )
                )
                continue
            self._health_level[name] = level
            reasons = "; ".join(str(r) for r in (reading.get("reasons") or [])[:3])
            floor = rule.critical_score if level is Level.ERROR else rule.min_score
            alerts.append(
                Alert(
                    level,
                    AlertType.HEALTH_LOW,
                    f"health_low:{name}:{level.name.lower()}",
                    f"{name}: health {score:.0f}/100 ({reading.get('status')}) below {floor:.0f}: {reasons}",
                    name.split("#")[0],
                    None,
                    now,
                    {"client": name, "score": score, "status": reading.get("status")},
                    # the other level's alert is over: its pending escalations are cancelled
                    resolves=(f"health_low:{name}:{'warning' if level is Level.ERROR else 'error'}",),
                )
            )
        return alerts
