"""An optional cache shared through Redis: one process's fresh answer serves the others.

Off unless ``shared_cache=True``. The local cache (``hardened.pipeline.cache``) stays in front:
only a local miss asks Redis (one round trip, far cheaper than the exchange), and each answer the
client stores locally is also written to Redis by the link's thread, with the endpoint's TTL as its
expiry. Keys hold the exchange, a hash of the API key (private answers are shared only between
processes of the same account), a hash of the venue (the API URLs, sandbox mode and default market
type, read at each call: a testnet client never answers a mainnet one) and a hash of the call's
arguments; values are JSON, so an answer
that is not plain JSON is simply not shared. Used by sync clients: an async client must not block
its event loop on a Redis read, so it only writes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from hardened.shared.budget import key_id
from hardened.shared.connection import RedisLink

__all__ = ["SharedCache", "venue_of"]


def venue_of(exchange: Any) -> str:
    """A short hash of where an exchange's answers come from: its API URLs and hostname, sandbox
    mode, and default market type (``options['defaultType']`` / ``defaultSubType``)."""
    urls = getattr(exchange, "urls", None)
    options = getattr(exchange, "options", None)
    if not isinstance(options, dict):
        options = {}
    material = repr(
        (
            urls.get("api") if isinstance(urls, dict) else None,
            getattr(exchange, "hostname", None),
            bool(getattr(exchange, "isSandboxModeEnabled", False)),
            options.get("defaultType"),
            options.get("defaultSubType"),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class SharedCache:
    """Reads and writes cached answers of one exchange and account in Redis."""

    __slots__ = ("hits", "link", "misses", "prefix", "venue", "writes")

    def __init__(
        self, link: RedisLink, exchange_id: str, api_key: str | None, venue: Callable[[], str] | None = None
    ) -> None:
        self.link = link
        self.prefix = f"hardened:cache:{exchange_id}:{key_id(exchange_id, api_key)}:"
        self.venue = venue  # () -> the venue's hash, read per call (set_sandbox_mode may come later)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def _redis_key(self, key: Any) -> str:
        venue = self.venue() + ":" if self.venue is not None else ""
        return self.prefix + venue + hashlib.sha256(repr(key).encode()).hexdigest()[:32]

    def get(self, key: Any) -> tuple[Any, float] | None:
        """``(answer, age in seconds)`` if another process stored one that has not expired."""
        rkey = self._redis_key(key)
        raw = self.link.call(lambda client: client.get(rkey))
        if raw is None:
            self.misses += 1
            return None
        try:
            stored_at, value = json.loads(raw)
        except (ValueError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return value, max(0.0, time.time() - float(stored_at))

    def put(self, key: Any, value: Any, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds (serialised and written by the link's thread)."""
        if ttl_s <= 0.0:
            return
        rkey, stored_at, expiry_ms = self._redis_key(key), time.time(), max(1, int(ttl_s * 1000))

        def write(client: redis.Redis) -> None:
            try:
                payload = json.dumps([stored_at, value], allow_nan=False)
            except (TypeError, ValueError):
                return  # not plain JSON: kept locally only
            client.set(rkey, payload, px=expiry_ms)
            self.writes += 1

        self.link.send(write)
