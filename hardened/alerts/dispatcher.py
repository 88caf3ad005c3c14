"""The alert dispatcher: bus events in, decisions in one background thread, deliveries out.

The bus subscriber runs in the caller's thread and only appends the event to a bounded inbox
(full: dropped and counted), so a trading call never waits for an alert. The dispatcher thread
turns events into alerts (``rules``), applies cooldowns and rate limits (``throttle``), publishes
each alert that fires on the bus as kind ``alert``, and hands it to the channels at once or after
its escalation delay (``escalation``); each channel's ``ChannelSender`` delivers from its own
thread with retries. Health is read on this thread's schedule, never per call.

Every decision (cooldowns, rate windows, error-rate windows, escalation delays) reads ``clock()``,
monotonic by default, so a wall clock stepped by NTP delays or hurries none of them; an alert's
``ts`` reads ``wall_clock()``. With ``threaded=False`` nothing runs by itself and a test drives it
with ``step()`` and a fake clock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from hardened.alerts.alert import Alert
from hardened.alerts.channels import Channel, build_channels
from hardened.alerts.config import AlertConfig
from hardened.alerts.escalation import EscalationPolicy, PendingEscalations
from hardened.alerts.rules import EVENT_KINDS, AlertRules
from hardened.alerts.sender import ChannelSender
from hardened.alerts.throttle import Throttle, Verdict
from hardened.telemetry.events import Event, EventBus, bus
from hardened.telemetry.redact import redact_text, redact_value

__all__ = ["AlertDispatcher"]

log = structlog.get_logger("hardened.alerts")
HealthSource = Callable[[], Mapping[str, Any]]


def _stamped(alert: Alert, wall: float) -> Alert:
    """``alert`` with ``ts`` set to the wall-clock time ``wall``."""
    return alert if alert.ts == wall else dataclasses.replace(alert, ts=wall)


def _default_health() -> Mapping[str, Any]:
    from hardened.telemetry.health import overall_health

    return overall_health()


class AlertDispatcher:
    """Watches the event bus and health, and delivers alerts to channels without blocking anyone.

    Args:
        config: an ``AlertConfig`` (default: read from the environment and ``ALERT_CONFIG_FILE``).
        channels: channels to use instead of those ``config`` describes.
        clock: seconds for every decision (``time.monotonic``); tests pass a fake.
        wall_clock: seconds since the epoch for an alert's ``ts`` (``time.time``; ``clock`` when
            only ``clock`` is given, so one fake drives both).
        event_bus: the bus to watch and publish ``alert`` events on.
        health_source: returns ``overall_health()``-shaped readings.
        threaded: run the dispatcher and the senders in background threads (False: call ``step()``).
        sleep: how senders wait between retries (tests pass a no-op).
    """

    def __init__(
        self,
        config: AlertConfig | None = None,
        *,
        channels: Sequence[Channel] | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        event_bus: EventBus | None = None,
        health_source: HealthSource | None = None,
        threaded: bool = True,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.config = config if config is not None else AlertConfig()
        cfg = self.config
        self.clock = clock if clock is not None else time.monotonic
        self.wall_clock = wall_clock if wall_clock is not None else clock or time.time
        self.threaded = threaded
        self._bus = event_bus or bus
        self._health_source = health_source or _default_health
        self._secrets = cfg.secrets()
        self.rules = AlertRules(cfg.error_rate_rule(), cfg.health_rule())
        self.throttle = Throttle(cfg.alert_cooldown, cfg.rate_limit_rules())
        self.escalation = EscalationPolicy(cfg.escalation_rules())
        self.pending = PendingEscalations()
        self._escalated_at: dict[tuple[str, str], float] = {}  # (key, kind) -> last delayed delivery
        chosen = list(channels) if channels is not None else build_channels(cfg)
        for channel in chosen:
            self._secrets += channel.secrets()
        self.senders = [
            ChannelSender(
                channel,
                queue_size=cfg.queue_size,
                attempts=cfg.delivery_attempts,
                initial_delay=cfg.retry_initial_delay,
                max_delay=cfg.retry_max_delay,
                secrets=self._secrets,
                sleep=sleep,
            )
            for channel in chosen
        ]
        self._by_kind: dict[str, list[ChannelSender]] = {}
        for sender in self.senders:
            self._by_kind.setdefault(sender.kind, []).append(sender)
        self._inbox: deque[Event | Alert] = deque()
        self._inbox_size = cfg.inbox_size
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._next_health = 0.0
        self._stepping = False
        self._drop_lock = threading.Lock()
        self.counters = {
            "events": 0,  # bus events taken in
            "inbox_dropped": 0,  # events refused: the inbox was full, or alerts fired after stop()
            "fired": 0,  # alerts that passed the throttle
            "suppressed": 0,  # alerts held back by cooldowns and rate limits
            "summaries": 0,  # summaries of held-back alerts sent
            "cancelled": 0,  # delayed escalations resolved before their time
            "errors": 0,  # internal errors of the dispatcher loop (logged)
        }
        self._recent: deque[dict[str, Any]] = deque(maxlen=50)
        self._recent_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._unsubscribe is not None

    def start(self) -> AlertDispatcher:
        """Subscribe to the bus and (when threaded) start the dispatcher and sender threads."""
        if self.running:
            return self
        if self._stopping.is_set():
            raise RuntimeError("a stopped AlertDispatcher cannot start again: make a new one")
        self._next_health = self.clock() + self.config.health_interval
        if self.threaded:
            for sender in self.senders:
                sender.start()
            self._thread = threading.Thread(target=self._run, name="hardened-alerts", daemon=True)
            self._thread.start()
        self._unsubscribe = self._bus.subscribe(self.on_event)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe, decide on what is in the inbox, let the senders finish; safe to call twice.

        Escalations still waiting for their delay are counted as ``dropped`` on their channels.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for _, kind in self.pending.clear():  # delayed escalations that will never go out now
            for sender in self._by_kind.get(kind, ()):
                sender.dropped += 1
        for sender in self.senders:  # all at once: a slow channel must not hold up the others' exit
            sender.signal_stop()
        for sender in self.senders:
            sender.stop(max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> AlertDispatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- producer side: any thread, never blocks ----------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Bus subscriber: keep the events the rules read, in a bounded inbox."""
        if event.get("kind") not in EVENT_KINDS:
            return
        if len(self._inbox) >= self._inbox_size:
            self._count_drop()
            return
        self._inbox.append(event)
        if not self._wake.is_set():
            self._wake.set()

    def fire(self, alert: Alert) -> None:
        """Raise an alert of your own (``Alert(Level.WARNING, "custom", key, message)``) from any thread."""
        if not isinstance(alert, Alert):  # it would fail on the dispatcher's thread, unseen
            raise TypeError(f"fire() takes an Alert, got {type(alert).__name__}")
        if self._stopping.is_set():  # nobody reads the inbox any more: count it and say so
            self._count_drop()
            log.warning(
                "alert_dropped",
                reason="fired on a stopped dispatcher (hardened.alerts.current() is the running one)",
                alert_key=redact_text(alert.key, self._secrets),
            )
            return
        if len(self._inbox) >= self._inbox_size:
            self._count_drop()
            return
        self._inbox.append(alert)
        self._wake.set()

    def _count_drop(self) -> None:
        # Producers race here from many threads; the lock is taken only when the inbox is full.
        with self._drop_lock:
            self.counters["inbox_dropped"] += 1

    # -- the dispatcher thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception as exc:  # never let one bad event end alerting for the process
                self.counters["errors"] += 1
                log.error("alert_dispatcher_error", error=redact_text(repr(exc), self._secrets)[:300])
            self._wake.wait(self._idle_timeout())
            self._wake.clear()
        try:
            self.step()  # what arrived before stop() is still decided and queued
        except Exception:
            self.counters["errors"] += 1

    def _idle_timeout(self) -> float:
        now = self.clock()
        due = [t for t in (self.pending.next_due(), self.throttle.next_due()) if t is not None]
        if self.config.health_interval > 0:
            due.append(self._next_health)
        wait = min(due) - now if due else 1.0
        return max(0.01, min(1.0, wait))

    def step(self, now: float | None = None) -> None:
        """One pass: decide on the inbox, the rules' timers, health, summaries and due escalations."""
        now = self.clock() if now is None else now
        self._stepping = True
        try:
            self._step(now)
        finally:
            self._stepping = False

    def _step(self, now: float) -> None:
        # The rules and the throttle stamp what they make with ``now``, the decision clock's
        # reading: an alert says the wall-clock time instead.
        wall = now if self.wall_clock is self.clock else self.wall_clock()
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, Alert):
                self._handle(item, now)
                continue
            self.counters["events"] += 1
            for alert in self.rules.on_event(item, now):
                self._handle(_stamped(alert, wall), now)
        for alert in self.rules.tick(now):
            self._handle(_stamped(alert, wall), now)
        interval = self.config.health_interval
        if interval > 0 and now >= self._next_health:
            self._next_health = now + interval
            for alert in self.rules.on_health(self._health_source(), now):
                self._handle(_stamped(alert, wall), now)
        summary = self.throttle.due_summary(now)
        if summary is not None:
            self.counters["summaries"] += 1
            self._emit(self._clean(_stamped(summary, wall)), now, immediate_only=True)
        for alert, kind in self.pending.due(now):
            self._escalated_at[(alert.key, kind)] = now
            self._offer(alert, kind)
        if len(self._escalated_at) > 10_000:  # bound memory on a bot with very many keys
            cooldown = self.throttle.cooldown_s
            self._escalated_at = {k: t for k, t in self._escalated_at.items() if now - t < cooldown}

    def _clean(self, alert: Alert) -> Alert:
        """``alert`` with credentials masked in every text it carries (message, details, key, type,
        exchange, endpoint): any of them could quote an error, and each reaches a channel or the
        status stream."""
        secrets = self._secrets
        changes: dict[str, Any] = {}
        for name in ("message", "type", "key", "exchange", "endpoint"):
            value = getattr(alert, name)
            if isinstance(value, str) and (masked := redact_text(value, secrets)) != value:
                changes[name] = masked
        if alert.details and (details := redact_value(alert.details, secrets)) != alert.details:
            changes["details"] = details
        return dataclasses.replace(alert, **changes) if changes else alert

    def _handle(self, alert: Alert, now: float) -> None:
        alert = self._clean(alert)
        for key in alert.resolves:
            for _, kind in self.pending.resolve(key):
                self.counters["cancelled"] += 1
                for sender in self._by_kind.get(kind, ()):
                    sender.cancelled += 1
        verdict = self.throttle.admit(alert, now)
        if verdict is not Verdict.SEND:
            self.counters["suppressed"] += 1
            for kind, delay in self.escalation.plan(alert, self._by_kind).items():
                if delay > 0 and self._escalate_held(alert, kind, now + delay):
                    continue
                for sender in self._by_kind[kind]:
                    sender.suppressed += 1
            return
        self.counters["fired"] += 1
        self._emit(alert, now, immediate_only=False)

    def _escalate_held(self, alert: Alert, kind: str, due: float) -> bool:
        """A held-back repeat still escalates to a delayed channel if that channel has not had this
        key within the cooldown: a breaker that flaps (open, closed, open again within the cooldown)
        and then stays open still reaches Telegram once its delay has passed. True if it will go."""
        slot = (alert.key, kind)
        if self.pending.waiting(alert.key, kind):
            return True
        last = self._escalated_at.get(slot)
        if last is not None and due - last < self.throttle.cooldown_s:
            return False
        return self.pending.add(alert, kind, due)

    def _emit(self, alert: Alert, now: float, *, immediate_only: bool) -> None:
        """Publish ``alert`` on the bus and route it: at once, or held for its escalation delay."""
        fields = alert.to_dict()
        fields.pop("ts", None)
        with self._recent_lock:
            self._recent.append({**fields, "ts": alert.ts})
        self._bus.publish("alert", **fields)
        for kind, delay in self.escalation.plan(alert, self._by_kind).items():
            if delay <= 0:
                self._offer(alert, kind)
            elif not immediate_only:
                self.pending.add(alert, kind, now + delay)

    def _offer(self, alert: Alert, kind: str) -> None:
        for sender in self._by_kind.get(kind, ()):
            sender.offer(alert)

    # -- for tests and the unthreaded mode -----------------------------------------------------------------

    def flush(self, now: float | None = None) -> None:
        """``step()``, then deliver everything queued in this thread (unthreaded mode and tests)."""
        self.step(now)
        for sender in self.senders:
            sender.drain()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the inbox and every sender queue are empty and no sender is mid-delivery."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The dispatcher first (``and`` keeps the order): once its inbox is empty and no step
            # runs, everything it took is queued; a sender is busy from before it pops an alert.
            if (
                not self._inbox
                and not self._stepping
                and all(not s.queued and not s.busy for s in self.senders)
            ):
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    # -- status --------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for the status stream: the dispatcher's and each channel's."""
        return {
            "running": self.running,
            **self.counters,
            "inbox": len(self._inbox),
            "held": self.throttle.held,
            "pending_escalations": len(self.pending),
            "channels": {sender.name: sender.counters() for sender in self.senders},
        }

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last alerts that fired (oldest first), from any thread."""
        with self._recent_lock:
            return list(self._recent)[-limit:]

    def channels(self) -> Iterable[Channel]:
        """The channels in use."""
        return (sender.channel for sender in self.senders)
