"""The hardened client over real HTTP against the simulator, for Binance, KuCoin and Bitvavo.

Results must equal raw ccxt's on clean answers; faults come from simulator profiles switched at
run time, and the simulator's ground-truth log says how many requests really reached it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest
from structlog.testing import capture_logs

from hardened import (
    AsyncHardenedClient,
    CircuitOpenError,
    HardenedClient,
    OrderStateUnknown,
    RateLimitBackoff,
)
from hardened.sim import Simulator
from hardened.testing import heal_after_first_fault

EXCHANGES = ("binance", "kucoin", "bitvavo")
SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}
NO_CACHE = {"cache_ttl": 0.0, "stale_if_error": 0.0, "quality_policy": "off"}
FAST = {"initial_delay": 0.01, "jitter": 0.0, "rate_limit_delay": 0.0, **NO_CACHE}


pytestmark = pytest.mark.usefixtures("calm")  # `sim` and `calm` come from conftest.py


def raw(sim: Simulator, exchange_id: str) -> Any:
    return sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 2000}))


def hardened(sim: Simulator, exchange_id: str, **settings: Any) -> HardenedClient:
    return HardenedClient(raw(sim, exchange_id), **{**FAST, **settings})


def requests_to(sim: Simulator, exchange_id: str, endpoint: str) -> int:
    return sum(1 for r in sim.ground_truth() if r["exchange"] == exchange_id and r["endpoint"] == endpoint)


def only(endpoint: str, **rule: Any) -> dict[str, Any]:
    return {"name": f"test-{rule['kind']}", "faults": [{"endpoints": [endpoint], **rule}]}


# --- drop-in: the same results as raw ccxt ---------------------------------------------------


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_same_results_as_raw_ccxt(sim: Simulator, exchange_id: str) -> None:
    plain, wrapped = raw(sim, exchange_id), hardened(sim, exchange_id, quality_policy="raise")
    assert wrapped.load_markets() == plain.load_markets()
    symbol = SYMBOL[exchange_id]
    since = (int(time.time()) // 3600 - 5) * 3_600_000  # a closed window: the same candles for both
    assert wrapped.fetch_ohlcv(symbol, "1m", since, 50) == plain.fetch_ohlcv(symbol, "1m", since, 50)
    ticker, plain_ticker = wrapped.fetch_ticker(symbol), plain.fetch_ticker(symbol)
    assert set(ticker) == set(plain_ticker)
    assert ticker["symbol"] == symbol and ticker["bid"] and ticker["ask"]
    book = wrapped.fetch_order_book(symbol, 20)
    assert set(book) == set(plain.fetch_order_book(symbol, 20))
    assert wrapped.fetch_balance()["total"] == plain.fetch_balance()["total"]
    assert type(wrapped.fetch_trades(symbol)) is list
    wrapped.close()


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_async_same_results_as_raw_ccxt(sim: Simulator, exchange_id: str) -> None:
    plain = sim.attach(getattr(accxt, exchange_id)({"enableRateLimit": False}))
    inner = sim.attach(getattr(accxt, exchange_id)({"enableRateLimit": False}))
    async with AsyncHardenedClient(inner, **FAST) as wrapped:
        try:
            assert await wrapped.load_markets() == await plain.load_markets()
            symbol = SYMBOL[exchange_id]
            since = (int(time.time()) // 3600 - 5) * 3_600_000
            ours = await wrapped.fetch_ohlcv(symbol, "5m", since, 20)
            assert ours == await plain.fetch_ohlcv(symbol, "5m", since, 20)
            assert (await wrapped.fetch_ticker(symbol))["symbol"] == symbol
        finally:
            await plain.close()
    assert inner.session is None or inner.session.closed  # closing the wrapper closed the exchange


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange_id", EXCHANGES)
@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "http_5xx", "status": [503]},
        {"kind": "reset"},
        {"kind": "exchange_error", "error": "maintenance"},
    ],
    ids=["503", "reset", "maintenance"],
)
def test_transient_fault_is_retried_then_succeeds(
    sim: Simulator, exchange_id: str, rule: dict[str, Any]
) -> None:
    ex = hardened(sim, exchange_id, max_retries=4, initial_delay=0.1)
    ex.load_markets()
    sim.clear_ground_truth()
    sim.set_profile(only("ticker", **rule))
    watcher = heal_after_first_fault(sim, exchange_id, "ticker")
    ticker = ex.fetch_ticker(SYMBOL[exchange_id])
    watcher.join()
    assert ticker["symbol"] == SYMBOL[exchange_id]
    stats = ex.stats()["endpoints"]["ticker"]
    assert stats["retries"] >= 1 and stats["successes"] == 1
    assert requests_to(sim, exchange_id, "ticker") == stats["retries"] + 1


@pytest.mark.parametrize("exchange_id", ["binance"])
def test_rate_limit_429_waits_for_retry_after(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(sim, exchange_id, max_retries=3)
    ex.load_markets()
    sim.set_profile(only("ticker", kind="rate_limit_429", retry_after=1))
    watcher = heal_after_first_fault(sim, exchange_id, "ticker")
    with capture_logs() as logs:
        ex.fetch_ticker(SYMBOL[exchange_id])
    watcher.join()
    delays = [e["delay_s"] for e in logs if e["event"] == "retry_scheduled"]
    assert delays and delays[0] >= 1.0
    assert logs[0]["error"] in ("RateLimitExceeded", "DDoSProtection")


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_retry_after_longer_than_the_deadline_never_trips_the_breaker(
    sim: Simulator, exchange_id: str
) -> None:
    """One 429 asking for 10 s, a call_deadline of 5 s, then a healthy exchange: the calls in
    those 10 s fail at once with RateLimitBackoff, unsent, unretried, and the breaker stays
    closed (it used to count each refused wait as a transient failure and trip)."""
    ex = hardened(sim, exchange_id, call_deadline=5, max_retries=3, failure_threshold=2)
    ex.load_markets()
    symbol = SYMBOL[exchange_id]
    sim.set_profile(only("ticker", kind="rate_limit_429", retry_after=10))
    with pytest.raises(ccxt.BaseError):
        ex.fetch_ticker(symbol)  # the 429 itself: its 10 s retry would pass the deadline
    sim.set_profile("calm")
    sim.clear_ground_truth()
    for _ in range(3):
        with pytest.raises(RateLimitBackoff) as info:
            ex.fetch_ticker(symbol)
        assert info.value.attempts == 1
    breaker = ex.breakers[f"{exchange_id}_ticker"]
    assert (breaker.state, breaker.failure_count, breaker.trips) == ("closed", 0, 0)
    assert requests_to(sim, exchange_id, "ticker") == 0
    ex.close()


def test_clock_skew_resyncs_then_succeeds(sim: Simulator) -> None:
    sim.clock_offset_ms = 120_000  # the exchange's clock is two minutes ahead of ours
    plain = raw(sim, "binance")
    with pytest.raises(ccxt.InvalidNonce):
        plain.fetch_balance()
    ex = hardened(sim, "binance")
    assert ex.fetch_balance()["total"]
    assert abs(ex.options["timeDifference"] + 120_000) < 5_000


def test_permanent_error_is_not_retried(sim: Simulator) -> None:
    sim.venue("binance").add_account("intruder-key", "the-real-secret", None)
    raw = sim.attach(ccxt.binance({"apiKey": "intruder-key", "secret": "wrong", "enableRateLimit": False}))
    raw.options["fetchCurrencies"] = False  # else load_markets' signed currencies request is refused first
    ex = HardenedClient(raw, **FAST)
    sim.clear_ground_truth()
    with pytest.raises(ccxt.AuthenticationError):
        ex.fetch_balance()
    assert requests_to(sim, "binance", "balance") == 1
    assert ex.breakers["binance_balance"].state == "closed"


def test_create_order_timeout_without_an_order_resends_once_then_says_unknown(sim: Simulator) -> None:
    ex = hardened(sim, "binance", max_retries=5, order_lookup_lag_ms=0, order_resends=1)
    ex.load_markets()
    ex.timeout = 300
    sim.set_profile(only("create_order", kind="timeout", hold=1.0))
    sim.clear_ground_truth()
    with pytest.raises(OrderStateUnknown) as info:
        ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    assert isinstance(info.value, ccxt.NetworkError)
    cid = info.value.client_order_id
    assert requests_to(sim, "binance", "create_order") == 2  # once, then once more with the same id
    assert not [o for o in sim.orders("binance") if o.client_order_id == cid]


# --- breakers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_breaker_trips_fails_fast_probes_and_recovers(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(
        sim, exchange_id, max_retries=0, failure_threshold=3, recovery_timeout=0.3, success_threshold=2
    )
    ex.load_markets()
    symbol = SYMBOL[exchange_id]
    sim.set_profile(only("ohlcv", kind="http_5xx", status=[502]))
    sim.clear_ground_truth()
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_ohlcv(symbol, "1m", limit=10)
    breaker = ex.breakers[f"{exchange_id}_ohlcv"]
    assert breaker.state == "open"
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            ex.fetch_ohlcv(symbol, "1m", limit=10)
    assert requests_to(sim, exchange_id, "ohlcv") == 3  # fail-fast never touched the network
    assert ex.fetch_ticker(symbol)["symbol"] == symbol  # other endpoints unaffected
    sim.set_profile("calm")
    time.sleep(0.35)
    assert len(ex.fetch_ohlcv(symbol, "1m", limit=10)) == 10
    assert breaker.state == "half_open"
    ex.fetch_ohlcv(symbol, "1m", limit=10)
    assert breaker.state == "closed"


async def test_async_breaker_trips_over_http(sim: Simulator) -> None:
    inner = sim.attach(accxt.kucoin({"enableRateLimit": False}))
    async with AsyncHardenedClient(inner, **FAST, max_retries=1, failure_threshold=2) as ex:
        await ex.load_markets()
        sim.set_profile(only("order_book", kind="reset"))
        with pytest.raises(ccxt.NetworkError):
            await ex.fetch_order_book("BTC/USDT")
        assert ex.breakers["kucoin_order_book"].state == "open"
        with pytest.raises(CircuitOpenError):
            await ex.fetch_order_book("BTC/USDT")


# --- concurrency ------------------------------------------------------------------------------


def _max_overlap(records: list[dict[str, Any]]) -> int:
    edges = sorted([(r["ts"], 1) for r in records] + [(r["ts"] + (r["duration"] or 0), -1) for r in records])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_concurrent_calls_reach_the_exchange_together(sim: Simulator) -> None:
    ex = hardened(sim, "binance")
    ex.load_markets()
    sim.set_profile(only("ticker", kind="latency", latency={"distribution": "fixed", "seconds": 0.3}))
    sim.clear_ground_truth()
    threads = [threading.Thread(target=ex.fetch_ticker, args=("BTC/USDT",)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    records = [r for r in sim.ground_truth() if r["endpoint"] == "ticker"]
    assert len(records) == 6
    assert _max_overlap(records) == 6  # all six were at the exchange at once: nothing serialised them


async def test_async_concurrent_calls_reach_the_exchange_together(sim: Simulator) -> None:
    inner = sim.attach(accxt.bitvavo({"enableRateLimit": False}))
    async with AsyncHardenedClient(inner, **FAST) as ex:
        await ex.load_markets()
        sim.set_profile(only("order_book", kind="latency", latency={"distribution": "fixed", "seconds": 0.3}))
        sim.clear_ground_truth()
        await asyncio.gather(*(ex.fetch_order_book("BTC/EUR") for _ in range(6)))
    records = [r for r in sim.ground_truth() if r["endpoint"] == "order_book"]
    assert len(records) == 6 and _max_overlap(records) == 6


# --- secrets ----------------------------------------------------------------------------------


def test_signed_request_errors_leak_no_secret(sim: Simulator) -> None:
    key, secret = "k3y-abcdefghijklmnop", "s3cr3t-qrstuvwxyz0123"
    inner = sim.attach(ccxt.binance({"apiKey": key, "secret": secret, "enableRateLimit": False}))
    ex = HardenedClient(inner, **FAST, max_retries=1)
    sim.set_profile(only("balance", kind="http_5xx", status=[500]))
    with capture_logs() as logs, pytest.raises(ccxt.ExchangeNotAvailable) as info:
        ex.fetch_balance()
    assert "signature=" in str(info.value)  # ccxt's own message carries the signed URL ...
    text = repr(logs) + repr(ex.stats()) + repr(ex.health())
    assert key not in text and secret not in text  # ... ours never do
    signature = str(info.value).split("signature=")[1].split()[0].split("&")[0]
    assert signature not in text
