"""One Redis connection per URL, with a circuit of its own: Redis down never slows a call.

``RedisLink`` owns a redis-py client with short connect and read timeouts and no retries, and two
background threads that do everything that may wait: one runs the writes queued by the hot path
(``send``, woken at once), the periodic jobs and the reconnect attempts while Redis is away; the
other reads pub/sub messages.

The hot path only ever calls ``call(fn)``: while Redis is up it runs ``fn(client)`` (one round trip,
bounded by the timeout); the first failure marks the link down, which is said ONCE in the log and
on the status stream (``shared_state`` event, ``state="degraded"``), and from then on ``call``
returns None at once, so every caller keeps working on its local state. The thread pings every
``reconnect_s``; when Redis answers again it resubscribes, runs the rejoin hooks (breakers and
counters resynchronise) and says ``state="rejoined"``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from hardened.shared.url import redact_url
from hardened.telemetry.events import bus

__all__ = ["RedisLink", "close_links", "link_for"]

log = structlog.get_logger("hardened.shared")

T = TypeVar("T")
Job = Callable[[redis.Redis], None]
# What a lost or hung Redis raises: redis-py wraps socket errors, but a few surface as OSError.
_DOWN = (redis.RedisError, OSError)
_OUTBOX_MAX = 10_000  # queued writes kept while the thread catches up; more are dropped (counted)


class RedisLink:
    """A Redis client for one URL, its health, and the thread that talks to Redis off the hot path.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        timeout_s: connect and read timeout of every Redis command, in seconds.
        reconnect_s: pause between reconnect attempts while Redis is down.
    """

    def __init__(self, url: str, timeout_s: float = 0.1, reconnect_s: float = 0.5) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # redis-py retries 3 times by default: 4x the timeout
            health_check_interval=0,
        )
        self.up = False
        self.degraded_count = 0  # outages seen (each said once)
        self.dropped = 0  # queued writes dropped because the outbox was full or Redis was down
        self._lock = threading.Lock()
        self._outbox: deque[Job] = deque()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._channels: dict[bytes, Callable[[bytes], None]] = {}
        self._rejoin_hooks: list[Callable[[], None]] = []
        self._periodic: list[list[Any]] = []  # [interval_s, job, next_due]
        self._pubsub: Any = None
        self._resubscribe = False
        try:
            self.client.ping()
            self.up = True
        except _DOWN as exc:
            self._degrade(exc)
        self._thread = threading.Thread(target=self._run, name="hardened-redis", daemon=True)
        self._thread.start()
        self._listener = threading.Thread(target=self._listen, name="hardened-redis-pubsub", daemon=True)
        self._listener.start()

    # --- the hot path ------------------------------------------------------------------------

    def call(self, fn: Callable[[redis.Redis], T]) -> T | None:
        """``fn(client)`` now, or None at once while Redis is down (the caller uses local state)."""
        if not self.up:
            return None
        try:
            return fn(self.client)
        except _DOWN as exc:
            self._degrade(exc)
            return None

    def send(self, job: Job) -> None:
        """Queue a write for the link's thread; never waits. Dropped while Redis is down."""
        if not self.up or len(self._outbox) >= _OUTBOX_MAX:
            self.dropped += 1
            return
        self._outbox.append(job)
        self._wake.set()

    # --- wiring (at start-up, not per call) ---------------------------------------------------

    def subscribe(self, channel: bytes, handler: Callable[[bytes], None]) -> None:
        """Deliver every message published on ``channel`` to ``handler`` (in the link's thread)."""
        with self._lock:
            self._channels[channel] = handler
            self._resubscribe = True
        self._wake.set()

    def on_rejoin(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` in the link's thread each time Redis comes back after an outage."""
        with self._lock:
            self._rejoin_hooks.append(hook)

    def every(self, interval_s: float, job: Callable[[], None]) -> None:
        """Run ``job`` in the link's thread every ``interval_s`` seconds while Redis is up."""
        with self._lock:
            self._periodic.append([interval_s, job, time.monotonic() + interval_s])

    def close(self) -> None:
        """Stop the thread and close the connections; calls then use local state only."""
        self.up = False
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self._listener.join(timeout=2.0)
        self._drop_pubsub()
        self.client.close()

    # --- health -------------------------------------------------------------------------------

    def _degrade(self, exc: BaseException) -> None:
        with self._lock:
            was_up, self.up = self.up, False
            if was_up or self.degraded_count == 0:
                self.degraded_count += 1
                first = True
            else:
                first = False
        self._outbox.clear()
        if first:
            reason = f"{type(exc).__name__}: {exc}".replace(self.url, self.shown_url)[:300]
            log.warning("shared_state_degraded", redis=self.shown_url, reason=reason)
            bus.publish("shared_state", state="degraded", redis=self.shown_url, reason=reason)

    def _rejoin(self) -> None:
        with self._lock:
            hooks = list(self._rejoin_hooks)
        self._subscribe_all()  # listening again before the hooks read the state others wrote
        for hook in hooks:  # before ``up``: a hook that fails leaves the link down, and silent
            hook()
        self.up = True
        log.info("shared_state_rejoined", redis=self.shown_url)
        bus.publish("shared_state", state="rejoined", redis=self.shown_url)

    # --- the link's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            if not self.up:
                self._drop_pubsub()
                if self._closed.wait(self.reconnect_s):
                    return
                try:
                    self.client.ping()
                    self._rejoin()
                except _DOWN:
                    continue
                except Exception as exc:  # a rejoin hook failed: treat as down, try again later
                    self._degrade(exc)
                continue
            try:
                self._work()
            except _DOWN as exc:
                self._degrade(exc)
            except Exception as exc:  # a bug in a job must not kill the thread that rejoins
                log.error("shared_state_job_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _work(self) -> None:
        if self._resubscribe:  # first: a transition written below must not be missed by our own peers
            self._subscribe_all()
        while self._outbox:
            self._outbox.popleft()(self.client)
        now = time.monotonic()
        next_due = now + 0.5
        for entry in self._periodic:
            if now >= entry[2]:
                entry[2] = now + entry[0]
                entry[1]()
            next_due = min(next_due, entry[2])
        self._wake.clear()  # before looking at the outbox: a send() from now on wakes the wait
        if not self._outbox:
            self._wake.wait(max(0.0, next_due - time.monotonic()))

    def _listen(self) -> None:
        """The pub/sub thread: hands each message to its channel's handler."""
        while not self._closed.is_set():
            pubsub = self._pubsub
            if pubsub is None or not self.up:
                self._closed.wait(0.05)
                continue
            try:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                while message is not None:
                    handler = self._channels.get(message["channel"])
                    if handler is not None and message["type"] == "message":
                        handler(message["data"])
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
            except Exception as exc:
                if pubsub is not self._pubsub:
                    continue  # closed under us by a resubscription or an outage: nothing to say
                if isinstance(exc, _DOWN):
                    self._degrade(exc)
                else:  # a handler's bug must not stop the listening
                    log.error("shared_state_message_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _subscribe_all(self) -> None:
        with self._lock:
            channels = list(self._channels)
            self._resubscribe = False
        self._drop_pubsub()
        if not channels:
            return
        pubsub = self.client.pubsub()
        pubsub.subscribe(*channels)
        # Wait for Redis to confirm: a PUBLISH sent on the other connection before the server has
        # read this one's SUBSCRIBE would be lost, and our own clients would miss it.
        pending = set(channels)
        deadline = time.monotonic() + self.timeout_s
        while pending:
            message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                pubsub.close()
                raise redis.TimeoutError("no confirmation of SUBSCRIBE within the timeout")
            if message["type"] == "subscribe":
                pending.discard(message["channel"])
        self._pubsub = pubsub

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*_DOWN):
                pubsub.close()


_links: dict[tuple[str, float], RedisLink] = {}
_links_lock = threading.Lock()


def link_for(url: str, timeout_s: float) -> RedisLink:
    """The process's one link to ``url`` (created on first use, shared by every client)."""
    key = (url, timeout_s)
    link = _links.get(key)
    if link is not None:
        return link
    with _links_lock:
        link = _links.get(key)
        if link is None:
            link = _links[key] = RedisLink(url, timeout_s)
    return link


def _forget_links_in_child() -> None:
    """A forked child has no link thread: it must build its own links, not reuse the parent's."""
    _links.clear()


os.register_at_fork(after_in_child=_forget_links_in_child)


def close_links() -> None:
    """Close every link of this process (their threads stop; see ``hardened.shared.disconnect_all``)."""
    with _links_lock:
        links = list(_links.values())
        _links.clear()
    for link in links:
        link.close()
