"""The cache answers what the exchange would: OHLCV limits and holes, coalesced calls with other
limits, account endpoints, ``load_markets(reload=True)``, and each waiter's own error.

Time is injected: the cache's ``clock`` and the fake venue's ``now_ms`` move together, nothing
sleeps. Threads meet on events; ``_until`` only polls for a waiter to have joined a flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient
from hardened.pipeline.cache import _merge_candles
from hardened.sim import Simulator

FAST = {"initial_delay": 0.0, "jitter": 0.0, "max_retries": 0, "quality_policy": "off"}
T0 = 1_700_000_000_000 // 60_000 * 60_000 + 30_000  # mid-candle


class Clock:
    """The cache's clock (seconds) and the venue's (ms), moved together by ``advance``."""

    def __init__(self, venue: Venue) -> None:
        self.t = 1000.0
        self.venue = venue

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.venue.now_ms += int(seconds * 1000)


class Venue:
    """A fake exchange's candles up to ``now_ms`` (the last one still forming, its close moving),
    answered as Binance does: 500 without a limit, at most 1000, from ``since`` when given."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms
        self.calls: list[dict[str, Any]] = []
        self.skip_since = 0  # misbehave: start a since-answer this many candles late
        self.gate: threading.Event | None = None  # block the next call until set
        self.entered = threading.Event()

    def candles(self, timeframe: str, since: int | None, limit: int | None) -> list[list[float]]:
        step = ccxt.Exchange.parse_timeframe(timeframe) * 1000
        last = self.now_ms // step * step
        count = min(limit or 500, 1000)
        first = last - (count - 1) * step if since is None else -(-since // step) * step
        opens = range(first, min(last, first + (count - 1) * step) + 1, step)
        return [self._candle(t, step) for t in opens]

    def _candle(self, t: int, step: int) -> list[float]:
        close = 100.0 + (t // step) % 50 + ((self.now_ms - t) / 1e6 if t + step > self.now_ms else 0.0)
        return [t, 100.0, 200.0, 50.0, close, 1.0]

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since: Any = None, limit: Any = None, params: Any = None
    ) -> list[list[float]]:
        self.calls.append({"since": since, "limit": limit})
        gate, self.gate = self.gate, None
        if gate is not None:
            self.entered.set()
            gate.wait(5)
        if since is not None and self.skip_since:
            step = ccxt.Exchange.parse_timeframe(timeframe) * 1000
            since += self.skip_since * step
        return self.candles(timeframe, since, limit)


def ohlcv_client(venue: Venue, **settings: Any) -> tuple[HardenedClient, Clock]:
    raw = ccxt.binance()
    raw.fetch_ohlcv = venue.fetch_ohlcv
    ex = HardenedClient(raw, **{**FAST, **settings})
    clock = Clock(venue)
    ex._hd.cache.clock = clock
    return ex, clock


def _until(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


def _held(ex: HardenedClient) -> list[list[float]]:
    """The candles the client's one OHLCV series holds."""
    (entry,) = ex._hd.cache._entries.values()
    return getattr(entry.value, "candles", entry.value)


# --- OHLCV: a series never has a hole -------------------------------------------------------------


def test_a_series_idle_past_stale_if_error_is_forgotten_not_joined_with_a_hole() -> None:
    venue = Venue()
    ex, clock = ohlcv_client(venue)  # OHLCV defaults: TTL 2 s, stale_if_error 120 s
    ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    clock.advance(600)  # ten candles later, past stale_if_error: the series is too old to extend
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=5) == venue.candles("1m", None, 5)
    assert venue.calls[-1] == {"since": None, "limit": 5}
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=10) == venue.candles("1m", None, 10)  # no hole


def test_a_refresh_after_a_long_idle_does_not_stop_short_of_now() -> None:
    """Within a long stale_if_error, more candles may have opened than one refresh brings: the
    refresh since the last candle held must not end hours ago."""
    venue = Venue()
    ex, clock = ohlcv_client(venue, endpoints={"ohlcv": {"stale_if_error": 86_400}})
    ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    clock.advance(10 * 3600)  # 600 candles: more than a page from the last one held
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=5) == venue.candles("1m", None, 5)


def test_a_refresh_that_skips_the_last_candle_held_leaves_no_hole() -> None:
    venue = Venue()
    ex, clock = ohlcv_client(venue)
    ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    clock.advance(60)
    venue.skip_since = 3  # a broken answer: starts three candles after the one asked for
    with pytest.raises(ccxt.BadResponse):
        ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    venue.skip_since = 0
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=5) == venue.candles("1m", None, 5)
    assert venue.calls[-1] == {"since": None, "limit": 5}  # the series was forgotten: whole


def test_an_answer_that_only_follows_the_held_candles_replaces_them() -> None:
    """Held candles are kept only under an answer that overlaps them: one that merely follows
    would keep the last held candle as it was while it was still forming."""
    held = [[i * 60_000, 1.0, 1.0, 1.0, 1.0, 1.0] for i in range(5)]
    follows = [[i * 60_000, 2.0, 2.0, 2.0, 2.0, 2.0] for i in range(5, 8)]
    overlaps = [[i * 60_000, 3.0, 3.0, 3.0, 3.0, 3.0] for i in range(4, 8)]
    assert _merge_candles(held, follows) == follows
    assert _merge_candles(held, overlaps) == held[:4] + overlaps


# --- OHLCV: coalesced calls with other limits -----------------------------------------------------


def test_coalesced_ohlcv_calls_each_get_their_own_limit() -> None:
    venue = Venue()
    ex, _ = ohlcv_client(venue)
    venue.gate = gate = threading.Event()
    out: dict[Any, list[list[float]]] = {}

    def call(limit: int | None) -> None:
        out[limit] = ex.fetch_ohlcv("BTC/USDT", "1m", limit=limit)

    leader = threading.Thread(target=call, args=(3,))
    leader.start()
    assert venue.entered.wait(5)
    waiters = [threading.Thread(target=call, args=(n,)) for n in (1, 100, None)]
    for t in waiters:
        t.start()
    _until(lambda: ex._hd.cache.waiting() == 3)
    gate.set()
    for t in [leader, *waiters]:
        t.join(5)
    assert {k: len(v) for k, v in out.items()} == {3: 3, 1: 1, 100: 100, None: 500}
    for limit in (3, 1, 100, None):
        assert out[limit] == venue.candles("1m", None, limit)
    # the leader's answer served the one that wanted less; the others asked for themselves (or
    # one of them took its answer from the other's, whichever came first)
    assert len(venue.calls) <= 3 and all(c["limit"] != 1 for c in venue.calls)


async def test_async_coalesced_ohlcv_calls_each_get_their_own_limit() -> None:
    venue = Venue()
    inner = accxt.binance()

    async def fetch_ohlcv(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # let the others join while this one is in flight
        return venue.fetch_ohlcv(*args, **kwargs)

    inner.fetch_ohlcv = fetch_ohlcv
    async with AsyncHardenedClient(inner, **FAST) as ex:
        ex._hd.cache.clock = Clock(venue)
        limits = (3, 1, 100, 2)
        answers = await asyncio.gather(*(ex.fetch_ohlcv("BTC/USDT", "1m", limit=n) for n in limits))
    for limit, answer in zip(limits, answers, strict=True):
        assert answer == venue.candles("1m", None, limit)


# --- OHLCV: no limit means the exchange's own default ---------------------------------------------


def test_ohlcv_without_limit_gets_what_the_exchange_sends_without_one() -> None:
    venue = Venue()
    ex, clock = ohlcv_client(venue)
    assert len(ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)) == 5
    assert ex.fetch_ohlcv("BTC/USDT", "1m") == venue.candles("1m", None, None)  # 500, not the 5 held
    assert ex.fetch_ohlcv("BTC/USDT", "1m") == venue.candles("1m", None, None)  # within TTL
    clock.advance(2.5)
    assert ex.fetch_ohlcv("BTC/USDT", "1m") == venue.candles("1m", None, None)
    other, _ = ohlcv_client(Venue())
    assert len(other.fetch_ohlcv("ETH/USDT", "1m", limit=1000)) == 1000
    assert len(other.fetch_ohlcv("ETH/USDT", "1m")) == 500  # not the 1000 held


def test_a_series_refreshed_for_a_small_limit_does_not_grow() -> None:
    venue = Venue()
    ex, clock = ohlcv_client(venue)
    for _ in range(20):
        assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=5) == venue.candles("1m", None, 5)
        clock.advance(61)
    assert venue.calls[-1]["since"] is not None  # refreshed since the last candle held
    assert len(_held(ex)) == 5  # no more than the exchange ever sent at once


# --- account endpoints: client-wide settings reach market data only -------------------------------

ACCOUNT_METHODS = (
    "fetch_position",
    "fetch_positions_risk",
    "fetch_positions_for_symbol",
    "fetch_canceled_orders",
    "fetch_canceled_and_closed_orders",
    "fetch_order_with_client_order_id",
    "fetch_order_trades",
    "fetch_ledger",
    "fetch_deposits",
    "fetch_withdrawals",
    "fetch_transfers",
    "fetch_funding_history",
)


@pytest.mark.parametrize("method", ACCOUNT_METHODS)
def test_client_wide_cache_settings_never_reach_account_endpoints(method: str) -> None:
    calls: list[int] = []

    def answer(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise ccxt.NetworkError("connection reset")  # transient: stale-if-error would apply
        return {"n": len(calls), "info": {}}

    raw = ccxt.binance()
    setattr(raw, method, answer)
    ex = HardenedClient(raw, **FAST, cache_ttl=60, stale_if_error=600)
    assert getattr(ex, method)("BTC/USDT")["n"] == 1
    assert getattr(ex, method)("BTC/USDT")["n"] == 2  # asked again: not cached
    with pytest.raises(ccxt.NetworkError):
        getattr(ex, method)("BTC/USDT")  # not served stale


def test_an_account_endpoint_is_cached_when_configured_for_itself_but_positions_never_stale() -> None:
    calls: list[int] = []

    def answer(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) >= 2:
            raise ccxt.NetworkError("connection reset")
        return [{"id": "1", "info": {}}]

    raw = ccxt.binance()
    raw.fetch_ledger = answer
    raw.fetch_position = answer
    settings = {"cache_ttl": 0.5, "stale_if_error": 600}
    ex = HardenedClient(raw, **FAST, endpoints={"ledger": settings, "position": settings})
    ex._hd.cache.clock = clock = Clock(Venue())
    first = ex.fetch_ledger()
    assert ex.fetch_ledger() == first and len(calls) == 1  # its own TTL
    clock.advance(1)
    assert ex.fetch_ledger() == first  # its own stale_if_error
    calls.clear()
    ex.fetch_position("BTC/USDT:USDT")
    clock.advance(1)
    with pytest.raises(ccxt.NetworkError):  # a position is never served stale, whatever is set
        ex.fetch_position("BTC/USDT:USDT")


# --- load_markets(reload=True) reaches the exchange -----------------------------------------------


def test_load_markets_reload_reaches_the_exchange_and_later_loads_see_it() -> None:
    with Simulator(exchange="binance", seed=7) as sim:
        inner = sim.attach(ccxt.binance({"enableRateLimit": False}))
        fetch_markets = inner.fetch_markets
        drop: list[str] = []
        inner.fetch_markets = lambda params={}: [m for m in fetch_markets(params) if m["symbol"] not in drop]
        ex = HardenedClient(inner, **FAST)

        def sent() -> int:
            return sum(1 for r in sim.ground_truth() if r["endpoint"] == "markets")

        first = ex.load_markets()
        assert "ETH/USDT" in first and first is inner.markets  # what ccxt returns: its own markets
        before = sent()
        drop.append("ETH/USDT")
        reloaded = ex.load_markets(True)
        assert sent() > before and "ETH/USDT" not in reloaded
        assert reloaded is inner.markets and "ETH/USDT" not in ex.markets
        again = sent()
        assert "ETH/USDT" not in ex.load_markets(reload=True) and sent() > again
        plain = sent()
        assert "ETH/USDT" not in ex.load_markets()  # the reloaded markets, as ccxt answers
        assert sent() == plain  # and, as ccxt, without a request
        held = inner.markets

        def down(params: Any = None) -> Any:
            raise ccxt.NetworkError("connection reset")

        inner.fetch_markets = down
        assert ex.load_markets(True) == held  # a failed reload: the last markets (stale-if-error)
        assert inner.markets is held  # still what ccxt set last
        ex.close()


# --- each waiter raises an error of its own -------------------------------------------------------


def test_coalesced_waiters_each_get_their_own_copy_of_the_leaders_error() -> None:
    entered, gate = threading.Event(), threading.Event()
    calls: list[int] = []

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            gate.wait(5)
        raise ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")

    raw = ccxt.binance()
    raw.fetch_ticker = fetch_ticker
    ex = HardenedClient(raw, **{**FAST, "max_retries": 2}, failure_threshold=50, stale_if_error=0)
    errors: dict[str, BaseException] = {}

    def call(name: str) -> None:
        try:
            ex.fetch_ticker("BTC/USDT")
        except ccxt.BaseError as exc:
            errors[name] = exc

    threads = [threading.Thread(target=call, args=("leader",))]
    threads[0].start()
    assert entered.wait(5)
    threads += [threading.Thread(target=call, args=(f"waiter{i}",)) for i in range(3)]
    for t in threads[1:]:
        t.start()
    _until(lambda: ex._hd.cache.waiting() == 3)
    gate.set()
    for t in threads:
        t.join(5)
    leader = errors.pop("leader")
    assert leader.attempts == 3  # type: ignore[attr-defined]  # the leader's real attempts
    assert len(calls) == 3
    assert len({id(e) for e in errors.values()} | {id(leader)}) == 4
    for error in errors.values():
        assert type(error) is ccxt.ExchangeNotAvailable and str(error) == str(leader)
        assert error.__cause__ is leader


async def test_async_waiters_each_get_their_own_copy_of_the_leaders_error() -> None:
    inner = accxt.binance()
    calls: list[int] = []

    async def fetch_ticker(symbol: str, params: Any = None) -> Any:
        calls.append(1)
        await asyncio.sleep(0)  # the others join while this one is in flight
        raise ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")

    inner.fetch_ticker = fetch_ticker
    async with AsyncHardenedClient(inner, **{**FAST, "max_retries": 1}, failure_threshold=50) as ex:
        outcomes = await asyncio.gather(
            *(ex.fetch_ticker("BTC/USDT") for _ in range(3)), return_exceptions=True
        )
    leader, *waiters = outcomes
    assert isinstance(leader, ccxt.ExchangeNotAvailable) and leader.attempts == 2  # type: ignore[attr-defined]
    assert len({id(o) for o in outcomes}) == 3
    assert all(type(w) is ccxt.ExchangeNotAvailable and w.__cause__ is leader for w in waiters)
