"""Escalation: which levels go to which channels, and after how long if the alert is still firing.

A rule says "alerts of ``min_level`` or worse go to ``channel`` after ``delay_s``". For one alert
and one channel kind the shortest delay of the matching rules wins, so
``telegram >= CRITICAL at once`` plus ``telegram >= ERROR after 120 s`` sends a critical alert at
once and an error only if it has not been resolved two minutes later (a breaker that closes within
the delay never wakes anyone). Pure and clock-injected, like the throttle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hardened.alerts.alert import Alert, Level

__all__ = ["DEFAULT_RULES", "EscalationPolicy", "EscalationRule", "PendingEscalations"]


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Alerts of ``min_level`` or worse go to channels of kind ``channel`` after ``delay_s``."""

    channel: str
    min_level: Level
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError(f"escalation delay_s must be >= 0, got {self.delay_s}")


DEFAULT_RULES: tuple[EscalationRule, ...] = (
    EscalationRule("log", Level.INFO, 0.0),
    EscalationRule("webhook", Level.WARNING, 0.0),
    EscalationRule("telegram", Level.CRITICAL, 0.0),
    EscalationRule("telegram", Level.ERROR, 120.0),
    EscalationRule("email", Level.CRITICAL, 0.0),
    EscalationRule("email", Level.ERROR, 300.0),
)


class EscalationPolicy:
    """The rules, resolved per alert into ``{channel kind: delay}``."""

    def __init__(self, rules: Iterable[EscalationRule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)

    def plan(self, alert: Alert, kinds: Iterable[str]) -> dict[str, float]:
        """Delay per channel kind (of those in ``kinds``) that ``alert`` goes to."""
        wanted = set(kinds)
        plan: dict[str, float] = {}
        for rule in self.rules:
            if rule.channel in wanted and alert.level >= rule.min_level:
                known = plan.get(rule.channel)
                plan[rule.channel] = rule.delay_s if known is None else min(known, rule.delay_s)
        return plan


class PendingEscalations:
    """Deliveries waiting for their delay; resolving the alert's key cancels them.

    One pending delivery per (key, channel kind): a repeat of a firing alert does not queue a second.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], tuple[float, Alert]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, alert: Alert, kind: str, due: float) -> bool:
        """Hold ``alert`` for channel ``kind`` until ``due``; False if one is already waiting."""
        slot = (alert.key, kind)
        if slot in self._pending:
            return False
        self._pending[slot] = (due, alert)
        return True

    def waiting(self, key: str, kind: str) -> bool:
        """True if a delivery of ``key`` to ``kind`` is waiting."""
        return (key, kind) in self._pending

    def resolve(self, key: str) -> list[tuple[Alert, str]]:
        """Cancel what waits for ``key``; returns the cancelled (alert, kind) pairs."""
        cancelled = [(alert, kind) for (k, kind), (_, alert) in self._pending.items() if k == key]
        for alert, kind in cancelled:
            del self._pending[(alert.key, kind)]
        return cancelled

    def due(self, now: float) -> list[tuple[Alert, str]]:
        """Remove and return what is due at ``now``, oldest first."""
        ready = sorted(
            ((due, alert, kind) for (_, kind), (due, alert) in self._pending.items() if due <= now),
            key=lambda item: item[0],
        )
        for _, alert, kind in ready:
            del self._pending[(alert.key, kind)]
        return [(alert, kind) for _, alert, kind in ready]

    def clear(self) -> list[tuple[Alert, str]]:
        """Remove and return everything still waiting (at shutdown)."""
        left = [(alert, kind) for (_, kind), (_, alert) in self._pending.items()]
        self._pending.clear()
        return left

    def next_due(self) -> float | None:
        """When the next held delivery is due."""
        return min((due for due, _ in self._pending.values()), default=None)
