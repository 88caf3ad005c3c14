"""Coalescing under cancellation and failure, the byte bound, and what a successful call allocates."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient
from hardened.pipeline.cache import CacheStage, approx_size

FAST = {"initial_delay": 0.0, "jitter": 0.0, "max_retries": 0, "quality_policy": "off"}


# --- async: the leader's cancellation is not the waiters' ---------------------------------------


async def _slow_async_client(release: asyncio.Event, calls: list[int]) -> AsyncHardenedClient:
    inner = accxt.binance()

    async def fetch_ticker(symbol: str, params: Any = None) -> Any:
        calls.append(1)
        await release.wait()
        return {"symbol": symbol, "n": len(calls)}

    inner.fetch_ticker = fetch_ticker
    return AsyncHardenedClient(inner, **FAST, cache_ttl=60)


async def test_cancelling_the_leader_does_not_cancel_its_waiters() -> None:
    release, calls = asyncio.Event(), []
    async with await _slow_async_client(release, calls) as ex:
        leader = asyncio.create_task(ex.fetch_ticker("BTC/USDT"))
        await asyncio.sleep(0.01)
        waiters = [asyncio.create_task(ex.fetch_ticker("BTC/USDT")) for _ in range(3)]
        await asyncio.sleep(0.01)
        leader.cancel()
        await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        assert leader.cancelled()
        assert all(r["symbol"] == "BTC/USDT" for r in results)
        assert len({id(r) for r in results}) == 3  # each caller its own copy
        stats = ex.stats()["endpoints"]["ticker"]
        assert stats["failures"] == {} and stats["cancelled"] == 1  # the leader was cancelled: no failure


async def test_leader_timing_out_in_wait_for_leaves_the_waiters_their_answer() -> None:
    release, calls = asyncio.Event(), []
    async with await _slow_async_client(release, calls) as ex:

        async def impatient() -> Any:
            return await asyncio.wait_for(ex.fetch_ticker("BTC/USDT"), 0.02)

        leader = asyncio.create_task(impatient())
        await asyncio.sleep(0.005)
        waiter = asyncio.create_task(ex.fetch_ticker("BTC/USDT"))
        with pytest.raises(TimeoutError):
            await leader
        release.set()
        assert (await asyncio.wait_for(waiter, 5))["symbol"] == "BTC/USDT"


async def test_a_waiter_that_gets_the_leaders_error_is_a_failure_not_a_hit() -> None:
    inner = accxt.binance()

    async def fetch_ticker(symbol: str, params: Any = None) -> Any:
        await asyncio.sleep(0.02)
        raise ccxt.BadSymbol("no such market")

    inner.fetch_ticker = fetch_ticker
    async with AsyncHardenedClient(inner, **FAST, cache_ttl=60) as ex:
        outcomes = await asyncio.gather(*(ex.fetch_ticker("X/Y") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, ccxt.BadSymbol) for o in outcomes)
        stats = ex.stats()["endpoints"]["ticker"]
        assert stats["failures"] == {"BadSymbol": 3}
        assert stats["cache_hits"] == 0 and stats["coalesced"] == 0


def test_a_sync_waiter_that_gets_the_leaders_error_is_not_a_hit() -> None:
    entered, gate = threading.Event(), threading.Event()
    raw = ccxt.binance()

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        entered.set()
        gate.wait(5)
        raise ccxt.BadSymbol("no such market")

    raw.fetch_ticker = fetch_ticker
    ex = HardenedClient(raw, **FAST, cache_ttl=60)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ex.fetch_ticker("X/Y")
        except ccxt.BaseError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call)]
    threads[0].start()
    assert entered.wait(5)
    threads.append(threading.Thread(target=call))
    threads[1].start()
    _until(lambda: ex._hd.cache.waiting() == 1)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 2
    stats = ex.stats()["endpoints"]["ticker"]
    assert stats["cache_hits"] == 0 and stats["failures"] == {"BadSymbol": 2}


def _until(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


# --- sync: a failure inside the cache itself still lands the flight ----------------------------


def test_waiters_get_the_error_when_the_ohlcv_merge_fails() -> None:
    t0 = 1_700_000_000_020_000 // 60_000 * 60_000
    entered, gate = threading.Event(), threading.Event()
    raw = ccxt.binance()

    def fetch_ohlcv(
        symbol: str, timeframe: str = "1m", since: Any = None, limit: Any = None, params: Any = None
    ):
        if since is None:
            return [[t0 + i * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0] for i in range(5)]
        entered.set()
        gate.wait(5)
        return [[None, 1.0, 2.0, 0.5, 1.5, 1.0]]  # a null timestamp: policy "off" lets it through

    raw.fetch_ohlcv = fetch_ohlcv
    ex = HardenedClient(raw, **FAST, endpoints={"ohlcv": {"cache_ttl": 0.001}})
    ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)  # a limit: refreshed since the last candle held
    time.sleep(0.005)
    outcomes: list[Any] = []

    def call() -> None:
        try:
            outcomes.append(ex.fetch_ohlcv("BTC/USDT", "1m", limit=5))
        except Exception as exc:
            outcomes.append(exc)

    leader = threading.Thread(target=call)
    leader.start()
    assert entered.wait(5)
    waiter = threading.Thread(target=call)
    waiter.start()
    _until(lambda: ex._hd.cache.waiting() == 1)
    gate.set()
    leader.join(5)
    waiter.join(5)
    assert not waiter.is_alive(), "the waiter blocks forever: the flight never landed"
    assert len(outcomes) == 2 and all(isinstance(o, ccxt.BadResponse) for o in outcomes)  # drop-in
    assert ex._hd.cache.waiting() == 0 and not ex._hd.cache._flights


# --- the byte bound ---------------------------------------------------------------------------


def test_the_cache_is_bounded_by_approximate_bytes_not_only_entries() -> None:
    candles = [[1_700_000_000_000 + i * 60_000, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(1000)]
    one = approx_size(candles)
    assert 100_000 < one < 1_000_000  # a thousand six-number rows: a few hundred kB
    raw = ccxt.binance()
    raw.fetch_ohlcv = lambda symbol, timeframe="1m", since=None, limit=None, params=None: [
        list(c) for c in candles
    ]
    ex = HardenedClient(raw, **FAST, endpoints={"ohlcv": {"cache_ttl": 60}}, cache_max_bytes=3 * one)
    for i in range(10):
        ex.fetch_ohlcv(f"S{i}/USDT", "1m")
    cache = ex.stats()["cache"]
    assert cache["entries"] == 3
    assert cache["bytes"] <= 3 * one
    assert cache["evictions"] == 7


def test_an_answer_larger_than_the_whole_bound_is_not_stored() -> None:
    stage = CacheStage("x", max_entries=10, asynchronous=False, max_bytes=100)
    assert not stage._store("k", [[1.0] * 6] * 50, time.monotonic(), None)
    assert stage.size() == 0 and stage.bytes == 0


def test_approx_size_is_cheap_and_rough() -> None:
    ticker = {"symbol": "BTC/USDT", "bid": 1.0, "ask": 2.0, "info": {"a": "1", "b": "2"}}
    assert 200 < approx_size(ticker) < 5_000
    book = {"bids": [[1.0, 2.0]] * 100, "asks": [[1.0, 2.0]] * 100, "symbol": "BTC/USDT"}
    assert 10_000 < approx_size(book) < 100_000


# --- the hot path -------------------------------------------------------------------------------


def _ticker_client(**settings: Any) -> tuple[HardenedClient, dict[str, Any]]:
    answer = {"symbol": "BTC/USDT", "bid": 1.0, "info": {"x": [1]}}
    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: answer
    return HardenedClient(raw, **FAST, rate_limit_pacing=False, **settings), answer


def test_no_copy_when_nothing_is_stored_for_later(monkeypatch: pytest.MonkeyPatch) -> None:
    import hardened.pipeline.cache as cache_module

    copies: list[Any] = []
    real = cache_module.fresh_copy
    monkeypatch.setattr(cache_module, "fresh_copy", lambda v: copies.append(v) or real(v))
    ex, answer = _ticker_client(cache_ttl=0, stale_if_error=30)
    first = ex.fetch_ticker("BTC/USDT")  # kept for stale-if-error: the caller gets a copy
    assert first == answer and first is not answer
    copies.clear()
    for _ in range(50):
        assert ex.fetch_ticker("BTC/USDT") is answer  # the stale copy is recent: nothing stored
    assert copies == []


def test_no_event_is_allocated_unless_a_second_identical_call_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hardened.pipeline.cache as cache_module

    made: list[Any] = []
    real = threading.Event
    monkeypatch.setattr(cache_module.threading, "Event", lambda: made.append(1) or real())
    ex, _ = _ticker_client(cache_ttl=0.000001)
    for _ in range(20):
        ex.fetch_ticker("BTC/USDT")
    assert made == []


def test_a_stage_that_fails_after_the_cache_still_lets_the_flight_land() -> None:
    from hardened.pipeline import Stage

    entered, gate = threading.Event(), threading.Event()

    class Broken(Stage):
        name = "broken"

        def on_done(self, ctx: Any, result: Any, error: BaseException | None) -> Any:
            raise ccxt.ExchangeError("a user stage failed")

    raw = ccxt.binance()

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        entered.set()
        gate.wait(5)
        return {"symbol": symbol}

    raw.fetch_ticker = fetch_ticker
    ex = HardenedClient(raw, **FAST, cache_ttl=60)
    stages = list(ex.pipeline.stages)
    ex._hd.pipeline = type(ex.pipeline)([*stages, Broken()], ex.pipeline.classify)
    outcomes: list[Any] = []

    def call() -> None:
        try:
            outcomes.append(ex.fetch_ticker("BTC/USDT"))
        except Exception as exc:
            outcomes.append(exc)

    leader = threading.Thread(target=call)
    leader.start()
    assert entered.wait(5)
    waiter = threading.Thread(target=call)
    waiter.start()
    _until(lambda: ex._hd.cache.waiting() == 1)
    gate.set()
    leader.join(5)
    waiter.join(5)
    assert not waiter.is_alive()
    assert len(outcomes) == 2 and all(isinstance(o, ccxt.ExchangeError) for o in outcomes)


def test_a_sync_waiter_takes_over_when_its_leader_is_interrupted() -> None:
    class Interrupted(BaseException):
        """Stands for KeyboardInterrupt or SystemExit in the leading thread."""

    entered, gate = threading.Event(), threading.Event()
    calls: list[int] = []
    raw = ccxt.binance()

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            gate.wait(5)
            raise Interrupted()
        return {"symbol": symbol, "n": len(calls)}

    raw.fetch_ticker = fetch_ticker
    ex = HardenedClient(raw, **FAST, cache_ttl=60)
    outcomes: list[Any] = []

    def call() -> None:
        try:
            outcomes.append(ex.fetch_ticker("BTC/USDT"))
        except BaseException as exc:
            outcomes.append(exc)

    leader = threading.Thread(target=call)
    leader.start()
    assert entered.wait(5)
    waiter = threading.Thread(target=call)
    waiter.start()
    _until(lambda: ex._hd.cache.waiting() == 1)
    gate.set()
    leader.join(5)
    waiter.join(5)
    assert isinstance(outcomes[0], Interrupted)
    assert outcomes[1] == {"symbol": "BTC/USDT", "n": 2}  # it led a request of its own
