"""Breaker state shared by every process on one Redis: a trip seen by one is a trip for all.

Why not pybreaker's ``CircuitRedisStorage``: it reads the state from Redis on every call (one
round trip per call, and a call blocked whenever Redis is slow) and keeps the failure counters
there too. Here each process keeps its breakers in memory (the closed success path is a memory
read, no Redis at all) and Redis only carries transitions:

- a local ``open`` or ``closed`` transition is written to the hash ``hardened:breaker:{name}:{venue}``
  (state, when it changed, when it opened) and published on the channel ``hardened:breaker``,
  by the link's thread, never the caller's. The venue (``hardened.shared.cache.venue_of``: API URLs,
  sandbox mode, default market type) keeps a testnet's or a futures API's outage from opening the
  mainnet spot breaker of the same name;
- every process subscribed to the channel applies a transition newer than its own last one: an
  ``open`` with the same ``opened_at`` (so every process probes at the same moment), a
  ``closed`` when a probe succeeded somewhere or an operator reset it;
- pub/sub is at most once, so each process also re-reads the hashes of its breakers every
  ``resync_s`` seconds and whenever Redis comes back after an outage, pushing its own state when
  it is the newer one (a trip made while Redis was down reaches the others on rejoin).

When an open circuit's ``recovery_timeout`` has passed, one process probes for the group: it
claims ``hardened:probe:{name}:{venue}`` (``SET NX`` for ``recovery_timeout`` seconds) and goes half-open;
the others stay open without a request until they hear the probe's outcome (``closed``, or
``open`` again with a new ``opened_at``). While Redis is down each process probes for itself.

Newer wins, by the wall clock of the process that made the transition. Failure counts stay local:
each process trips from what it saw, and the others follow its trip.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import weakref
from typing import Any

import redis

from hardened.shared.connection import RedisLink

__all__ = ["CHANNEL", "SharedBreakers"]

CHANNEL = b"hardened:breaker"
_PREFIX = "hardened:breaker:"
_PROBE = "hardened:probe:"
_KEEP_S = 7 * 86_400  # a breaker nobody touched for a week is forgotten

# Write the transition only if it is newer than what the hash holds, then publish it: atomic, so
# two processes that trip and recover at the same moment cannot leave an older state behind.
_WRITE_NEWER = """
local held = tonumber(redis.call('HGET', KEYS[1], 'changed_at') or '0')
if held >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'changed_at', ARGV[2], 'opened_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


class SharedBreakers:
    """Connects this process's breakers to the others' through one Redis link.

    Args:
        link: the Redis link (one per URL per process).
        resync_s: how often to re-read the shared state of every local breaker.
    """

    def __init__(self, link: RedisLink, resync_s: float = 5.0) -> None:
        self.link = link
        self._lock = threading.Lock()
        self._by_name: dict[str, weakref.WeakSet[Any]] = {}
        self._write = link.client.register_script(_WRITE_NEWER)
        self.applied = 0  # transitions taken from other processes
        self.origin = f"{socket.gethostname()}:{os.getpid()}"
        self._probe_blocked: dict[str, float] = {}  # name -> monotonic time another's probe claim ends
        link.subscribe(CHANNEL, self._on_message)
        link.on_rejoin(self.resync)
        link.every(resync_s, self.resync)

    def register(self, breaker: Any, venue: str = "") -> None:
        """Share ``breaker`` (an ``EndpointBreaker``) with the breakers of the same name and venue in
        other processes: publish its transitions, apply theirs. ``venue`` tells where its calls go
        (``hardened.shared.cache.venue_of``): breakers of two venues never share a state."""
        name = f"{breaker.name}:{venue}" if venue else breaker.name
        with self._lock:
            self._by_name.setdefault(name, weakref.WeakSet()).add(breaker)
        breaker.share(_Publisher(self, name))
        self.link.send(lambda client: self._pull(client, [name]))

    # --- out: called from the breaker's transition (under its lock): no I/O here ----------------

    def publish(self, breaker: Any, state: str, name: str | None = None) -> None:
        """Queue ``breaker``'s transition, shared under ``name`` (its own by default), for the link's
        thread to write and publish."""
        name, changed_at = name or breaker.name, breaker.changed_at
        opened_at = breaker.opened_at if state == "open" else None
        # Other clients of this process hear it back from Redis like everyone else: applying it to
        # them here would take their locks while this breaker's is held.
        self.link.send(lambda client: self._push(client, name, state, changed_at, opened_at))

    def _push(
        self, client: redis.Redis, name: str, state: str, changed_at: float, opened_at: float | None
    ) -> None:
        message = json.dumps({"name": name, "state": state, "changed_at": changed_at, "opened_at": opened_at})
        self._write(
            keys=[_PREFIX + name],
            args=[state, repr(changed_at), repr(opened_at or 0.0), _KEEP_S, CHANNEL, message],
            client=client,
        )

    def probe_elsewhere(self, breaker: Any, name: str | None = None) -> float | None:
        """None if this process may probe ``breaker`` (shared under ``name``, its own by default) now
        (it claimed the probe, or Redis is down); else the seconds until another process's claim runs
        out. One round trip, outside any lock; a refusal is remembered, so the calls refused
        meanwhile do not ask Redis again."""
        name, now = name or breaker.name, time.monotonic()
        until = self._probe_blocked.get(name, 0.0)
        if now < until:
            return until - now
        key, ttl_ms = _PROBE + name, max(1, int(breaker.recovery_timeout * 1000))

        def claim(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, self.origin, nx=True, px=ttl_ms)
            pipe.pttl(key)
            return pipe.execute()

        reply = self.link.call(claim)
        if reply is None or reply[0]:
            return None
        wait = max(1, int(reply[1])) / 1000.0
        self._probe_blocked[name] = now + wait
        return wait

    # --- in: the link's thread ------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            name, state, changed_at = message["name"], message["state"], float(message["changed_at"])
            opened_at = message.get("opened_at")
        except (ValueError, KeyError, TypeError):
            return  # not ours, or from an incompatible version: ignore
        self._apply(name, state, changed_at, float(opened_at) if opened_at else None)

    def _apply(self, name: str, state: str, changed_at: float, opened_at: float | None) -> None:
        for breaker in self._local(name):
            if breaker.apply_shared(state, changed_at, opened_at):
                self.applied += 1

    def resync(self) -> None:
        """Read the shared state of every local breaker; take what is newer, push what is older."""
        with self._lock:
            names = [name for name, group in self._by_name.items() if len(group)]
        if names:
            self._pull(self.link.client, names)

    def _pull(self, client: redis.Redis, names: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(_PREFIX + name)
        for name, held in zip(names, pipe.execute(), strict=True):
            remote_at = float(held.get(b"changed_at", 0.0)) if held else 0.0
            local = self._local(name)
            if remote_at > 0.0:
                state = held[b"state"].decode()
                opened = float(held.get(b"opened_at", 0.0)) or None
                self._apply(name, state, remote_at, opened)
            newest = max(local, key=lambda b: b.changed_at, default=None)
            if newest is None:
                continue
            changed_at, state = newest.changed_at, newest.changed_to  # read together, not .state
            if changed_at > remote_at and state != "half_open":
                self._push(client, name, state, changed_at, newest.opened_at if state == "open" else None)

    def _local(self, name: str) -> list[Any]:
        with self._lock:
            group = self._by_name.get(name)
            return list(group) if group is not None else []


class _Publisher:
    """What one registered breaker sees of ``SharedBreakers``: its transitions and probe claims go
    under its shared name (breaker name and venue), not the bare breaker name."""

    __slots__ = ("name", "shared")

    def __init__(self, shared: SharedBreakers, name: str) -> None:
        self.shared = shared
        self.name = name

    def publish(self, breaker: Any, state: str) -> None:
        self.shared.publish(breaker, state, self.name)

    def probe_elsewhere(self, breaker: Any) -> float | None:
        return self.shared.probe_elsewhere(breaker, self.name)
