"""The structured-log channel: one structlog event per alert, at the alert's level."""

from __future__ import annotations

from typing import Any

import structlog

from hardened.alerts.alert import Alert, Level
from hardened.alerts.channels.base import Channel

__all__ = ["LogChannel"]

_METHOD = {Level.INFO: "info", Level.WARNING: "warning", Level.ERROR: "error", Level.CRITICAL: "critical"}


class LogChannel(Channel):
    """Writes ``alert`` events to the ``hardened.alerts`` structlog logger (redaction runs there too)."""

    kind = "log"

    def __init__(self, name: str | None = None, logger: Any = None) -> None:
        super().__init__(name)
        self.log = logger if logger is not None else structlog.get_logger("hardened.alerts")

    def send(self, alert: Alert) -> None:
        getattr(self.log, _METHOD[alert.level])(
            "alert",
            alert_level=alert.level.name,
            alert_type=str(alert.type),
            key=alert.key,
            message=alert.message,
            exchange=alert.exchange,
            endpoint=alert.endpoint,
        )
