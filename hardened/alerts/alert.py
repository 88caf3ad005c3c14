"""The alert record and its levels: what fired, how bad, about which exchange and endpoint.

An ``Alert`` is immutable and carries everything a channel needs to render it; ``key`` says which
alerts are "the same one" for cooldowns (``breaker_opened:binance_ticker``), and ``resolves`` names
the keys of alerts this one ends (a breaker closing ends its "opened" alert, which cancels any
escalation still waiting for it).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Alert", "AlertType", "Level"]


class Level(enum.IntEnum):
    """Alert levels as in the seed documents; ordered, so ``level >= Level.ERROR`` reads naturally."""

    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @classmethod
    def parse(cls, value: str | int | Level) -> Level:
        """``"error"``, ``"ERROR"``, ``40`` or ``Level.ERROR`` -> ``Level.ERROR``; else ValueError."""
        if isinstance(value, Level):
            return value
        names = ", ".join(level.name.lower() for level in cls)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"alert level must be a Level, a name or a number; got {type(value).__name__}")
        try:
            return cls(value) if isinstance(value, int) else cls[value.strip().upper()]
        except (KeyError, ValueError):
            raise ValueError(f"unknown alert level {value!r}; use one of {names}") from None


class AlertType(enum.StrEnum):
    """What an alert is about; one name across rules, channels, events and the status stream."""

    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"
    ERROR_RATE = "error_rate"
    ERROR_RATE_RECOVERED = "error_rate_recovered"
    HEALTH_LOW = "health_low"
    HEALTH_RECOVERED = "health_recovered"
    RATE_LIMIT_BAN = "rate_limit_ban"
    DATA_QUALITY = "data_quality"
    ANOMALY = "anomaly_detected"
    ORDER_STATE_UNKNOWN = "order_state_unknown"
    SUPPRESSED_SUMMARY = "suppressed_summary"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert that fired (or was suppressed); rendered by channels, published on the bus."""

    level: Level
    type: str
    key: str
    message: str
    exchange: str | None = None
    endpoint: str | None = None
    ts: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)
    resolves: tuple[str, ...] = ()  # keys of earlier alerts that this one ends

    def __post_init__(self) -> None:
        """Check every field now: a bad one would otherwise fail on the dispatcher's thread, and
        the alert be lost without a word to the caller. ``level`` may be given as a name."""
        object.__setattr__(self, "level", Level.parse(self.level))
        for name in ("type", "key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TypeError(f"Alert {name} must be a non-empty str, got {value!r}")
        if not isinstance(self.message, str):
            raise TypeError(f"Alert message must be a str, got {type(self.message).__name__}")
        for name in ("exchange", "endpoint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Alert {name} must be a str or None, got {type(value).__name__}")
        if isinstance(self.ts, bool) or not isinstance(self.ts, int | float):
            raise TypeError(
                f"Alert ts must be seconds since the epoch (a number), got {type(self.ts).__name__}"
            )
        if not math.isfinite(self.ts):
            raise ValueError(f"Alert ts must be a finite number of seconds, got {self.ts!r}")
        if not isinstance(self.details, Mapping):
            raise TypeError(f"Alert details must be a mapping, got {type(self.details).__name__}")
        if isinstance(self.resolves, str) or not all(isinstance(k, str) for k in self.resolves):
            raise TypeError("Alert resolves must be a tuple of alert keys (str), not a single str")
        object.__setattr__(self, "details", dict(self.details))
        object.__setattr__(self, "resolves", tuple(self.resolves))

    @property
    def title(self) -> str:
        """A one-line subject: ``[ERROR] breaker_opened binance ticker``."""
        where = " ".join(p for p in (self.exchange, self.endpoint) if p)
        return f"[{self.level.name}] {self.type}" + (f" {where}" if where else "")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (the webhook payload and the bus event carry these)."""
        return {
            "level": self.level.name,
            "type": str(self.type),
            "key": self.key,
            "message": self.message,
            "exchange": self.exchange,
            "endpoint": self.endpoint,
            "ts": self.ts,
            "details": dict(self.details),
        }
