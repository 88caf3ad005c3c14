"""The alert record and its levels: what fired, how bad, about which exchange and endpoint.

An ``Alert`` is immutable and carries everything a channel needs to render it; ``key`` says which
alerts are "the same one" for cooldowns (``breaker_opened:binance_ticker``), and ``resolves`` names
the keys of alerts this one ends (a breaker closing ends its "opened" alert, which cancels any
escalation still waiting for it).
"""

from __future__ import annotations

import enum
import time
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
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(level.name.lower() for level in cls)
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
