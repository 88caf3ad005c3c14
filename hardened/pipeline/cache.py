"""The cache stage: answers reused within a TTL, identical calls coalesced, stale-if-error.

- TTL per endpoint (markets long, tickers short; orders and balances never unless configured),
  keyed by endpoint and arguments; a bound on entries with LRU eviction.
- Coalescing: while a call is in flight, identical calls wait for its answer instead of sending
  their own (threads wait on an event, tasks on a future; nobody holds a lock while waiting).
- Stale-if-error: when the breaker is open or retries are exhausted, an endpoint may answer with
  its last good result if it is younger than ``stale_if_error`` seconds; marked stale in the stats
  and published on the event bus. Never for orders or balances.
- OHLCV is cached incrementally: once a series is held, a refresh asks the exchange only for the
  candles since the last one held, and merges them.

- Shared (optional, ``shared_cache`` with ``redis_url``): ``shared`` is an object with
  ``get(key) -> (answer, age) | None`` and ``put(key, answer, ttl)`` (``hardened.shared.cache``);
  a local miss of a sync client asks it before calling the exchange, and every answer stored here
  is offered to it. OHLCV series stay local (they are merged incrementally).

Results are handed out as fresh copies (dicts and lists rebuilt, leaves shared) so a bot that
edits what it got cannot corrupt what the next caller gets.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from typing import Any

from hardened.errors import CircuitOpenError, ErrorKind
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Shortcut, Stage
from hardened.telemetry.events import bus

__all__ = ["DEFAULT_STALE_IF_ERROR", "DEFAULT_TTL", "CacheStage", "Flight", "fresh_copy"]

# Seconds an answer is reused, by endpoint, when the configuration does not say.
DEFAULT_TTL: dict[str, float] = {
    "markets": 3600.0,
    "currencies": 3600.0,
    "trading_fees": 3600.0,
    "status": 10.0,
    "ticker": 1.0,
    "tickers": 1.0,
    "ohlcv": 2.0,
    "order_book": 0.25,
    "trades": 1.0,
}
# Oldest answer (seconds) an endpoint may serve when the exchange cannot answer.
DEFAULT_STALE_IF_ERROR: dict[str, float] = {
    "markets": 86_400.0,
    "currencies": 86_400.0,
    "trading_fees": 86_400.0,
    "ticker": 30.0,
    "tickers": 30.0,
    "ohlcv": 120.0,
    "order_book": 5.0,
    "trades": 30.0,
}
# Never served from cache or stale, whatever the configuration says: a stale balance or order
# state leads a bot to act on money or orders it does not have.
NEVER_STALE = frozenset(
    {"balance", "order", "orders", "open_orders", "closed_orders", "my_trades", "positions"}
)
_STALE_ON = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMIT})
_ASK_SHARED = object()  # on_call's marker: a local miss the shared cache may answer


def fresh_copy(value: Any) -> Any:
    """A copy of nested dicts and lists with shared leaves: ~10x cheaper than ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {k: fresh_copy(v) for k, v in value.items()}
    if kind is list:
        return [fresh_copy(v) for v in value]
    return value


class Flight:
    """One request in flight that identical calls wait for."""

    __slots__ = ("error", "event", "future", "result")

    def __init__(self, asynchronous: bool) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.event = None if asynchronous else threading.Event()
        self.future: asyncio.Future[Any] | None = (
            asyncio.get_running_loop().create_future() if asynchronous else None
        )

    def land(self, result: Any, error: BaseException | None) -> None:
        """Hand the leader's outcome to every waiting call."""
        self.result, self.error = result, error
        if self.event is not None:
            self.event.set()
        elif self.future is not None and not self.future.done():
            self.future.set_result(None)

    def wait(self) -> Any:
        """Block until the leader lands (sync clients)."""
        assert self.event is not None
        self.event.wait()
        return self._outcome()

    async def wait_async(self) -> Any:
        """Await the leader's outcome (async clients); cancelling a follower leaves the leader be."""
        assert self.future is not None
        await asyncio.shield(self.future)
        return self._outcome()

    def _outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return fresh_copy(self.result)


class _Entry:
    __slots__ = ("stored", "value")

    def __init__(self, value: Any, stored: float) -> None:
        self.value = value
        self.stored = stored


class CacheStage(Stage):
    """TTL cache, request coalescing and stale-if-error for one client."""

    name = "cache"

    def __init__(self, exchange_id: str, max_entries: int, asynchronous: bool) -> None:
        self.exchange_id = exchange_id
        self.max_entries = max_entries
        self.asynchronous = asynchronous
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._flights: dict[Any, Flight] = {}
        self.evictions = 0
        self.shared: Any = None  # the cache shared with other processes, if any (see module doc)

    # --- keys and policies ------------------------------------------------------------------

    @staticmethod
    def _key(ctx: CallContext) -> Any:
        try:
            key = (ctx.endpoint.method, ctx.args, tuple(sorted(ctx.kwargs.items())) if ctx.kwargs else ())
            hash(key)
        except TypeError:
            return _freeze((ctx.endpoint.method, ctx.args, ctx.kwargs))
        return key

    # --- hooks ------------------------------------------------------------------------------

    def on_call(self, ctx: CallContext) -> Shortcut | None:
        rt = ctx.rt
        if not rt.cacheable:
            return None
        ohlcv = ctx.endpoint.name == "ohlcv"
        key = _ohlcv_series_key(ctx) if ohlcv else self._key(ctx)
        if key is None:  # an OHLCV call for a fixed window (since=...): not a "latest" series
            return None
        limit = _ohlcv_args(ctx).get("limit") if ohlcv else None
        ctx.cache_limit = limit
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if ohlcv and entry is not None and isinstance(limit, int) and len(entry.value) < limit:
                entry = None  # the series held is shorter than asked: fetch it whole
            if entry is not None and now - entry.stored <= rt.ttl:
                self._entries.move_to_end(key)
                ctx.cache_hit = True
                value = entry.value
            else:
                flight = self._flights.get(key)
                if flight is not None:
                    ctx.cache_hit = True
                    ctx.cache_flight = flight
                    return Shortcut(None, flight)
                ctx.cache_key = key
                ctx.cache_flight = self._flights[key] = Flight(self.asynchronous)
                if ohlcv and entry is not None and entry.value and now - entry.stored <= rt.stale_if_error:
                    _ask_since_last(ctx, entry.value)
                if self.shared is None or ohlcv or self.asynchronous or rt.ttl <= 0:
                    return None
                value = _ASK_SHARED
        if value is _ASK_SHARED:  # leading a local miss: ask the shared cache, without the lock
            return self._from_shared(ctx, key, now)
        if ohlcv:
            value = _last(value, _limit_of(ctx))
        return Shortcut(fresh_copy(value))

    def on_done(
        self, ctx: CallContext, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        key = ctx.cache_key
        if key is None:
            return result, error
        ohlcv = ctx.endpoint.name == "ohlcv"
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            flight = self._flights.pop(key, None)
            if error is None:
                stored = (
                    _merge_candles(entry.value if entry is not None else None, result) if ohlcv else result
                )
                self._store(key, stored, now)
                if self.shared is not None and not ohlcv and not ctx.cache_hit:
                    self.shared.put(key, stored, ctx.rt.ttl)
                if ohlcv:
                    result = _last(stored, _limit_of(ctx))
            elif entry is not None and self._may_serve_stale(ctx, error, now - entry.stored):
                ctx.stale = True
                ctx.cache_hit = True
                result, error = entry.value, None
                if ohlcv:
                    result = _last(result, _limit_of(ctx))
        if flight is not None:
            flight.land(result, error)
        if ctx.stale:
            age = round(now - entry.stored, 3) if entry is not None else None
            bus.publish("stale_served", exchange=self.exchange_id, endpoint=ctx.endpoint.name, age_s=age)
        if error is None and (ctx.stale or ohlcv or flight is not None):
            result = fresh_copy(result)  # the stored object never leaves the cache itself
        return result, error

    # --- internals --------------------------------------------------------------------------

    def _from_shared(self, ctx: CallContext, key: Any, now: float) -> Shortcut | None:
        """As the leader of a local miss, ask the shared cache (no lock held during the read)."""
        found = self.shared.get(key)
        if found is None or found[1] > ctx.rt.ttl:
            return None
        value, age = found
        with self._lock:
            self._store(key, value, now - age)
            flight = self._flights.pop(key, None)
        ctx.cache_key = None
        ctx.cache_flight = None  # a hit, not a call that waited for another
        ctx.cache_hit = True
        if flight is not None:
            flight.land(value, None)
        return Shortcut(fresh_copy(value))

    def _may_serve_stale(self, ctx: CallContext, error: BaseException, age: float) -> bool:
        rt = ctx.rt
        if ctx.endpoint.name in NEVER_STALE or not ctx.endpoint.idempotent or age > rt.stale_if_error:
            return False
        return isinstance(error, CircuitOpenError) or ctx.kind_of(error) in _STALE_ON

    def _store(self, key: Any, value: Any, now: float) -> None:
        entries = self._entries
        entries[key] = _Entry(value, now)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        """Forget every cached answer (in-flight calls still land for their waiters)."""
        with self._lock:
            self._entries.clear()

    def size(self) -> int:
        """How many answers are held."""
        return len(self._entries)


def _freeze(value: Any) -> Any:
    """A hashable stand-in for call arguments that hold dicts or lists (``params={...}``)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


# --- incremental OHLCV ------------------------------------------------------------------------
# fetch_ohlcv(symbol, timeframe="1m", since=None, limit=None, params={})
_OHLCV_NAMES = ("symbol", "timeframe", "since", "limit", "params")


def _ohlcv_args(ctx: CallContext) -> dict[str, Any]:
    bound = dict(zip(_OHLCV_NAMES, ctx.args, strict=False))
    bound.update(ctx.kwargs)
    return bound


def _ohlcv_series_key(ctx: CallContext) -> Any:
    """The key of the "latest candles" series, or None for a call asking for a fixed window."""
    bound = _ohlcv_args(ctx)
    if bound.get("since") is not None:
        return None
    return (
        "fetch_ohlcv",
        bound.get("symbol"),
        bound.get("timeframe", "1m"),
        _freeze(bound.get("params") or {}),
    )


def _limit_of(ctx: CallContext) -> int | None:
    value = ctx.cache_limit
    return value if isinstance(value, int) and value > 0 else None


def _ask_since_last(ctx: CallContext, held: list[list[Any]]) -> None:
    """Rewrite this call to fetch only candles from the last one held (it may have changed)."""
    bound = _ohlcv_args(ctx)
    symbol, timeframe = bound.get("symbol"), bound.get("timeframe", "1m")
    params = bound.get("params") or {}
    ctx.args = (symbol, timeframe)
    ctx.kwargs = {"since": held[-1][0], "params": params}


def _merge_candles(held: list[list[Any]] | None, fresh: Any) -> Any:
    """Held candles with ``fresh`` ones merged in by timestamp (fresh wins), in time order."""
    if not held or not isinstance(fresh, list):
        return fresh
    if not fresh:
        return held
    first_new = fresh[0][0]
    kept = [c for c in held if c[0] < first_new]
    merged = kept + [c for c in fresh if c[0] >= first_new]
    return merged[-5000:]  # a bound: a long-running bot must not grow one series forever


def _last(candles: Any, limit: int | None) -> Any:
    if limit is None or not isinstance(candles, list):
        return candles
    return candles[-limit:]
