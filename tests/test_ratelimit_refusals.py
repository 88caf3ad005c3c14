"""A call refused before it is sent costs no rate-limit budget: breaker, gate, ban, early errors."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

import hardened.pipeline
from hardened import (
    AsyncHardenedClient,
    CircuitOpenError,
    DeadlineExceeded,
    HardenedClient,
    RateLimitBackoff,
    RequestSkipped,
)
from hardened.pipeline import Stage, insert_stage

FAST = {
    "initial_delay": 0.0,
    "jitter": 0.0,
    "max_retries": 0,
    "quality_policy": "off",
    "cache_ttl": 0,
    "stale_if_error": 0,
}


def _used(ex: HardenedClient) -> dict[str, float]:
    return {name: pool.used for name, pool in ex._hd.rate_limits.usage(time.time()).items()}


def _client(fail: BaseException | None = None, **settings: Any) -> HardenedClient:
    raw = ccxt.binance()

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        if fail is not None:
            raise fail
        return {"symbol": symbol, "bid": 1.0}

    raw.fetch_ticker = fetch_ticker
    return HardenedClient(raw, **{**FAST, **settings})


def test_a_sent_call_is_charged() -> None:
    ex = _client()
    ex.fetch_ticker("BTC/USDT")
    assert _used(ex)["request_weight"] == 2 and _used(ex)["raw_requests"] == 1


def test_a_call_refused_by_the_open_breaker_is_not_charged() -> None:
    ex = _client(ccxt.NetworkError("connection reset"), failure_threshold=1)
    with pytest.raises(ccxt.NetworkError):
        ex.fetch_ticker("BTC/USDT")  # went out and failed: charged
    before = _used(ex)
    with pytest.raises(CircuitOpenError):
        ex.fetch_ticker("BTC/USDT")
    assert _used(ex) == before


def test_a_call_the_gate_skips_is_not_charged() -> None:
    class Gate(Stage):
        name = "gate"

        def on_call(self, ctx: Any) -> None:
            raise RequestSkipped(ctx.endpoint.name, 0.9, "predicted to fail")

    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: {"symbol": symbol}
    ex = HardenedClient(raw, **FAST)
    stages = list(ex.pipeline.stages)
    ex._hd.pipeline = type(ex.pipeline)([stages[0], Gate(), *stages[1:]], ex.pipeline.classify)
    ex.fetch_ticker  # noqa: B018  bind the wrapper after the pipeline change
    with pytest.raises(RequestSkipped):
        ex.fetch_ticker("BTC/USDT")
    assert set(_used(ex).values()) == {0.0}


def test_a_call_refused_during_a_ban_is_not_charged() -> None:
    ex = _client()
    ex._hd.rate_limits.observe("ticker", 418, {"Retry-After": "120"}, time.time())
    before = _used(ex)
    for _ in range(3):
        with pytest.raises(RateLimitBackoff):
            ex.fetch_ticker("BTC/USDT")
    assert _used(ex) == before


@pytest.mark.parametrize(
    "error",
    [
        ccxt.ArgumentsRequired("fetchTicker() requires a symbol"),
        ccxt.BadSymbol("binance does not have market X/Y"),
    ],
)
def test_a_permanent_error_raised_before_sending_is_not_charged(error: BaseException) -> None:
    ex = _client(error)
    with pytest.raises(type(error)):
        ex.fetch_ticker("X/Y")
    assert set(_used(ex).values()) == {0.0}


# -- a rate-limit wait the call's deadline refuses ---------------------------------------------------


class _Ticker:
    """A patched fetch_ticker that answers and counts what reached it."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, symbol: str, params: Any = None) -> Any:
        self.sent += 1
        return {"symbol": symbol, "bid": 1.0}


def _held_client(ticker: Any, *, held: bool = True, **settings: Any) -> HardenedClient:
    """A client whose ticker pool the exchange holds for 10 s (a 429 with Retry-After: 10),
    while each call may take 5 s: every wait the budget asks for passes the deadline."""
    raw = ccxt.binance()
    raw.fetch_ticker = ticker
    options = {**FAST, "max_retries": 3, "call_deadline": 5.0, "failure_threshold": 2, **settings}
    ex = HardenedClient(raw, **options)
    if held:
        _hold(ex)
    return ex


def _hold(ex: HardenedClient) -> None:
    ex._hd.rate_limits.observe("ticker", 429, {"Retry-After": "10"}, time.time())


def _gate_outcomes(ex: HardenedClient) -> list[Any]:
    """What the gate hands its learner (each call it learns from), captured."""
    gate = next(stage for stage in ex.pipeline.stages if stage.name == "gate")
    seen: list[Any] = []

    class Learner:
        def clock(self) -> float:
            return 0.0

        def defer(self, handler: Any, item: Any) -> None:
            seen.append(item)

    gate.learner = Learner()
    return seen


def test_a_rate_limit_wait_past_the_deadline_is_refused_not_retried_nor_counted() -> None:
    """One 429 (Retry-After 10) and call_deadline 5: each call is refused before sending with
    RateLimitBackoff, once (no retry), and neither the breaker nor the gate counts it as the
    exchange failing ("429s never trip a breaker", nor do our own waits)."""
    ticker = _Ticker()
    ex = _held_client(ticker)
    learned = _gate_outcomes(ex)
    before = _used(ex)
    for _ in range(4):
        with pytest.raises(RateLimitBackoff) as info:
            ex.fetch_ticker("BTC/USDT")
        assert info.value.attempts == 1
        assert 9.0 < info.value.retry_in <= 10.0 and not info.value.banned
        assert "call deadline of 5s" in str(info.value)
        assert isinstance(info.value, ccxt.RateLimitExceeded)
    breaker = ex.breakers["binance_ticker"]
    assert (breaker.state, breaker.failure_count, breaker.trips) == ("closed", 0, 0)
    assert ticker.sent == 0
    assert _used(ex) == before  # nothing sent, nothing booked
    assert learned == []
    assert ex.stats()["endpoints"]["ticker"]["retries"] == 0


def test_a_rate_limit_wait_within_the_deadline_is_still_waited() -> None:
    """Only a wait past the deadline is refused: the same hold with a longer deadline is slept."""
    ticker = _Ticker()
    ex = _held_client(ticker, call_deadline=60.0)
    slept: list[float] = []
    clock = SimpleNamespace(perf_counter=time.perf_counter, sleep=slept.append)  # the driver's only
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardened.pipeline, "time", clock)
        assert ex.fetch_ticker("BTC/USDT")["bid"] == 1.0
    assert len(slept) == 1 and 9.0 < slept[0] <= 10.0
    assert ticker.sent == 1


def test_a_rate_limit_wait_past_the_deadline_serves_a_stale_answer_when_held() -> None:
    """stale-if-error covers a refused wait as it covers the 429 itself."""
    ticker = _Ticker()
    ex = _held_client(ticker, held=False, stale_if_error=30.0)
    assert ex.fetch_ticker("BTC/USDT")["bid"] == 1.0
    _hold(ex)
    assert ex.fetch_ticker("BTC/USDT")["bid"] == 1.0  # the answer held, not RateLimitBackoff
    assert ticker.sent == 1
    assert ex.stats()["endpoints"]["ticker"]["stale_served"] == 1


def test_any_stage_wait_the_deadline_refuses_is_neither_retried_nor_counted() -> None:
    """A wait of a stage of the user's own that would pass the deadline: DeadlineExceeded with
    sent=False, not retried and not counted against the breaker (nothing reached the exchange)."""

    class Pace(Stage):
        name = "pace"

        def on_attempt(self, ctx: Any) -> float | None:
            return 100.0

    ticker = _Ticker()
    raw = ccxt.binance()
    raw.fetch_ticker = ticker
    settings = {**FAST, "max_retries": 3, "call_deadline": 5.0, "failure_threshold": 2}
    ex = HardenedClient(
        raw, stages=lambda default: insert_stage(default, Pace(), after="breaker"), **settings
    )
    for _ in range(3):
        with pytest.raises(DeadlineExceeded) as info:
            ex.fetch_ticker("BTC/USDT")
        assert info.value.sent is False and info.value.attempts == 1
    breaker = ex.breakers["binance_ticker"]
    assert (breaker.state, breaker.failure_count) == ("closed", 0)
    assert ticker.sent == 0


async def test_async_a_rate_limit_wait_past_the_deadline_is_refused_not_retried_nor_counted() -> None:
    sent = []

    async def fetch_ticker(symbol: str, params: Any = None) -> Any:
        sent.append(symbol)
        return {"symbol": symbol, "bid": 1.0}

    raw = accxt.binance()
    raw.fetch_ticker = fetch_ticker
    settings = {**FAST, "max_retries": 3, "call_deadline": 5.0, "failure_threshold": 2}
    async with AsyncHardenedClient(raw, **settings) as ex:
        _hold(ex)
        for _ in range(3):
            with pytest.raises(RateLimitBackoff) as info:
                await ex.fetch_ticker("BTC/USDT")
            assert info.value.attempts == 1
        breaker = ex.breakers["binance_ticker"]
        assert (breaker.state, breaker.failure_count) == ("closed", 0)
    assert sent == []


def _waiting_client(ticker: Any, client: Any = HardenedClient) -> Any:
    """A client whose next ticker must wait 5 s: the exchange said 429 with Retry-After: 5."""
    settings = {**FAST, "call_deadline": 60.0, "max_delay": 30.0}
    ex = client(ticker, **settings)
    ex._hd.rate_limits.observe("ticker", 429, {"Retry-After": "5"}, time.time())
    return ex


def _raw_with(fetch_ticker: Any, asynchronous: bool = False) -> Any:
    raw = accxt.binance() if asynchronous else ccxt.binance()
    raw.fetch_ticker = fetch_ticker
    return raw


def test_a_call_waiting_its_turn_is_not_sent_into_a_ban_heard_meanwhile() -> None:
    """While a paced call sleeps, another call's answer says 418 for 10 minutes: the call wakes
    to a ban and is refused unsent, instead of lengthening the ban."""
    ticker = _Ticker()
    ex = _waiting_client(_raw_with(ticker))
    before = _used(ex)
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # no real wait: the ban arrives during it
        slept.append(seconds)
        ex._hd.rate_limits.observe("ticker", 418, {"Retry-After": "600"}, time.time())

    clock = SimpleNamespace(perf_counter=time.perf_counter, sleep=sleep)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardened.pipeline, "time", clock)
        with pytest.raises(RateLimitBackoff) as info:
            ex.fetch_ticker("BTC/USDT")
    assert info.value.banned and info.value.retry_in > 590
    assert len(slept) == 1 and 4.0 < slept[0] <= 5.0
    assert ticker.sent == 0
    assert _used(ex) == before  # refused unsent: its booking given back


def test_a_call_waiting_its_turn_waits_out_a_short_hold_heard_meanwhile_then_goes() -> None:
    ticker = _Ticker()
    ex = _waiting_client(_raw_with(ticker))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:  # a second 429 during the wait: 8 s more
            ex._hd.rate_limits.observe("ticker", 429, {"Retry-After": "8"}, time.time())

    clock = SimpleNamespace(perf_counter=time.perf_counter, sleep=sleep)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardened.pipeline, "time", clock)
        assert ex.fetch_ticker("BTC/USDT")["bid"] == 1.0
    assert len(slept) == 2 and 7.0 < slept[1] <= 8.0  # the new hold, once: then it went
    assert ticker.sent == 1


async def test_async_a_call_waiting_its_turn_is_not_sent_into_a_ban_heard_meanwhile() -> None:
    import asyncio

    sent: list[str] = []

    async def fetch_ticker(symbol: str, params: Any = None) -> Any:
        sent.append(symbol)
        return {"symbol": symbol, "bid": 1.0}

    async with _waiting_client(_raw_with(fetch_ticker, asynchronous=True), AsyncHardenedClient) as ex:

        async def sleep(seconds: float) -> None:
            ex._hd.rate_limits.observe("ticker", 418, {"Retry-After": "600"}, time.time())

        fake = SimpleNamespace(sleep=sleep, timeout=asyncio.timeout)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(hardened.pipeline, "asyncio", fake)
            with pytest.raises(RateLimitBackoff) as info:
                await ex.fetch_ticker("BTC/USDT")
        assert info.value.banned
    assert sent == []
