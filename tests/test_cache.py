"""The cache stage: TTL, LRU bound, copies, coalescing, stale-if-error and incremental OHLCV."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, CircuitOpenError, HardenedClient
from hardened.pipeline.cache import fresh_copy
from hardened.telemetry.events import bus

FAST = {"initial_delay": 0.0, "jitter": 0.0, "max_retries": 0, "quality_policy": "off"}


class Counter:
    """A patched exchange method that counts calls and returns a new object each time."""

    def __init__(self, make: Any = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.make = make or (lambda n, *a, **k: {"symbol": a[0] if a else None, "n": n, "info": {"raw": [n]}})
        self.fail: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if self.fail is not None:
            raise self.fail
        return self.make(len(self.calls), *args, **kwargs)


def wrap(method: str, counter: Counter, **settings: Any) -> HardenedClient:
    ex = ccxt.binance()
    setattr(ex, method, counter)
    return HardenedClient(ex, **{**FAST, **settings})


def test_ticker_is_reused_within_its_ttl_as_a_fresh_copy() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=60)
    first = ex.fetch_ticker("BTC/USDT")
    first["info"]["raw"].append("edited by the bot")
    second = ex.fetch_ticker("BTC/USDT")
    assert len(counter.calls) == 1
    assert second == {"symbol": "BTC/USDT", "n": 1, "info": {"raw": [1]}}  # not the edited copy
    stats = ex.stats()["endpoints"]["ticker"]
    assert (stats["cache_hits"], stats["cache_misses"]) == (1, 1)


def test_ttl_expiry_and_different_arguments() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=0.05)
    ex.fetch_ticker("BTC/USDT")
    ex.fetch_ticker("ETH/USDT")
    ex.fetch_ticker("BTC/USDT", {"type": "spot"})  # params dicts are part of the key
    assert len(counter.calls) == 3
    time.sleep(0.06)
    ex.fetch_ticker("BTC/USDT")
    assert len(counter.calls) == 4


def test_private_endpoints_are_never_cached_unless_asked() -> None:
    counter = Counter(lambda n, *a, **k: {"free": {"USDT": n}})
    ex = wrap("fetch_balance", counter, cache_ttl=60)  # a client-wide TTL does not reach balances
    ex.fetch_balance()
    ex.fetch_balance()
    assert len(counter.calls) == 2
    asked = Counter(lambda n, *a, **k: {"free": {"USDT": n}})
    ex = wrap("fetch_balance", asked, endpoints={"balance": {"cache_ttl": 60}})
    ex.fetch_balance()
    ex.fetch_balance()
    assert len(asked.calls) == 1


def test_orders_are_never_cached() -> None:
    counter = Counter(lambda n, *a, **k: {"id": str(n)})
    ex = wrap("create_order", counter, cache_ttl=60)
    ex.create_order("BTC/USDT", "limit", "buy", 1, 1)
    ex.create_order("BTC/USDT", "limit", "buy", 1, 1)
    assert len(counter.calls) == 2


def test_markets_have_a_long_default_ttl() -> None:
    counter = Counter(lambda n, *a, **k: [{"symbol": "BTC/USDT", "n": n}])
    ex = wrap("fetch_markets", counter)
    for _ in range(5):
        ex.fetch_markets()
    assert len(counter.calls) == 1


def test_lru_bound_evicts_the_oldest() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=60, cache_max_entries=2)
    for symbol in ("A/B", "C/D", "E/F"):
        ex.fetch_ticker(symbol)
    ex.fetch_ticker("E/F")  # still held
    ex.fetch_ticker("A/B")  # evicted: fetched again
    assert [c[0][0] for c in counter.calls] == ["A/B", "C/D", "E/F", "A/B"]
    assert ex.stats()["cache"]["evictions"] >= 1


def test_concurrent_identical_calls_share_one_request() -> None:
    gate = threading.Event()
    entered = threading.Event()

    def slow(n: int, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        gate.wait(5)
        return {"symbol": args[0], "n": n}

    counter = Counter(slow)
    ex = wrap("fetch_ticker", counter, cache_ttl=60)
    results: list[Any] = []
    leader = threading.Thread(target=lambda: results.append(ex.fetch_ticker("BTC/USDT")))
    leader.start()
    assert entered.wait(5)
    followers = [
        threading.Thread(target=lambda: results.append(ex.fetch_ticker("BTC/USDT"))) for _ in range(4)
    ]
    for t in followers:
        t.start()
    time.sleep(0.05)  # let the followers reach the in-flight request
    gate.set()
    for t in [leader, *followers]:
        t.join(5)
    assert len(counter.calls) == 1
    assert results == [{"symbol": "BTC/USDT", "n": 1}] * 5
    assert len({id(r) for r in results}) == 5  # each caller got its own copy


def test_coalesced_failure_reaches_every_waiter() -> None:
    gate = threading.Event()
    entered = threading.Event()

    def slow_fail(n: int, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        gate.wait(5)
        raise ccxt.BadSymbol("no such market")

    ex = wrap("fetch_ticker", Counter(slow_fail), cache_ttl=60)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ex.fetch_ticker("X/Y")
        except ccxt.BaseError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call)]
    threads[0].start()
    assert entered.wait(5)
    threads += [threading.Thread(target=call) for _ in range(3)]
    for t in threads[1:]:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 4
    assert all(isinstance(e, ccxt.BadSymbol) for e in errors)


async def test_async_concurrent_identical_calls_share_one_request() -> None:
    inner = accxt.binance()
    calls = {"n": 0}

    async def slow(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        await asyncio.sleep(0.05)
        return {"symbol": args[0]}

    inner.fetch_ticker = slow
    async with AsyncHardenedClient(inner, **FAST, cache_ttl=60) as ex:
        results = await asyncio.gather(*(ex.fetch_ticker("BTC/USDT") for _ in range(6)))
        assert calls["n"] == 1
        assert results == [{"symbol": "BTC/USDT"}] * 6
        assert ex.stats()["endpoints"]["ticker"]["coalesced"] == 5


def test_stale_if_error_serves_the_last_good_answer_and_says_so() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=0.01, stale_if_error=60, failure_threshold=100)
    good = ex.fetch_ticker("BTC/USDT")
    time.sleep(0.02)
    counter.fail = ccxt.RequestTimeout("exchange down")
    events: list[dict[str, Any]] = []
    unsubscribe = bus.subscribe(events.append)
    try:
        stale = ex.fetch_ticker("BTC/USDT")
    finally:
        unsubscribe()
    assert stale == good
    assert ex.stats()["endpoints"]["ticker"]["stale_served"] == 1
    assert any(e["kind"] == "stale_served" and e["endpoint"] == "ticker" for e in events)


def test_stale_if_error_respects_the_age_limit() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=0.01, stale_if_error=0.02)
    ex.fetch_ticker("BTC/USDT")
    time.sleep(0.05)
    counter.fail = ccxt.RequestTimeout("exchange down")
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ticker("BTC/USDT")


def test_stale_when_the_breaker_is_open() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=0.01, stale_if_error=60, failure_threshold=1)
    good = ex.fetch_ticker("BTC/USDT")
    time.sleep(0.02)
    counter.fail = ccxt.ExchangeNotAvailable("binance GET https://x 503 Service Unavailable")
    assert ex.fetch_ticker("BTC/USDT") == good  # the failure that trips it is answered stale
    assert ex.breakers["binance_ticker"].state == "open"
    calls_before = len(counter.calls)
    assert ex.fetch_ticker("BTC/USDT") == good  # CircuitOpenError answered stale, no request
    assert len(counter.calls) == calls_before


def test_permanent_errors_are_not_hidden_by_stale_data() -> None:
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=0.01, stale_if_error=60)
    ex.fetch_ticker("BTC/USDT")
    time.sleep(0.02)
    counter.fail = ccxt.AuthenticationError("key revoked")
    with pytest.raises(ccxt.AuthenticationError):
        ex.fetch_ticker("BTC/USDT")


def test_balances_are_never_served_stale() -> None:
    counter = Counter(lambda n, *a, **k: {"free": {"USDT": n}})
    ex = wrap("fetch_balance", counter, endpoints={"balance": {"cache_ttl": 0.01, "stale_if_error": 600}})
    ex.fetch_balance()
    time.sleep(0.02)
    counter.fail = ccxt.RequestTimeout("down")
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_balance()


def test_open_breaker_without_stale_data_still_fails_fast() -> None:
    counter = Counter()
    counter.fail = ccxt.NetworkError("down")
    ex = wrap("fetch_ticker", counter, failure_threshold=1)
    with pytest.raises(ccxt.NetworkError):
        ex.fetch_ticker("BTC/USDT")
    with pytest.raises(CircuitOpenError):
        ex.fetch_ticker("BTC/USDT")


def _candles(start: int, count: int, step: int = 60_000, close: float = 100.0) -> list[list[float]]:
    return [[start + i * step, close, close + 1, close - 1, close, 1.0] for i in range(count)]


def test_ohlcv_refresh_asks_only_for_new_candles() -> None:
    t0 = 1_700_000_000_000
    seen: list[dict[str, Any]] = []

    def exchange_ohlcv(
        symbol: str, timeframe: str = "1m", since: Any = None, limit: Any = None, params: Any = None
    ):
        seen.append({"since": since, "limit": limit})
        if since is None:
            return _candles(t0, 100)
        # the last held candle, updated, and one new candle
        return [[since, 100, 105, 99, 104, 7.0], [since + 60_000, 104, 106, 103, 105, 2.0]]

    ex = ccxt.binance()
    ex.fetch_ohlcv = exchange_ohlcv
    hc = HardenedClient(ex, **FAST, endpoints={"ohlcv": {"cache_ttl": 0.01}})
    first = hc.fetch_ohlcv("BTC/USDT", "1m", limit=100)
    assert len(first) == 100
    time.sleep(0.02)
    second = hc.fetch_ohlcv("BTC/USDT", "1m", limit=100)
    assert seen[1]["since"] == first[-1][0]  # asked only from the last candle held
    assert len(second) == 100
    assert second[-2] == [first[-1][0], 100, 105, 99, 104, 7.0]  # the updated candle replaced the old
    assert second[-1][0] == first[-1][0] + 60_000
    assert second[0][0] == first[1][0]  # window slid by one
    assert hc.fetch_ohlcv("BTC/USDT", "1m", limit=10) == second[-10:]  # within TTL: from the series
    assert len(seen) == 2


def test_ohlcv_with_since_is_not_touched_by_the_series() -> None:
    counter = Counter(lambda n, *a, **k: _candles(1_700_000_000_000, 3))
    ex = wrap("fetch_ohlcv", counter, endpoints={"ohlcv": {"cache_ttl": 60}})
    ex.fetch_ohlcv("BTC/USDT", "1m", 1_700_000_000_000, 3)
    ex.fetch_ohlcv("BTC/USDT", "1m", 1_700_000_000_000, 3)
    assert len(counter.calls) == 2
    assert counter.calls[1][0][2] == 1_700_000_000_000


def test_ohlcv_asking_for_more_than_held_fetches_whole() -> None:
    counter = Counter(lambda n, *a, **k: _candles(1_700_000_000_000, k.get("limit") or 500))
    ex = wrap("fetch_ohlcv", counter, endpoints={"ohlcv": {"cache_ttl": 60}})
    assert len(ex.fetch_ohlcv("BTC/USDT", "1m", limit=50)) == 50
    assert len(ex.fetch_ohlcv("BTC/USDT", "1m", limit=200)) == 200
    assert len(counter.calls) == 2
    assert counter.calls[1][1].get("limit") == 200


def test_fresh_copy_rebuilds_containers_only() -> None:
    leaf = "x"
    original = {"a": [1, {"b": leaf}], "c": (1, 2)}
    copied = fresh_copy(original)
    assert copied == original
    assert (
        copied is not original and copied["a"] is not original["a"] and copied["a"][1] is not original["a"][1]
    )
    assert copied["c"] is original["c"]


def test_large_answers_are_served_from_a_marshal_image_and_stay_private() -> None:
    """An order book of 500 levels is copied by unmarshalling its image; each caller still gets its
    own object, and an answer marshal cannot hold (a Decimal) keeps the Python copy."""
    from decimal import Decimal

    levels = [[100.0 + i, 1.0] for i in range(500)]
    counter = Counter(
        lambda n, *a, **k: {"symbol": a[0], "bids": [row[:] for row in levels], "asks": [], "n": n}
    )
    ex = wrap("fetch_order_book", counter, cache_ttl=60)
    first = ex.fetch_order_book("BTC/USDT")
    entry = next(iter(ex._hd.cache._entries.values()))
    assert entry.frozen is not None  # large: held as an image too, counted in the byte bound
    first["bids"][0][0] = -1.0
    second = ex.fetch_order_book("BTC/USDT")
    second["bids"].clear()
    third = ex.fetch_order_book("BTC/USDT")
    assert len(counter.calls) == 1
    assert third["bids"][0] == [100.0, 1.0] and len(third["bids"]) == 500 and third["n"] == 1
    odd = Counter(lambda n, *a, **k: {"symbol": a[0], "bids": [[Decimal("1.5"), 1.0]] * 500, "asks": []})
    ex2 = wrap("fetch_order_book", odd, cache_ttl=60)
    ex2.fetch_order_book("BTC/USDT")
    assert next(iter(ex2._hd.cache._entries.values())).frozen is None
    assert ex2.fetch_order_book("BTC/USDT")["bids"][0][0] == Decimal("1.5")


def test_cache_hits_are_not_requests_for_the_retry_budget() -> None:
    """The retry budget is a share of the requests sent (Envoy's "active requests"): answers from
    memory would make it generous exactly when the exchange is asked least."""
    counter = Counter()
    ex = wrap("fetch_ticker", counter, cache_ttl=60)
    for _ in range(6):
        ex.fetch_ticker("BTC/USDT")
    assert len(counter.calls) == 1
    assert ex.stats()["retry_budget"]["requests"] == 1
