"""The rate-limit budget of one API key, shared by every process that uses the key.

The exchange counts requests per key (and IP), not per process: two bots on one key that each
pace themselves to the published limit spend it twice. Each pool of the exchange's profile
(Binance: request weight per minute, raw requests per 5 minutes, orders per 10 s, ...) gets a
counter per window in Redis, ``hardened:budget:{exchange}:{key id}:{pool}:{window}``, where the key
id is a hash of the API key (the key itself never reaches Redis). A pool the exchange counts per IP
(profile ``scope = "ip"``: Binance's request weight, KuCoin's public pool) is counted once for the
whole group, ``hardened:budget:{exchange}:ip:{pool}:{window}``, whatever key each process uses (or
none): the processes that share a Redis are taken to share an IP, as they share a budget.

A Redis round trip per call would cost more than the whole pipeline, so a process takes a *lease*:
an atomic Lua script grants it a slice of a window's remaining budget (``lease_share`` of the cap,
at least what the call needs), and calls spend the lease in memory until it runs out or its window
ends; when a lease runs low the link's thread takes the next slice of the same window in the
background, so in steady state no call waits for Redis at all. Whatever the group leases in a
window never exceeds the cap, so the group never overspends;
the price is that a lease unspent at the window's end is lost (at most ``lease_share`` of the cap
per process per window). When the current window cannot cover a call the script books it in the
next one and the call waits for its start, as the local budget (``hardened.ratelimit``) does.
Windows follow the Redis server's clock, so processes on several hosts agree on them.

While Redis is down the shared budget says "no wait" and the local budget alone paces the calls.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from hardened.shared.connection import RedisLink

__all__ = ["SharedBudget", "key_id"]

# KEYS: one prefix per pool. ARGV[1]: 1 if the next window may be used, else 0; then per pool, 4
# values: cap, window length in ms, units wanted, units needed. For each pool: the current window if
# it has the units needed, else (if allowed) the next one;
# grant min(wanted, free). Returns per pool {granted, window, ms to its start, ms to its end}; a pool
# with nothing left in either window grants 0 and gives the end of the next window.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, prefix in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local cap = tonumber(ARGV[base + 1])
  local interval = tonumber(ARGV[base + 2])
  local want = tonumber(ARGV[base + 3])
  local need = tonumber(ARGV[base + 4])
  local window = math.floor(now / interval)
  local granted = 0
  local chosen = window + 1
  for w = window, window + tonumber(ARGV[1]) do
    local key = prefix .. ':' .. w
    local used = tonumber(redis.call('GET', key) or '0')
    local free = cap - used
    if free >= need then
      granted = math.min(want, free)
      redis.call('INCRBYFLOAT', key, granted)
      redis.call('PEXPIRE', key, interval * 2 + 1000)
      chosen = w
      break
    end
  end
  out[i] = {tostring(granted), tostring(chosen), tostring(chosen * interval - now),
            tostring((chosen + 1) * interval - now)}
end
return out
"""

Charge = tuple[str, float, float, float]  # pool name, cap, window seconds, units


def key_id(exchange_id: str, api_key: str | None) -> str:
    """A short, stable id of an API key for Redis keys: a hash, never the key itself."""
    if not api_key:
        return "public"
    return hashlib.sha256(f"hardened-budget:{exchange_id}:{api_key}".encode()).hexdigest()[:20]


class _Lease:
    """Units of one pool's window granted to this process, and the window's local start and end."""

    __slots__ = ("end", "remaining", "start", "window")

    def __init__(self, window: int, start: float, end: float, remaining: float) -> None:
        self.window = window
        self.start = start
        self.end = end
        self.remaining = remaining


class SharedBudget:
    """One API key's budget across processes, spent from local leases (see the module docstring).

    Args:
        link: the Redis link.
        exchange_id: the exchange (part of every key).
        api_key: the API key whose budget this is (only its hash is used).
        lease_share: share of a pool's cap leased at a time.
        ip_pools: the pools the exchange counts per IP, not per key: shared by every key's budget.
    """

    __slots__ = (
        "_leases",
        "_lock",
        "_prefetching",
        "_prefixes",
        "_script",
        "lease_share",
        "link",
        "prefetches",
        "prefix",
        "refills",
    )

    def __init__(
        self,
        link: RedisLink,
        exchange_id: str,
        api_key: str | None,
        lease_share: float = 0.02,
        ip_pools: Iterable[str] = (),
    ) -> None:
        if not 0.0 < lease_share <= 1.0:
            raise ValueError(f"lease_share must be in (0, 1], got {lease_share}")
        self.link = link
        self.prefix = f"hardened:budget:{exchange_id}:{key_id(exchange_id, api_key)}:"
        ip_prefix = f"hardened:budget:{exchange_id}:ip:"  # no key id is "ip": hashes and "public"
        self._prefixes = dict.fromkeys(ip_pools, ip_prefix)  # pool -> its prefix, when not ``prefix``
        self.lease_share = lease_share
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._script = link.client.register_script(_RESERVE)
        self.refills = 0  # round trips on a caller's thread (the other calls spent a lease in memory)
        self.prefetches = 0  # round trips of the link's thread, topping a lease up before it runs out
        self._prefetching: set[str] = set()

    def delay_before(self, charges: Sequence[Charge], now: float) -> tuple[float, bool]:
        """``(seconds to wait, booked)`` for a call that costs ``charges``.

        Booked with no wait when the leases held cover the call; booked with a wait until the next
        window when this one is spent group-wide; ``(seconds until a window has room, False)`` when
        neither this window nor the next has room: the call must not be sent. ``(0.0, True)`` while
        Redis is down: the local budget alone then paces the call.
        """
        for _ in range(3):  # another thread may spend a fresh lease first: refill again
            with self._lock:
                short = [c for c in charges if not self._covers(c, now)]
                if not short:
                    start = now
                    low: list[Charge] = []
                    for charge in charges:
                        lease = self._leases[charge[0]]
                        lease.remaining -= charge[3]
                        if lease.start > start:
                            start = lease.start
                        if lease.remaining * 2 < self._want(charge) and charge[0] not in self._prefetching:
                            low.append(charge)
                            self._prefetching.add(charge[0])
                    if low:
                        self.link.send(lambda client, pending=low: self._prefetch(pending))
                    return start - now, True
            blocked = self._refill(short, now)
            if blocked is None:
                return 0.0, True
            if blocked > 0.0:
                return blocked, False
        return 0.0, True  # three refills taken by other threads: let the local budget decide

    def release(self, charges: Sequence[Charge]) -> None:
        """Give back what ``delay_before`` booked for a call that is not sent (its wait was refused):
        the units return to the lease they came from, so calls refused while a window is spent do
        not book the next window away. Memory only: the lease stays this process's."""
        with self._lock:
            for name, _cap, _interval, units in charges:
                lease = self._leases.get(name)
                if lease is not None:
                    lease.remaining += units

    def _covers(self, charge: Charge, now: float) -> bool:
        lease = self._leases.get(charge[0])
        return lease is not None and lease.end > now and lease.remaining >= charge[3]

    def _want(self, charge: Charge) -> float:
        return max(charge[3], charge[1] * self.lease_share)

    def _prefetch(self, low: list[Charge]) -> None:
        """Top up the leases in ``low`` from their current window (the link's thread)."""
        try:
            if self._refill(low, time.time(), next_window=False) is not None:
                self.prefetches += 1
        finally:
            with self._lock:
                self._prefetching.difference_update(charge[0] for charge in low)

    def _refill(self, short: list[Charge], now: float, next_window: bool = True) -> float | None:
        """Lease more of each pool in ``short``: None if Redis is down, else seconds to wait when a
        pool has nothing left in this window or the next (0.0 when every pool was granted)."""
        keys = [self._prefixes.get(name, self.prefix) + name for name, _cap, _interval, _units in short]
        args: list[Any] = [1 if next_window else 0]
        for charge in short:
            _name, cap, interval, units = charge
            args += [repr(cap), int(interval * 1000), repr(self._want(charge)), repr(units)]
        reply = self.link.call(lambda client: self._script(keys=keys, args=args, client=client))
        if reply is None:
            return None
        if next_window:
            self.refills += 1
        blocked = 0.0
        now = time.time()  # the lease's window is placed from when the answer came, not the ask
        with self._lock:
            for (name, _cap, _interval, _units), row in zip(short, reply, strict=True):
                granted, window = float(row[0]), int(row[1])
                start, end = now + float(row[2]) / 1000.0, now + float(row[3]) / 1000.0
                if granted <= 0.0:
                    if next_window:
                        blocked = max(blocked, end - now)
                    continue
                lease = self._leases.get(name)
                if lease is not None and lease.window == window and lease.end > now:
                    lease.remaining += granted
                else:
                    self._leases[name] = _Lease(window, start, end, granted)
        return blocked

    def leased(self) -> dict[str, float]:
        """Units still leased per pool (for stats and tests)."""
        with self._lock:
            return {name: lease.remaining for name, lease in self._leases.items()}
