"""The call deadline on the sync client's sockets: a trickling server cannot hold a call past it.

ccxt's sync exchanges talk through a ``requests.Session``, whose ``timeout`` bounds each socket
read, not the request: a server that sends one byte every second never times out. The async
client bounds each attempt with ``asyncio.timeout``; this module does the same for the sync one.
``enforce_deadline(exchange)`` mounts an adapter on the exchange's session: while a call runs
(``hardened.pipeline.current_call``), its connections are watched by one daemon thread, which
shuts the socket down when the call's deadline passes, so the blocked read returns at once and the
request fails as a timeout. Hand-written: neither requests nor urllib3 has a total deadline
(urllib3's ``Timeout(total=...)`` only bounds connecting plus each read).
"""

from __future__ import annotations

import contextlib
import contextvars
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

# The watch of the request this thread is sending, for the connection that carries it to join.
_watching: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar("hardened_watch", default=None)


_INF = float("inf")


class _Watch:
    """One request under a deadline (``time.perf_counter`` seconds) and the connections it uses."""

    __slots__ = ("connections", "deadline", "done", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[HTTPConnection] = []
        self.done = False
        self.fired = False

    def fire(self) -> None:
        """Shut the sockets down: a read blocked on them returns now (the plain socket's shutdown,
        below TLS, so a TLS read in another thread fails instead of racing the TLS state)."""
        self.fired = True
        for connection in self.connections:
            if self.done:  # answered meanwhile: the connection may already serve another request
                return
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread that fires each watch whose deadline passes before the request is done.

    Registering a request is a dict insert and one float comparison, no lock: it runs on every
    request, right after the network wait, where each extra line costs a microsecond or two (a heap
    under a lock cost ~25 us a request there). The thread sleeps until the earliest deadline it
    knows of; a request due earlier than that (a short ``call_deadline``) wakes it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: dict[_Watch, None] = {}  # requests in flight (dict ops are atomic in CPython)
        self._next_wake = _INF  # when the thread wakes next; +inf while it scans (see _run)
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        """Start watching a request that must be over by ``deadline`` (perf_counter seconds)."""
        entry = _Watch(deadline)
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
        """The request is over (answered or failed): stop watching it."""
        entry.done = True
        self._active.pop(entry, None)

    def watching(self) -> int:
        """Requests being watched now."""
        return len(self._active)

    def _run(self) -> None:
        while True:
            with self._cond:
                # +inf while scanning: a request registered meanwhile takes the notifying path
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
                if not entry.done:
                    entry.fire()


watchdog = Watchdog()


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        entry = _watching.get()
        if entry is not None:
            entry.connections.append(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        entry = _watching.get()
        if entry is not None:
            entry.connections.append(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter that ends each request, body included, by the running call's deadline.

    Outside a hardened call it behaves as requests' own adapter. Inside one, the read timeout is
    cut to the time left, the whole answer is read within the watch, and a request the watchdog
    had to cut off fails as ``requests.exceptions.ReadTimeout`` (ccxt: ``RequestTimeout``).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        ctx = current_call.get()
        if ctx is None:
            return super().send(request, stream=stream, timeout=timeout, **kwargs)
        deadline = ctx.started + ctx.rt.policy.call_deadline
        left = deadline - time.perf_counter()
        if left <= 0.0:
            raise requests.exceptions.ReadTimeout("call deadline passed before the request was sent")
        if timeout is None or isinstance(timeout, (int, float)):
            timeout = left if timeout is None else min(float(timeout), left)
        entry = watchdog.watch(deadline)
        token = _watching.set(entry)
        try:
            response = super().send(request, stream=stream, timeout=timeout, **kwargs)
            if not stream:
                response.content  # noqa: B018  the body too is read under the watch
            return response
        except Exception as error:
            if entry.fired:
                raise requests.exceptions.ReadTimeout(
                    f"call deadline passed while waiting for the answer ({type(error).__name__})"
                ) from error
            raise
        finally:
            watchdog.done(entry)
            _watching.reset(token)


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
