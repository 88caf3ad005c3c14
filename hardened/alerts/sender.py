"""One sender per channel: a bounded queue, a worker thread, retries with back-off (tenacity).

``offer(alert)`` never blocks: a full queue drops the alert and counts it. The worker delivers in
order; a failing delivery is retried with exponential back-off (or the channel's ``retry_after``)
up to ``attempts`` tries, then counted as failed. Each channel has its own thread, so a channel
that hangs on a timeout or backs off for a minute never delays another.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
import tenacity

from hardened.alerts.alert import Alert
from hardened.alerts.channels.base import Channel, DeliveryError
from hardened.telemetry.redact import redact_text

__all__ = ["ChannelSender"]

log = structlog.get_logger("hardened.alerts")


class _Wait:
    """tenacity wait strategy: exponential back-off, or longer when the channel said ``retry_after``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.exponential = tenacity.wait_exponential(multiplier=initial, max=maximum) if initial > 0 else None
        self.maximum = maximum

    def __call__(self, state: tenacity.RetryCallState) -> float:
        delay = self.exponential(state) if self.exponential is not None else 0.0
        error = state.outcome.exception() if state.outcome is not None else None
        after = getattr(error, "retry_after", None)
        if isinstance(after, int | float) and after > delay:
            delay = min(float(after), self.maximum)
        return delay


def _retryable(error: BaseException) -> bool:
    return not isinstance(error, DeliveryError) or error.retryable


class ChannelSender:
    """Delivers alerts to one channel from its own thread; counts sent, failed, dropped and retries.

    Args:
        channel: where alerts go.
        queue_size: alerts waiting before new ones are dropped (counted in ``dropped``).
        attempts: tries per alert, the first included.
        initial_delay, max_delay: back-off between tries, seconds.
        secrets: values masked in every log line this sender writes (with the channel's own).
        sleep: how to wait between tries (tests pass a fake; default waits on the stop event, so
            ``stop()`` cuts a back-off short).
    """

    def __init__(
        self,
        channel: Channel,
        *,
        queue_size: int = 1000,
        attempts: int = 4,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        secrets: tuple[str, ...] = (),
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.channel = channel
        self.queue_size = queue_size
        self._queue: deque[Alert] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._secrets = tuple(secrets) + channel.secrets()
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=_Wait(initial_delay, max_delay),
            retry=tenacity.retry_if_exception(_retryable),
            sleep=sleep or self._stopping.wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self.suppressed = 0  # held back by the throttle before reaching this channel
        self.cancelled = 0  # escalations resolved before their delay
        self.last_error: str | None = None
        self.busy = False

    @property
    def name(self) -> str:
        """The channel's name (``telegram``, ``webhook_2``)."""
        return self.channel.name

    @property
    def kind(self) -> str:
        """The channel's kind (``telegram``, ``webhook``)."""
        return self.channel.kind

    # -- producer side (the dispatcher thread) ----------------------------------------------------------

    def offer(self, alert: Alert) -> bool:
        """Queue ``alert``; False (and counted) if the queue is full. Never blocks."""
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            return False
        self._queue.append(alert)
        self._wake.set()
        return True

    @property
    def queued(self) -> int:
        """Alerts waiting for this channel."""
        return len(self._queue)

    # -- worker side -----------------------------------------------------------------------------------

    def start(self) -> ChannelSender:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"hardened-alerts-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.drain()
            if self._stopping.is_set():
                return

    def drain(self) -> int:
        """Deliver everything queued now, in this thread; returns how many were taken."""
        taken = 0
        while True:
            self.busy = True  # before the pop: an observer never sees "queue empty, not busy" mid-delivery
            try:
                alert = self._queue.popleft()
            except IndexError:
                self.busy = False
                return taken
            taken += 1
            self._deliver(alert)

    def deliver(self, alert: Alert) -> bool:
        """Send one alert with retries; True when it got through. Exceptions never escape."""
        self.busy = True
        try:
            return self._deliver(alert)
        finally:
            self.busy = False

    def _deliver(self, alert: Alert) -> bool:
        try:
            self._retrying(self.channel.send, alert)
        except Exception as exc:
            self.failed += 1
            self.last_error = redact_text(f"{type(exc).__name__}: {exc}", self._secrets)[:300]
            log.warning(
                "alert_delivery_failed",
                channel=self.name,
                alert_key=alert.key,
                error=self.last_error,
            )
            return False
        self.sent += 1
        return True

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome is not None else None
        self.last_error = redact_text(f"{type(error).__name__}: {error}", self._secrets)[:300]

    def signal_stop(self) -> None:
        """Ask the worker to finish what is queued and end (back-offs cut short); does not wait."""
        self._stopping.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after what is queued (back-offs cut short); the rest counts as dropped."""
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        left = len(self._queue)
        if left and (self._thread is None or not self._thread.is_alive()):
            self._queue.clear()
            self.dropped += left
        self.channel.close()

    def counters(self) -> dict[str, Any]:
        """What this channel did, for the status stream."""
        return {
            "kind": self.kind,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "suppressed": self.suppressed,
            "cancelled": self.cancelled,
            "retries": self.retries,
            "queued": len(self._queue),
            "last_error": self.last_error,
        }
