"""The cache stage: answers reused within a TTL, identical calls coalesced, stale-if-error.

- TTL per endpoint (markets long, tickers short), keyed by endpoint and arguments; bounded by
  entries and by approximate bytes, LRU eviction. The client-wide ``cache_ttl`` and
  ``stale_if_error`` reach only public market data (``MARKET_DATA``); account state (balances,
  orders, positions, ledgers, ...) is cached or served stale only when configured for that very
  endpoint, and never served stale at all for ``NEVER_STALE``.
- Coalescing: while a call is in flight, identical calls wait for its answer instead of sending
  their own (threads wait on an event, tasks on a future; nobody holds a lock while waiting).
  Whatever ends the leader, its waiters hear of it: its answer, its error, or (cancelled) the news
  that it gave up, and then one of them leads the request in its place.
- Stale-if-error: when the breaker is open or retries are exhausted, an endpoint may answer with
  its last good result if it is younger than ``stale_if_error`` seconds; marked stale in the stats
  and published on the event bus. Never for orders or balances.
- OHLCV is cached incrementally: once a series is held, a refresh asks the exchange only for the
  candles since the last one held, and merges them. Each caller gets the last ``limit`` candles
  (without ``limit``: as many as the exchange sends then, learned from its answer to such a call),
  and only when the series holds them all: otherwise the call is sent as asked.
- ``load_markets`` is never answered from memory: ccxt keeps the markets on the exchange object and
  answers again from them itself, and a ``reload`` must reach the exchange. Identical loads in
  flight are coalesced, and the last answer is kept for stale-if-error.

- Shared (optional, ``shared_cache`` with ``redis_url``): ``shared`` is an object with
  ``get(key) -> (answer, age) | None`` and ``put(key, answer, ttl)`` (``hardened.shared.cache``);
  a local miss of a sync client asks it before calling the exchange, and every answer stored here
  is offered to it. OHLCV series stay local (they are merged incrementally), and so do
  ``load_markets`` answers (ccxt must set the markets on the exchange itself).

Results are handed out as fresh copies (dicts and lists rebuilt, leaves shared) so a bot that
edits what it got cannot corrupt what the next caller gets.
"""

from __future__ import annotations

import asyncio
import marshal
import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import ccxt

from hardened.errors import CircuitOpenError, DeadlineExceeded, ErrorKind, RateLimitBackoff
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Shortcut, Stage
from hardened.telemetry.events import bus

__all__ = [
    "DEFAULT_STALE_IF_ERROR",
    "DEFAULT_TTL",
    "MARKET_DATA",
    "NEVER_STALE",
    "CacheStage",
    "Flight",
    "approx_size",
    "fresh_copy",
]

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
# Public market data: the endpoints the client-wide ``cache_ttl`` and ``stale_if_error`` apply to.
# Everything else is account state or an action (balances, orders, positions, ledgers, deposits,
# transfers, ...): cached or served stale only when configured for that very endpoint, so that a
# client-wide setting never hands a bot an old answer about its own money.
MARKET_DATA = frozenset(
    {
        *DEFAULT_TTL,  # trading_fees among them: account data, but it changes rarely (1 h)
        "order_books",
        "l2_order_book",
        "l3_order_book",
        "bids_asks",
        "last_prices",
        "mark_prices",
        "mark_ohlcv",
        "index_ohlcv",
        "premium_index_ohlcv",
        "funding_rate",
        "funding_rates",
        "funding_rate_history",
        "funding_interval",
        "funding_intervals",
        "open_interest",
        "open_interests",
        "open_interest_history",
        "liquidations",
        "long_short_ratio",
        "long_short_ratio_history",
        "option",
        "option_chain",
        "greeks",
    }
)
# Never served stale, even when configured for the endpoint (a TTL set for the very endpoint is
# honoured): a stale balance, order or position leads a bot to act on money, orders or exposure
# it does not have.
NEVER_STALE = frozenset(
    {
        "balance",
        "order",
        "orders",
        "open_orders",
        "closed_orders",
        "canceled_orders",
        "canceled_and_closed_orders",
        "order_with_client_order_id",
        "order_trades",
        "my_trades",
        "position",
        "positions",
        "positions_risk",
        "positions_for_symbol",
    }
)
_STALE_ON = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMIT})
_ASK_SHARED = object()  # on_call's marker: a local miss the shared cache may answer


def fresh_copy(value: Any) -> Any:
    """A copy of nested dicts and lists with shared leaves: ~10x cheaper than ``copy.deepcopy``.

    Each container is copied in C (``dict.copy``, ``list.copy``) and only its nested containers
    are visited again: half the cost of rebuilding it item by item on a ticker."""
    kind = type(value)
    if kind is dict:
        out = value.copy()
        for k, v in value.items():
            t = type(v)
            if t is dict or t is list:
                out[k] = fresh_copy(v)
        return out
    if kind is list:
        out = value.copy()
        for i, v in enumerate(value):
            t = type(v)
            if t is dict or t is list:
                out[i] = fresh_copy(v)
        return out
    return value


def _frozen(value: Any) -> bytes | None:
    """A ``marshal`` image of an answer made of long lists (books, candles, trades), or None.

    Such answers are copied for each hit; ``marshal.loads`` rebuilds them in C several times faster
    than any Python walk (a 100-level book: ~12 us against ~100 us). A flat dict (a ticker) is the
    other way round (~4 us copied, ~11 us unmarshalled: every key is a new string), and so is a
    dict of them (tickers, markets), so those keep the Python copy, as does an answer holding
    anything marshal does not know (a subclass, a Decimal)."""
    if not _has_long_list(value):
        return None
    try:
        return marshal.dumps(value)
    except ValueError:
        return None


def _has_long_list(value: Any) -> bool:
    """Whether ``value`` is, or directly holds, a list of more than ``_SAMPLE`` items."""
    kind = type(value)
    if kind is list:
        return len(value) > _SAMPLE
    return kind is dict and any(type(v) is list and len(v) > _SAMPLE for v in value.values())


class Flight:
    """Identical calls waiting for one leader's request.

    Made only when a second identical call arrives (until then the cache marks the key with the
    leader's own context), so a call nobody joins allocates no event or future. Threads wait on an
    event, tasks on a future; nobody holds a lock while waiting.
    """

    __slots__ = ("abandoned", "error", "event", "future", "rejoin", "result", "series", "waiters")

    def __init__(self, asynchronous: bool, rejoin: Any, series: bool = False) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.waiters = 0
        self.rejoin = rejoin  # (ctx) -> Shortcut | None: ask the cache again when the leader is gone
        # an OHLCV series: ``result`` is (candles, default count or None) and each waiter takes
        # its own ``limit`` from it
        self.series = series
        self.event = None if asynchronous else threading.Event()
        self.future: asyncio.Future[Any] | None = (
            asyncio.get_running_loop().create_future() if asynchronous else None
        )

    def land(self, result: Any, error: BaseException | None, abandoned: bool = False) -> None:
        """Hand the leader's outcome (or the news that it gave up) to every waiting call."""
        self.result, self.error, self.abandoned = result, error, abandoned
        if self.event is not None:
            self.event.set()
        elif self.future is not None and not self.future.done():
            loop = self.future.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self.future.set_result(None)
            else:  # landed from another thread (a sync stage used by an async client)
                loop.call_soon_threadsafe(_settle, self.future)

    def wait(self, ctx: CallContext) -> Shortcut | None:
        """Block until the leader lands, at most until this call's deadline (sync clients).

        Returns the answer as a ``Shortcut``, or what the cache says now if the leader gave up
        (``None``: this call leads the request itself).
        """
        assert self.event is not None
        left = _time_left(ctx)
        if not self.event.wait(left if left > 0.0 else 0.0):
            raise DeadlineExceeded(
                ctx.endpoint.name, ctx.rt.policy.call_deadline, "waiting for an identical call"
            )
        return self._outcome(ctx)

    async def wait_async(self, ctx: CallContext) -> Shortcut | None:
        """Await the leader's outcome (async clients); cancelling a waiter leaves the leader be."""
        assert self.future is not None
        left = _time_left(ctx)
        try:
            await asyncio.wait_for(asyncio.shield(self.future), left if left > 0.0 else 0.0)
        except TimeoutError:
            raise DeadlineExceeded(
                ctx.endpoint.name, ctx.rt.policy.call_deadline, "waiting for an identical call"
            ) from None
        return self._outcome(ctx)

    def _outcome(self, ctx: CallContext) -> Shortcut | None:
        if self.abandoned:  # the leader was cancelled: one waiter takes over, the others join it
            return self._lead_instead(ctx)
        error = self.error
        if error is not None:
            own = _own_copy(error)  # each caller raises (and annotates) an exception of its own
            if own is error:
                raise error
            raise own from error
        if self.series:
            candles, default = self.result
            tail = _tail(candles, ctx.cache_limit, default)
            if tail is None:  # this caller wants more than the leader's answer holds: ask itself
                return self._lead_instead(ctx)
            return Shortcut(fresh_copy(tail))
        return Shortcut(fresh_copy(self.result))

    def _lead_instead(self, ctx: CallContext) -> Shortcut | None:
        """Not served by this flight: ask the cache again (a hit, another flight, or lead)."""
        ctx.cache_hit = False
        ctx.cache_flight = None
        return self.rejoin(ctx)


def _own_copy(error: BaseException) -> BaseException:
    """A copy of the leader's error for one waiter: same class, message and attributes, and a
    traceback of its own (the waiter's driver then sets ``.attempts`` on it, not on the leader's);
    the original when no copy can be made.

    Built with ``__new__`` (``__init__`` is not run again: our errors take other arguments than
    their message), so the copy is still the ccxt class a caller catches."""
    cls = type(error)
    try:
        own = cls.__new__(cls, *error.args)
        own.__dict__.update(error.__dict__)
    except Exception:
        return error
    return own


def _settle(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


def _time_left(ctx: CallContext) -> float:
    """Seconds left before this call's deadline."""
    return ctx.started + ctx.rt.policy.call_deadline - time.perf_counter()


# Rough sizes (CPython, 64-bit) for ``approx_size``: a float or small int with its slot in a
# container, a list header, a dict header and the cost of one more key with its value slot.
_NUMBER = 32
_LIST = 56
_DICT = 64
_DICT_KEY = 104
_SAMPLE = 8  # containers longer than this are estimated from their first few elements


def approx_size(value: Any) -> int:
    """A rough byte size of an answer (nested dicts, lists, strings, numbers), computed once when it
    is stored: long containers are estimated from a sample of their first elements (a thousand
    candles cost one candle's estimate times a thousand), so it stays cheap on big answers."""
    kind = type(value)
    if kind is list or kind is tuple:
        n = len(value)
        if n == 0:
            return _LIST
        if n <= _SAMPLE:
            return _LIST + 8 * n + sum(approx_size(v) for v in value)
        sample = sum(approx_size(value[i]) for i in range(_SAMPLE // 2))
        return _LIST + 8 * n + n * sample // (_SAMPLE // 2)
    if kind is dict:
        n = len(value)
        if n <= 4 * _SAMPLE:
            return _DICT + _DICT_KEY * n + sum(approx_size(v) for v in value.values())
        it = iter(value.values())
        sample = sum(approx_size(next(it)) for _ in range(_SAMPLE))
        return _DICT + _DICT_KEY * n + n * sample // _SAMPLE
    if kind is str:
        return 49 + len(value)
    return _NUMBER


class _Entry:
    __slots__ = ("frozen", "size", "stored", "value")

    def __init__(self, value: Any, stored: float, size: int, frozen: bytes | None) -> None:
        self.value = value
        self.stored = stored
        self.size = size
        self.frozen = frozen  # a marshal image of value, for large answers (see _frozen)

    def copy(self) -> Any:
        """A copy of the answer for a caller (the entry's own object never leaves the cache)."""
        frozen = self.frozen
        return marshal.loads(frozen) if frozen is not None else fresh_copy(self.value)


class CacheStage(Stage):
    """TTL cache, request coalescing and stale-if-error for one client."""

    name = "cache"

    def __init__(
        self, exchange_id: str, max_entries: int, asynchronous: bool, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.exchange_id = exchange_id
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.asynchronous = asynchronous
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        # key -> the leading call's context (nobody waits yet) or the Flight its waiters share
        self._flights: dict[Any, Any] = {}
        self.evictions = 0
        self.bytes = 0
        self.shared: Any = None  # the cache shared with other processes, if any (see module doc)
        self.clock: Callable[[], float] = time.monotonic  # ages of answers (tests set their own)

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
        endpoint = ctx.endpoint
        if endpoint.name == "ohlcv":
            bound = _ohlcv_args(ctx)
            if bound.get("since") is not None:  # a fixed window: sent as asked
                return None
            if not bound.get("params"):
                return self._series_call(ctx, bound)
            # with params (an end time, a price kind): by its exact arguments, like a ticker
        elif endpoint.method == "load_markets":
            return self._markets_call(ctx)
        key = self._key(ctx)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.stored < rt.ttl:
                self._entries.move_to_end(key)
                ctx.cache_hit = True
            else:
                held = self._flights.get(key)
                if held is not None:  # an identical call is in flight: wait for it
                    return self._join(ctx, key, held)
                ctx.cache_key = key
                self._flights[key] = ctx  # a mark, not an object: a Flight only if someone joins
                if self.shared is None or self.asynchronous or rt.ttl <= 0:
                    return None
                entry = None  # leading a local miss: the shared cache may answer it
        if entry is None:  # asked without the lock
            return self._from_shared(ctx, key, now)
        return Shortcut(entry.copy())

    def _join(self, ctx: CallContext, key: Any, held: Any) -> Shortcut:
        """Wait for the identical call in flight under ``key`` (locked)."""
        flight = held if type(held) is Flight else self._open_flight(key)
        flight.waiters += 1
        ctx.cache_hit = True
        ctx.cache_flight = flight
        return Shortcut(None, flight)

    def _open_flight(self, key: Any) -> Flight:
        """Replace the leader's mark by a Flight the second identical call can wait on (locked)."""
        flight = self._flights[key] = Flight(self.asynchronous, self.on_call, type(key) is _SeriesKey)
        return flight

    def _series_call(self, ctx: CallContext, bound: dict[str, Any]) -> Shortcut | None:
        """``fetch_ohlcv`` for the latest candles: the series held answers if it holds this call's
        ``limit`` and is within its TTL; else this call leads a refresh (only the candles since the
        last one held, when that is safe) or waits for the one in flight."""
        rt = ctx.rt
        limit = bound.get("limit")
        if limit is not None and (type(limit) is not int or limit <= 0):
            return None  # an unusual limit: sent as asked, the exchange decides what it means
        ctx.cache_limit = limit
        key = _SeriesKey((bound.get("symbol"), bound.get("timeframe", "1m")))
        now = self.clock()
        tail: list[list[Any]] | None = None
        with self._lock:
            entry = self._entries.get(key)
            series: _Series | None = None
            age = 0.0
            if entry is not None:
                age = now - entry.stored
                if age >= rt.ttl and age > rt.stale_if_error:
                    # too old to answer, to serve stale or to refresh from: a refresh of the
                    # latest candles could not join it without a hole
                    self._forget(key)
                else:
                    series = entry.value
            if series is not None and age < rt.ttl:
                tail = series.tail(limit, current=True)
            if tail is not None:
                self._entries.move_to_end(key)
                ctx.cache_hit = True
            else:
                held = self._flights.get(key)
                if held is not None:
                    return self._join(ctx, key, held)
                ctx.cache_key = key
                self._flights[key] = ctx
                if series is not None and limit is not None and len(series.candles) >= limit:
                    _ask_since_last(ctx, series, age)
                return None
        return Shortcut(fresh_copy(tail))

    def _markets_call(self, ctx: CallContext) -> Shortcut | None:
        """``load_markets``: never answered from memory. ccxt keeps the markets on the exchange and
        answers a plain load from them itself (no request), a reload must reach the exchange, and
        either way the exchange must hold what ccxt set. Concurrent loads share one call (a reload
        joins none: the one in flight may be a plain load answered from old markets)."""
        reload, params = _load_markets_args(ctx)
        key = _MarketsKey(("load_markets", _freeze(params)))
        with self._lock:
            held = self._flights.get(key)
            if held is not None:
                return None if reload else self._join(ctx, key, held)
            ctx.cache_key = key
            self._flights[key] = ctx
        return None

    def on_done(
        self, ctx: CallContext, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        key = ctx.cache_key
        if key is None:
            if error is not None and ctx.cache_flight is not None:
                ctx.cache_hit = False  # handed the leader's error: a failed call, not a hit
            return result, error
        if type(key) is _SeriesKey:
            return self._series_done(ctx, key, result, error)
        markets = type(key) is _MarketsKey
        now = self.clock()
        copy = False  # whether the caller must get a copy (the object is also held by the cache)
        served_stale_age: float | None = None
        share: Any = None
        with self._lock:
            held = self._flights.pop(key, None)
            flight = held if type(held) is Flight else None
            try:  # whatever happens here, the flight lands below: its waiters never hang
                entry = self._entries.get(key)
                if error is None:
                    if markets:  # ccxt's own markets object: held (for stale-if-error) as it is
                        if entry is not None and entry.value is result:
                            entry.stored = now
                        else:
                            self._store(key, result, now, freeze=False)
                    elif ctx.rt.ttl > 0.0 or entry is None or now - entry.stored >= _stale_refresh(ctx):
                        copy = self._store(key, result, now)
                        if self.shared is not None and not ctx.cache_hit:
                            share = result  # written by the shared cache's own thread, not under this lock
                    # else: kept only for stale-if-error and the copy held is recent: nothing stored
                elif not isinstance(error, Exception):
                    pass  # cancelled (or interrupted): not an answer; waiters take over below
                elif entry is not None and self._may_serve_stale(ctx, error, now - entry.stored):
                    ctx.stale = ctx.cache_hit = True
                    served_stale_age = now - entry.stored
                    result, error, copy = entry.value, None, True
            except Exception as failure:
                self._forget(key)
                result, error, copy = None, _as_ccxt_error(ctx, failure), False
        if share is not None:
            self.shared.put(key, share, ctx.rt.ttl)  # type: ignore[union-attr]
        if flight is not None:
            if error is not None and not isinstance(error, Exception):
                flight.land(None, None, abandoned=True)
            elif copy or error is not None:
                flight.land(result, error)  # the held object, or the error: waiters copy from it
            else:  # nothing held: the waiters share one copy, the leader keeps the original
                try:
                    shared = fresh_copy(result)
                except Exception as failure:
                    flight.land(None, _as_ccxt_error(ctx, failure))
                    raise
                flight.land(shared, None)
        if served_stale_age is not None:
            self._published_stale(ctx, served_stale_age)
        if copy:
            result = fresh_copy(result)  # the stored object never leaves the cache itself
        return result, error

    def _series_done(
        self, ctx: CallContext, key: Any, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        """The end of an OHLCV series refresh: merge the answer into the series, hand the leader
        its answer and the waiters the series (each takes its own ``limit``), or serve stale."""
        now = self.clock()
        landed: tuple[list[list[Any]], int | None] | None = None
        served_stale_age: float | None = None
        copy = False
        with self._lock:
            held = self._flights.pop(key, None)
            flight = held if type(held) is Flight else None
            try:  # whatever happens here, the flight lands below: its waiters never hang
                entry = self._entries.get(key)
                if error is None:
                    if type(result) is list:
                        series, result = _refreshed(ctx, entry.value if entry is not None else None, result)
                        if series is None:
                            self._forget(key)
                        else:
                            self._store(key, series, now, approx_size(series.candles), freeze=False)
                            landed = (series.candles, series.default if series.default_current else None)
                        copy = True  # the answer's candles are the series' own
                    else:  # not candles (a stage of the user's made something else): not held
                        self._forget(key)
                elif not isinstance(error, Exception):
                    pass  # cancelled (or interrupted): not an answer; waiters take over below
                elif entry is not None and self._may_serve_stale(ctx, error, now - entry.stored):
                    series = entry.value
                    tail = series.tail(ctx.cache_limit, current=False)
                    if tail is not None:
                        ctx.stale = ctx.cache_hit = True
                        served_stale_age = now - entry.stored
                        result, error, copy = tail, None, True
                        landed = (series.candles, series.default)
            except Exception as failure:  # e.g. candles that cannot be merged: forget the series
                self._forget(key)
                result, error, copy = None, _as_ccxt_error(ctx, failure), False
        if flight is not None:
            if error is not None and not isinstance(error, Exception):
                flight.land(None, None, abandoned=True)
            elif error is not None:
                flight.land(None, error)
            elif landed is not None:
                flight.land(landed, None)
            else:  # nothing held to slice: every waiter asks for itself
                flight.land(None, None, abandoned=True)
        if served_stale_age is not None:
            self._published_stale(ctx, served_stale_age)
        if copy:
            result = fresh_copy(result)
        return result, error

    def _published_stale(self, ctx: CallContext, age: float) -> None:
        bus.publish(
            "stale_served", exchange=self.exchange_id, endpoint=ctx.endpoint.name, age_s=round(age, 3)
        )

    def peek(self, ctx: CallContext) -> tuple[bool, Any]:
        """(held, a copy of the answer held for this call) if it is young enough to serve on an
        error (its TTL or ``stale_if_error``, whichever is longer); used by the learning gate to
        answer a call it skips."""
        rt = ctx.rt
        if not rt.cacheable or ctx.endpoint.name in NEVER_STALE:
            return False, None
        limit: Any = None
        if ctx.endpoint.name == "ohlcv":
            bound = _ohlcv_args(ctx)
            if bound.get("since") is not None:
                return False, None
            limit = bound.get("limit")
            if bound.get("params"):
                key = self._key(ctx)
            elif limit is not None and (type(limit) is not int or limit <= 0):
                return False, None
            else:
                key = _SeriesKey((bound.get("symbol"), bound.get("timeframe", "1m")))
        elif ctx.endpoint.method == "load_markets":
            key = _MarketsKey(("load_markets", _freeze(_load_markets_args(ctx)[1])))
        else:
            key = self._key(ctx)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or self.clock() - entry.stored > max(rt.ttl, rt.stale_if_error):
            return False, None
        if type(key) is _SeriesKey:
            tail = entry.value.tail(limit, current=False)
            return (False, None) if tail is None else (True, fresh_copy(tail))
        return True, entry.copy()

    # --- internals --------------------------------------------------------------------------

    def _from_shared(self, ctx: CallContext, key: Any, now: float) -> Shortcut | None:
        """As the leader of a local miss, ask the shared cache (no lock held during the read)."""
        found = self.shared.get(key)
        if found is None or found[1] > ctx.rt.ttl:
            return None
        value, age = found
        with self._lock:
            self._store(key, value, now - age)
            held = self._flights.pop(key, None)
            flight = held if type(held) is Flight else None
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
        # Refused without sending (an open breaker, a ban or a rate-limit wait past the deadline):
        # the exchange could not be asked, as with the 429 behind it.
        return isinstance(error, (CircuitOpenError, RateLimitBackoff)) or ctx.kind_of(error) in _STALE_ON

    def _store(self, key: Any, value: Any, now: float, size: int | None = None, freeze: bool = True) -> bool:
        """Hold ``value`` under ``key``, evicting the least recently used answers beyond the entry
        and byte bounds; False (nothing held) when it alone is larger than the byte bound.
        ``freeze=False`` for OHLCV series, which are merged and sliced rather than copied whole."""
        if size is None:
            size = approx_size(value)
        entries = self._entries
        if size > self.max_bytes:
            return False
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        frozen = _frozen(value) if freeze else None
        if frozen is not None:
            size += len(frozen)
            if size > self.max_bytes:
                return False
        entries[key] = _Entry(value, now, size, frozen)
        self.bytes += size
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = entries.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1
        return key in entries

    def _forget(self, key: Any) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size

    def clear(self) -> None:
        """Forget every cached answer (in-flight calls still land for their waiters)."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def size(self) -> int:
        """How many answers are held."""
        return len(self._entries)

    def waiting(self) -> int:
        """How many calls wait for an identical one in flight."""
        with self._lock:
            return sum(f.waiters for f in self._flights.values() if type(f) is Flight)

    def usage(self) -> dict[str, int]:
        """Entries and approximate bytes held, and evictions so far (for ``stats()``)."""
        return {"entries": len(self._entries), "bytes": self.bytes, "evictions": self.evictions}


def _as_ccxt_error(ctx: CallContext, failure: Exception) -> Exception:
    """A failure of the cache itself, as the ccxt error a caller already catches (drop-in)."""
    if isinstance(failure, ccxt.BaseError):
        return failure
    error = ccxt.BadResponse(
        f"{ctx.endpoint.name}: the answer could not be cached ({type(failure).__name__}: {failure}); "
        "a null timestamp in candles is a likely cause (quality_policy 'off' lets it through)"
    )
    error.__cause__ = failure
    return error


def _stale_refresh(ctx: CallContext) -> float:
    """How old the copy held only for stale-if-error (TTL 0) may get before a new answer replaces
    it: a tight loop then copies an answer at most about once a second, not on every call."""
    return min(1.0, ctx.rt.stale_if_error / 10.0)


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
_SERIES_CAP = 5000  # no series holds more candles, whatever the exchange sends in one answer
_ARRIVAL_S = 10.0  # the most an answer's candles may have aged before it was stored (seconds)
_open_time = itemgetter(0)


class _SeriesKey(tuple):  # type: ignore[type-arg]
    """The key of a "latest candles" series, (symbol, timeframe): a type of its own, so that
    ``on_done`` tells it from an exact-arguments key with one ``type`` check."""

    __slots__ = ()


class _MarketsKey(tuple):  # type: ignore[type-arg]
    """The key of ``load_markets`` (its params; ``reload`` is not part of it)."""

    __slots__ = ()


class _Series:
    """The latest candles of one symbol and timeframe as the exchange sent them, oldest first.

    ``span`` is the most candles the exchange sent for it in one answer: the series never holds
    more, so a ``limit`` it holds is one the exchange would have answered in full. ``default`` is
    how many candles the exchange sends when asked without a limit (learned from such an answer);
    ``default_current`` says whether that answer is the series' latest update, the only time its
    last ``default`` candles are sure to be what the exchange would send (a market younger than
    the exchange's default answers with all it has, and that grows).
    """

    __slots__ = ("candles", "default", "default_current", "span")

    def __init__(
        self, candles: list[list[Any]], span: int, default: int | None, default_current: bool
    ) -> None:
        self.candles = candles  # never changed in place: a refresh makes a new list
        self.span = span
        self.default = default
        self.default_current = default_current

    def tail(self, limit: int | None, current: bool) -> list[list[Any]] | None:
        """The candles a call with ``limit`` gets, or None when the series cannot tell them;
        ``current=False`` (stale answers) accepts a default count learned before the last update."""
        if limit is None and (current and not self.default_current):
            return None
        return _tail(self.candles, limit, self.default)


def _tail(candles: list[list[Any]], limit: int | None, default: int | None) -> list[list[Any]] | None:
    """The last ``limit`` candles (without limit: the ``default`` count), if ``candles`` hold them."""
    want = limit if limit is not None else default
    if want is None or len(candles) < want:
        return None
    return candles[-want:]


def _ohlcv_args(ctx: CallContext) -> dict[str, Any]:
    bound = dict(zip(_OHLCV_NAMES, ctx.args, strict=False))
    bound.update(ctx.kwargs)
    return bound


def _ask_since_last(ctx: CallContext, series: _Series, age: float) -> None:
    """Rewrite this call to fetch only the candles from the last one held (it may have changed),
    when one answer surely brings them all: the series was the latest when it was stored ``age``
    seconds ago (less the time its answer took to arrive: ``_ARRIVAL_S`` allows for that), so at
    most ``(age + _ARRIVAL_S) / timeframe + 2`` candles have opened since its last one began.
    Asked with a ``limit`` above that bound, an answer that fills it is impossible (``_refreshed``
    refuses it)."""
    bound = _ohlcv_args(ctx)
    symbol, timeframe = bound.get("symbol"), bound.get("timeframe", "1m")
    try:
        step = ccxt.Exchange.parse_timeframe(timeframe)
    except Exception:  # a timeframe ccxt cannot read: fetch the whole window
        return
    if not step or step <= 0:
        return
    needed = int((age + _ARRIVAL_S) // step) + 2
    ask = min(series.span, 2 * needed + 8)
    if needed >= ask:  # more may be missing than one answer of the series' size: fetch whole
        return
    if ctx.asked is None:
        ctx.asked = (ctx.args, ctx.kwargs)
    ctx.cache_series = series
    ctx.args = (symbol, timeframe)
    ctx.kwargs = {"since": series.candles[-1][0], "limit": ask}


def _refreshed(ctx: CallContext, held: _Series | None, fresh: list[Any]) -> tuple[_Series | None, list[Any]]:
    """The series after ``fresh`` candles, and this call's answer from them.

    A call sent as asked gets the exchange's answer itself; a refresh since the last candle held
    (``ctx.cache_series``) gets the last ``limit`` candles of the merged series. Raises
    ``ccxt.BadResponse`` when a refresh cannot say what the latest candles are (an answer that
    fills the limit sent, or that misses the last candle held and is too short on its own)."""
    limit = ctx.cache_limit
    base = ctx.cache_series
    if base is not None:  # a refresh from the last candle held
        sent = ctx.kwargs.get("limit")
        if isinstance(sent, int) and len(fresh) >= sent:
            raise ccxt.BadResponse(
                f"ohlcv: {len(fresh)} candles since the last one held, more than time allows; "
                "asked again whole on the next call"
            )
        candles = _merge_candles(base.candles, fresh)
        if len(candles) < limit:  # the answer did not join the series and is too short alone
            raise ccxt.BadResponse(
                "ohlcv: the refresh from the last candle held came back without it; "
                "asked again whole on the next call"
            )
        series = _Series(_bounded(candles, base.span), base.span, base.default, False)
        return series, series.candles[-limit:]
    if not fresh:  # nothing to hold (an empty answer): the caller gets it as it is
        return None, fresh
    span = min(max(held.span if held is not None else 0, len(fresh)), _SERIES_CAP)
    candles = _merge_candles(held.candles, fresh) if held is not None else fresh
    if limit is None:
        series = _Series(_bounded(candles, span), span, len(fresh), True)
    else:
        series = _Series(_bounded(candles, span), span, held.default if held is not None else None, False)
    return series, fresh


def _bounded(candles: list[list[Any]], span: int) -> list[list[Any]]:
    return candles[-span:] if len(candles) > span else candles


def _merge_candles(held: list[list[Any]], fresh: list[Any]) -> list[list[Any]]:
    """Held candles with ``fresh`` ones merged in by open time (fresh wins), in time order.

    Only an answer that overlaps the held candles joins them: one that begins after the last
    held candle would leave a hole (candles neither answer holds), or keep that last candle as it
    was while still forming. The held candles are then dropped and the series restarts."""
    if not fresh or not held:
        return fresh
    first_new = fresh[0][0]
    if first_new > held[-1][0]:
        return fresh
    return held[: bisect_left(held, first_new, key=_open_time)] + fresh


def _load_markets_args(ctx: CallContext) -> tuple[Any, Any]:
    """(reload, params) of a ``load_markets(reload=False, params={})`` call."""
    args, kwargs = ctx.args, ctx.kwargs
    reload = kwargs.get("reload", args[0] if args else False)
    params = kwargs.get("params", args[1] if len(args) > 1 else None)
    return reload, params or {}
