"""The cache answers what the exchange would: account endpoints only when configured for them.

Time is injected: the cache's ``clock`` and the fake venue's ``now_ms`` move together, nothing
sleeps.
"""

from __future__ import annotations

import threading
from typing import Any

import ccxt
import pytest

from hardened import HardenedClient

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
