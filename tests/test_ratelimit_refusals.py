"""A call refused before it is sent costs no rate-limit budget: breaker, gate, ban, early errors."""

from __future__ import annotations

import time
from typing import Any

import ccxt
import pytest

from hardened import CircuitOpenError, HardenedClient, RateLimitBackoff, RequestSkipped
from hardened.pipeline import Stage

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
