"""The call deadline on the sync client's sockets: a trickling server cannot hold a call past it.

ccxt's sync exchanges talk through a ``requests.Session``, whose ``timeout`` bounds each socket
read, not the request: a server that sends one byte every second never times out. The async
client bounds each attempt with ``asyncio.timeout``; this module does the same for the sync one.
``enforce_deadline(exchange)`` mounts an adapter on the exchange's session whose connections,
when they send a request for a hardened call (``hardened.pipeline.current_call``), put that call
under the watch of one daemon thread: when the call's deadline passes, the thread shuts the
connection's socket down, the blocked read returns at once, and the pipeline reports the failure
as ``DeadlineExceeded``. Hand-written: neither requests nor urllib3 has a total deadline
(urllib3's ``Timeout(total=...)`` only bounds connecting plus each read).

The watch is taken once per call, by its first request, and ended by the pipeline when the call
is over; each request only names its connection (two attribute stores). This runs right after
the network wait, where every line costs a microsecond or two with the CPU's caches cold: the
per-request adapter this replaces cost about 40 us of CPU a call over HTTP (a client with no
stages, measured against the same client on requests' own adapter).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import requests
import structlog
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from hardened.pipeline import current_call

__all__ = ["DeadlineAdapter", "Watchdog", "enforce_deadline", "watchdog"]

_log = structlog.get_logger("hardened")

_INF = float("inf")


class _Watch:
    """One call under a deadline (``time.perf_counter`` seconds) and the connection of its request
    in flight. ``close()`` ends the watch (the pipeline calls it when the call is over)."""

    __slots__ = ("connection", "deadline", "dog", "fired")

    def __init__(self, dog: Watchdog, deadline: float) -> None:
        self.dog = dog
        self.deadline = deadline
        self.connection: Any = None
        self.fired = False

    def fire(self) -> None:
        """Shut the socket of the request in flight down: a read blocked on it returns now (the
        plain socket's shutdown, below TLS, so a TLS read in another thread fails instead of
        racing the TLS state). A connection that has since gone back to the pool and on to
        another call names that call's watch, and is left alone."""
        self.fired = True
        connection = self.connection
        if connection is None or getattr(connection, "hardened_watch", None) is not self:
            return
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """The call is over (answered or failed): stop watching it."""
        self.dog.done(self)


class Watchdog:
    """One daemon thread that fires each watch whose deadline passes before its call is over.

    Registering a call is a dict insert and one float comparison, no lock. The thread sleeps until
    the earliest deadline it knows of; a call due earlier than that (a short ``call_deadline``)
    wakes it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: dict[_Watch, None] = {}  # calls in flight (dict ops are atomic in CPython)
        self._next_wake = _INF  # when the thread wakes next; +inf while it scans (see _run)
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        """Start watching a call that must be over by ``deadline`` (perf_counter seconds)."""
        entry = _Watch(self, deadline)
        self._active[entry] = None
        if deadline < self._next_wake or self._thread is None:  # the thread might sleep past it
            with self._cond:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="hardened-deadline", daemon=True)
                    self._thread.start()
                self._next_wake = deadline if deadline < self._next_wake else self._next_wake
                self._cond.notify()
        return entry

    def done(self, entry: _Watch) -> None:
        """The call is over: stop watching it."""
        self._active.pop(entry, None)

    def watching(self) -> int:
        """Calls being watched now."""
        return len(self._active)

    def _run(self) -> None:
        while True:
            with self._cond:
                # +inf while scanning: a call registered meanwhile takes the notifying path
                # above, which waits for this lock, so it is never slept past.
                self._next_wake = _INF
                now = time.perf_counter()
                due = []
                earliest = _INF
                for entry in list(self._active):
                    if entry.deadline <= now:
                        due.append(entry)
                        self._active.pop(entry, None)
                    elif entry.deadline < earliest:
                        earliest = entry.deadline
                if not due:
                    self._next_wake = earliest
                    self._cond.wait(None if earliest == _INF else earliest - now)
                    continue
            for entry in due:  # outside the lock: a shutdown is a system call
                entry.fire()


watchdog = Watchdog()


def _claim(connection: HTTPConnection) -> None:
    """Before a request is sent: the call in flight (if any) watches this connection, and the
    connection names that call's watch (None outside a hardened call). A call past its deadline
    sends nothing more (an order plan's lookups included): the request fails before it goes out,
    as a connection error the pipeline reports as ``DeadlineExceeded``."""
    ctx = current_call.get()
    if ctx is None:
        connection.hardened_watch = None  # type: ignore[attr-defined]
        return
    watch = ctx.watch
    if watch is None:
        watch = ctx.watch = watchdog.watch(ctx.started + ctx.rt.policy.call_deadline)
    elif watch.fired or time.perf_counter() >= watch.deadline:
        watch.fired = True
        connection.hardened_watch = None  # type: ignore[attr-defined]
        raise TimeoutError("call deadline passed before the request was sent")
    watch.connection = connection
    connection.hardened_watch = watch  # type: ignore[attr-defined]


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _claim(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _claim(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """requests' own adapter, with connections that put each hardened call's requests under the
    watchdog (outside a hardened call they behave as requests' own). A request the watchdog had to
    cut off fails as a connection error, which the pipeline reports as ``DeadlineExceeded``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def enforce_deadline(exchange: Any) -> bool:
    """Mount ``DeadlineAdapter`` on a sync ccxt exchange's session in place of requests' own
    adapter (same pool settings and retries); False when the session has none, or an adapter of
    the user's own that it leaves alone (the call deadline then holds between reads only)."""
    session = getattr(exchange, "session", None)
    if not isinstance(session, requests.Session):
        return False
    mounted = True
    for prefix in ("https://", "http://"):
        current = session.adapters.get(prefix)
        if isinstance(current, DeadlineAdapter):
            continue
        if current is not None and type(current) is not HTTPAdapter:
            _log.warning(
                "call_deadline_per_read_only",
                exchange=getattr(exchange, "id", None),
                prefix=prefix,
                adapter=type(current).__name__,
                reason="the session has its own adapter: a slow answer is stopped between reads only",
            )
            mounted = False
            continue
        options: dict[str, Any] = {}
        if current is not None:
            options = {
                "pool_connections": current._pool_connections,
                "pool_maxsize": current._pool_maxsize,
                "max_retries": current.max_retries,
                "pool_block": current._pool_block,
            }
        session.mount(prefix, DeadlineAdapter(**options))
    return mounted
