"""The in-process event bus: breaker transitions, retries, alerts and quality failures fan out here.

Events are plain dicts (``{"kind": "breaker_transition", "ts": ..., ...}``) so that the status
server, the tracker and tests can consume them without importing the producer. Publishing with no
subscriber costs one attribute read: the bus is off the hot path of a successful call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out of events to subscribers; a failing subscriber never breaks the producer."""

    __slots__ = ("_lock", "_subscribers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, fn)
        return lambda: self.unsubscribe(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        """Remove ``fn`` if present."""
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not fn)

    def publish(self, kind: str, **fields: Any) -> None:
        """Deliver ``{"kind": kind, "ts": now, **fields}`` to every subscriber, in order."""
        subscribers = self._subscribers  # copy-on-write tuple: no lock on the read
        if not subscribers:
            return
        event: Event = {"kind": kind, "ts": time.time(), **fields}
        for fn in subscribers:
            try:
                fn(event)
            except Exception:  # a broken consumer must never break a trading call
                continue


bus = EventBus()
