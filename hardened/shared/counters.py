"""The error tracker's counts summed over every process: ``hardened.tracker.group_counts()``.

Each process adds its errors to a small pending tally in memory (no I/O when an error is
recorded); the link's thread adds the tally to the hashes ``hardened:errors:by_type`` and
``hardened:errors:by_endpoint`` every ``flush_s`` seconds with one pipelined round trip. While
Redis is down the tally keeps growing (bounded by the number of distinct names) and is flushed on
rejoin, so the group's totals catch up rather than lose the outage's errors.
"""

from __future__ import annotations

import threading

from hardened.shared.connection import RedisLink

__all__ = ["SharedCounters"]

BY_TYPE = "hardened:errors:by_type"
BY_ENDPOINT = "hardened:errors:by_endpoint"
_MAX_NAMES = 1000  # distinct names held between flushes; beyond, counts go to "other"


class SharedCounters:
    """Pending error counts of this process, and the group's totals read from Redis."""

    __slots__ = ("_by_endpoint", "_by_type", "_lock", "link")

    def __init__(self, link: RedisLink, flush_s: float = 0.5) -> None:
        self.link = link
        self._lock = threading.Lock()
        self._by_type: dict[str, int] = {}
        self._by_endpoint: dict[str, int] = {}
        link.every(flush_s, self.flush)
        link.on_rejoin(self.flush)

    def add(self, error_type: str, endpoint: str) -> None:
        """Count one error (memory only; the link's thread sends it)."""
        with self._lock:
            _bump(self._by_type, error_type)
            _bump(self._by_endpoint, endpoint)

    def flush(self) -> None:
        """Add the pending counts to Redis (the link's thread); kept for later if Redis fails."""
        with self._lock:
            by_type, self._by_type = self._by_type, {}
            by_endpoint, self._by_endpoint = self._by_endpoint, {}
        if not by_type and not by_endpoint:
            return
        try:
            pipe = self.link.client.pipeline(transaction=True)
            for name, n in by_type.items():
                pipe.hincrby(BY_TYPE, name, n)
            for name, n in by_endpoint.items():
                pipe.hincrby(BY_ENDPOINT, name, n)
            pipe.execute()
        except BaseException:
            with self._lock:  # nothing is lost: the counts wait for the next flush
                for name, n in by_type.items():
                    _bump(self._by_type, name, n)
                for name, n in by_endpoint.items():
                    _bump(self._by_endpoint, name, n)
            raise

    def totals(self) -> dict[str, dict[str, int]] | None:
        """``{"by_type": ..., "by_endpoint": ...}`` over every process, this one's pending counts
        included; None while Redis is down."""

        def read(client: object) -> list[dict[bytes, bytes]]:
            pipe = self.link.client.pipeline(transaction=False)
            pipe.hgetall(BY_TYPE)
            pipe.hgetall(BY_ENDPOINT)
            return pipe.execute()

        reply = self.link.call(read)
        if reply is None:
            return None
        by_type = {k.decode(): int(v) for k, v in reply[0].items()}
        by_endpoint = {k.decode(): int(v) for k, v in reply[1].items()}
        with self._lock:
            for name, n in self._by_type.items():
                _bump(by_type, name, n)
            for name, n in self._by_endpoint.items():
                _bump(by_endpoint, name, n)
        return {"by_type": by_type, "by_endpoint": by_endpoint}


def _bump(counts: dict[str, int], name: str, n: int = 1) -> None:
    if name not in counts and len(counts) >= _MAX_NAMES:
        name = "other"
    counts[name] = counts.get(name, 0) + n
