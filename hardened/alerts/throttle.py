"""Cooldowns per alert key, rate limits per level, and one summary of what was held back.

Pure and clock-injected: ``admit(alert, now)`` says whether an alert may go out; anything it holds
back is grouped by key, and ``due_summary(now)`` returns one summary alert for the groups whose
window has ended (the key's cooldown, or the level's rate window). A thousand "breaker opened"
events for one breaker are one delivery and, at the end of the cooldown, one summary saying 999
more were held back.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from hardened.alerts.alert import Alert, AlertType, Level

__all__ = ["DEFAULT_RATE_LIMITS", "RateLimit", "Throttle", "Verdict"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` alerts of a level in any ``window_s`` seconds."""

    count: int
    window_s: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.window_s <= 0:
            raise ValueError(
                f"rate limit needs count >= 1 and window_s > 0, got {self.count}/{self.window_s}"
            )


# The seed plans' NotificationRateLimit: critical 5 per 5 minutes, error 10 per 15, warning 20 an hour.
DEFAULT_RATE_LIMITS: dict[Level, RateLimit] = {
    Level.CRITICAL: RateLimit(5, 300.0),
    Level.ERROR: RateLimit(10, 900.0),
    Level.WARNING: RateLimit(20, 3600.0),
}


class Verdict(enum.Enum):
    """What the throttle decided for one alert."""

    SEND = "send"
    COOLDOWN = "cooldown"  # the same key went out less than ``cooldown_s`` ago
    RATE_LIMITED = "rate_limited"  # its level's budget is spent for now


class _Group:
    """What was held back for one key since its last summary."""

    __slots__ = ("count", "first_ts", "flush_at", "last", "level", "reasons")

    def __init__(self, alert: Alert, flush_at: float) -> None:
        self.count = 0
        self.first_ts = alert.ts
        self.flush_at = flush_at
        self.last = alert
        self.level = alert.level
        self.reasons: dict[str, int] = {}


class Throttle:
    """Decides which alerts go out; groups the rest for a summary.

    Args:
        cooldown_s: least seconds between two alerts of the same key (the seeds' 5 minutes).
        rate_limits: per level, the most alerts in a window; a level absent is not limited.
        max_groups: distinct keys held for the summary; beyond it they are only counted.
    """

    def __init__(
        self,
        cooldown_s: float = 300.0,
        rate_limits: dict[Level, RateLimit] | None = None,
        max_groups: int = 1000,
    ) -> None:
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {cooldown_s}")
        self.cooldown_s = cooldown_s
        self.rate_limits = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.max_groups = max_groups
        self._last_sent: dict[str, float] = {}
        self._sent: dict[Level, deque[float]] = {
            level: deque(maxlen=limit.count) for level, limit in self.rate_limits.items()
        }
        self._groups: dict[str, _Group] = {}
        self._overflow = 0
        self._overflow_since: float | None = None
        self._held = 0  # a plain counter: read from other threads (the status stream) without iterating

    def admit(self, alert: Alert, now: float) -> Verdict:
        """SEND (and count it against its key and level), or why it is held back (and group it)."""
        last = self._last_sent.get(alert.key)
        if last is not None and now - last < self.cooldown_s:
            self._hold(alert, Verdict.COOLDOWN, last + self.cooldown_s, now)
            return Verdict.COOLDOWN
        limit = self.rate_limits.get(alert.level)
        sent = self._sent.get(alert.level)
        if limit is not None and sent is not None and len(sent) >= limit.count:
            oldest = sent[0]
            if now - oldest < limit.window_s:
                self._hold(alert, Verdict.RATE_LIMITED, oldest + limit.window_s, now)
                return Verdict.RATE_LIMITED
        self._last_sent[alert.key] = now
        if sent is not None:
            sent.append(now)
        if len(self._last_sent) > 4 * self.max_groups:
            self._forget(now)
        return Verdict.SEND

    def _hold(self, alert: Alert, verdict: Verdict, window_end: float, now: float) -> None:
        self._held += 1
        group = self._groups.get(alert.key)
        if group is None:
            if len(self._groups) >= self.max_groups:
                self._overflow += 1
                if self._overflow_since is None:
                    self._overflow_since = now
                return
            group = self._groups[alert.key] = _Group(alert, window_end)
        group.count += 1
        group.last = alert
        if alert.level > group.level:
            group.level = alert.level
        group.reasons[verdict.value] = group.reasons.get(verdict.value, 0) + 1

    def _forget(self, now: float) -> None:
        """Drop keys whose cooldown has long ended (bounds memory on a bot with many keys)."""
        self._last_sent = {k: t for k, t in self._last_sent.items() if now - t < self.cooldown_s}

    @property
    def held(self) -> int:
        """Alerts held back and not yet summarised."""
        return self._held

    def next_due(self) -> float | None:
        """When the next summary is due (None when nothing is held)."""
        due = [g.flush_at for g in self._groups.values()]
        if self._overflow_since is not None:
            due.append(self._overflow_since + self.cooldown_s)
        return min(due) if due else None

    def due_summary(self, now: float) -> Alert | None:
        """One summary alert for every group whose window has ended, or None."""
        due = [key for key, g in self._groups.items() if g.flush_at <= now]
        overflow = (
            self._overflow
            if self._overflow_since is not None and (now >= self._overflow_since + self.cooldown_s)
            else 0
        )
        if not due and not overflow:
            return None
        groups = [self._groups.pop(key) for key in due]
        self._held -= sum(group.count for group in groups) + overflow
        lines, details, total = [], [], 0
        level = Level.INFO
        for key, group in zip(due, groups, strict=True):
            total += group.count
            level = max(level, group.level)
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(group.reasons.items()))
            lines.append(
                f"{group.count} x {group.last.type} ({key}) between {_hms(group.first_ts)} and "
                f"{_hms(group.last.ts)} UTC [{why}]; last: {group.last.message}"
            )
            details.append(
                {
                    "key": key,
                    "type": str(group.last.type),
                    "level": group.level.name,
                    "count": group.count,
                    "first_ts": group.first_ts,
                    "last_ts": group.last.ts,
                    "reasons": dict(group.reasons),
                }
            )
        if overflow:
            total += overflow
            lines.append(f"{overflow} more alerts of other keys (too many distinct keys to list)")
            self._overflow = 0
            self._overflow_since = None
        return Alert(
            level,
            AlertType.SUPPRESSED_SUMMARY,
            "suppressed_summary",
            f"{total} alert(s) held back by cooldowns and rate limits:\n" + "\n".join(lines),
            groups[0].last.exchange if len(groups) == 1 else None,
            groups[0].last.endpoint if len(groups) == 1 else None,
            now,
            {"suppressed": total, "groups": details},
        )


def _hms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")
