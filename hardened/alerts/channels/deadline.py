"""A deadline for one whole exchange with a server (an HTTP POST, an SMTP session).

The ``timeout`` of urllib and smtplib bounds each socket operation, not the exchange: a server or
proxy that trickles its answer a byte at a time holds a channel's sender thread for as long as it
likes (and ``stop()`` cannot cut it short). A ``Deadline`` shuts the watched connections' sockets
when its time is up, so the blocked read returns and the delivery fails as timed out.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

__all__ = ["Deadline", "current"]

_local = threading.local()


def current() -> Deadline | None:
    """The deadline of the exchange running in this thread, if any."""
    return getattr(_local, "deadline", None)


class Deadline:
    """``with Deadline(seconds) as d:`` -- connections ``d.watch(...)``-ed are shut at the end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._watched: list[Any] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Deadline:
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        _local.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _local.deadline = None

    def watch(self, holder: Any) -> None:
        """Shut ``holder.sock`` (read when the time is up: STARTTLS replaces it) at the deadline."""
        with self._lock:
            self._watched.append(holder)
            expired = self.expired
        if expired:
            _shut(holder)

    def connected(self, holder: Any) -> None:
        """Call once ``holder`` has its socket: a deadline that passed while it connected shuts it now."""
        if self.expired:
            _shut(holder)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            watched = list(self._watched)
        for holder in watched:
            _shut(holder)


def _shut(holder: Any) -> None:
    sock = getattr(holder, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
