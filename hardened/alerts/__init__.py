"""Alerts: the operator hears about a breaker opening at 3 a.m. once, on the right channel.

    import hardened
    hardened.start_alerts()      # log channel, plus e-mail/Telegram/webhooks configured in the environment
    ...
    hardened.stop_alerts()

Alerts come from the event bus (breaker transitions, error rates, bans, data quality, anomalies,
orders whose state is unknown) and from the health score; cooldowns per key, rate limits per level
and escalation rules decide what goes where, and a background sender per channel delivers with
retries. Modules: ``alert`` (the record), ``rules``, ``throttle``, ``escalation``, ``channels``,
``sender`` and ``dispatcher``; configuration in ``config`` (``AlertConfig``).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import Any

from hardened.alerts.alert import Alert, AlertType, Level
from hardened.alerts.channels import Channel
from hardened.alerts.config import AlertConfig
from hardened.alerts.dispatcher import AlertDispatcher
from hardened.alerts.escalation import EscalationRule
from hardened.alerts.throttle import RateLimit

__all__ = [
    "Alert",
    "AlertConfig",
    "AlertDispatcher",
    "AlertType",
    "Channel",
    "EscalationRule",
    "Level",
    "RateLimit",
    "current",
    "delivery_stats",
    "start_alerts",
    "stop_alerts",
]

_lock = threading.Lock()
_current: AlertDispatcher | None = None
_exit_hook = False
EXIT_TIMEOUT = 5.0  # seconds a normal exit may spend delivering what is still queued


def _stop_at_exit() -> None:
    """At a normal exit, deliver what is queued: the dispatcher's threads are daemons, and a bot
    that ends without ``stop_alerts()`` (a client started with ``alerts=True`` never calls it)
    would lose its last alerts, often the ones about why it ended."""
    try:
        stop_alerts(EXIT_TIMEOUT)
    except Exception:  # exiting anyway; a failing channel was already counted and logged
        return


def start_alerts(
    config: AlertConfig | None = None, *, channels: Sequence[Channel] | None = None, **settings: Any
) -> AlertDispatcher:
    """The process's alert dispatcher, started once; later calls return the running one.

    ``config`` (or ``AlertConfig(**settings)``, which also reads the environment and
    ``ALERT_CONFIG_FILE``) is used only by the call that starts it. Call ``stop_alerts()`` first
    to change the configuration. ``channels`` replaces the configured channels (any
    ``hardened.alerts.channels.Channel``, for a target of your own). At a normal exit without
    ``stop_alerts()``, what is queued is still delivered (within ``EXIT_TIMEOUT`` seconds).
    """
    global _current, _exit_hook
    with _lock:
        if _current is not None and _current.running:
            return _current
        if not _exit_hook:
            atexit.register(_stop_at_exit)
            _exit_hook = True
        if config is None:
            config = AlertConfig(**settings)
        elif settings:
            config = AlertConfig(**{**config.model_dump(), **settings})
        _current = AlertDispatcher(config, channels=channels).start()
        return _current


def stop_alerts(timeout: float = 5.0) -> None:
    """Stop the process's dispatcher (queued alerts are still delivered, within ``timeout``)."""
    global _current
    with _lock:
        dispatcher, _current = _current, None
    if dispatcher is not None:
        dispatcher.stop(timeout)


def current() -> AlertDispatcher | None:
    """The running process-wide dispatcher, if any."""
    dispatcher = _current
    return dispatcher if dispatcher is not None and dispatcher.running else None


def delivery_stats() -> dict[str, Any]:
    """The process dispatcher's counters for the status stream (``{"running": False}`` when off)."""
    dispatcher = current()
    return dispatcher.stats() if dispatcher is not None else {"running": False}
