"""The validation stage's one-pass ticker check says "clean" exactly when the full validation does.

``ticker_is_clean`` exists for speed (a clean ticker skips building a report); it must never let
through a ticker that ``validate_ticker`` would fault, and should take every ticker it would pass.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardened.quality.monitor as monitor_module
from hardened import DataQualityError, HardenedClient
from hardened.quality.thresholds import DEFAULT_THRESHOLDS
from hardened.quality.ticker import _DATA_FIELDS, ticker_is_clean, validate_ticker
from hardened.sim import Simulator

NOW = 1_767_000_000_000
FIELDS = _DATA_FIELDS  # every field the validation reads, so a field added there is generated here

# Values near a real price, so bid/ask/last relations land on both sides of every check, plus the
# values that break tickers: None (omit_zero), zero, negatives, NaN, infinities, strings, booleans.
_near = st.floats(min_value=95.0, max_value=105.0)
_value = st.one_of(
    st.none(),
    _near,
    st.sampled_from([0, 0.0, -1.0, math.nan, math.inf, -math.inf, "100", True, 100, 10**30]),
)
_timestamp = st.one_of(
    st.none(),
    st.integers(min_value=NOW - 120_000, max_value=NOW + 20_000),
    st.sampled_from([1_000_000, 0, "now", math.nan]),
)
_ticker = st.fixed_dictionaries(
    {field: _value for field in FIELDS},
    optional={
        "timestamp": _timestamp,
        "symbol": st.sampled_from(["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", None, 7]),
    },
)
_thresholds = st.builds(
    lambda prices, tolerance: replace(
        DEFAULT_THRESHOLDS, ticker_prices=prices, last_spread_tolerance=tolerance
    ),
    st.sampled_from([(), ("bid", "ask"), ("last",), ("open", "vwap")]),
    st.sampled_from([0.0, 0.01, 0.05, 0.5]),
)


@settings(max_examples=1500, deadline=None)
@given(
    _ticker,
    st.one_of(st.none(), st.just(NOW)),
    st.sampled_from([None, "BTC/USDT", "ETH/USDT"]),
    _thresholds,
)
def test_one_pass_check_agrees_with_the_full_validation(
    ticker: dict[str, Any], now_ms: int | None, symbol: str | None, th: Any
) -> None:
    full = validate_ticker(ticker, now_ms=now_ms, symbol=symbol, thresholds=th)
    assert ticker_is_clean(ticker, now_ms, symbol, th) is (full == []), full


def test_a_clean_exchange_ticker_is_clean_both_ways() -> None:
    ticker = {
        "symbol": "BTC/USDT",
        "timestamp": NOW - 1_000,
        **{f: 100.0 for f in ("bid", "ask", "last", "close", "open", "high", "low", "vwap")},
        "ask": 100.5,
        "high": 101.0,
        "low": 99.0,
        "baseVolume": 10.0,
        "quoteVolume": 1_000.0,
    }
    assert validate_ticker(ticker, now_ms=NOW, symbol="BTC/USDT") == []
    assert ticker_is_clean(ticker, NOW, "BTC/USDT", DEFAULT_THRESHOLDS)
    assert not ticker_is_clean({**ticker, "bid": 101.0}, NOW, "BTC/USDT", DEFAULT_THRESHOLDS)  # crossed
    assert not ticker_is_clean([ticker], NOW, None, DEFAULT_THRESHOLDS)


def test_the_client_takes_the_one_pass_check_and_still_refuses_a_bad_ticker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full_runs: list[Any] = []
    real = monitor_module.validate_ticker

    def counting(*args: Any, **kwargs: Any) -> Any:
        full_runs.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor_module, "validate_ticker", counting)
    with Simulator(exchange="binance", seed=5) as sim:
        ex = HardenedClient(
            sim.attach(ccxt.binance({"enableRateLimit": False})), cache_ttl=0.0, stale_if_error=0.0
        )
        ex.load_markets()
        for _ in range(5):
            assert ex.fetch_ticker("BTC/USDT")["bid"] > 0
        assert full_runs == []  # clean tickers: the one-pass check alone
        assert ex.stats()["endpoints"]["ticker"]["last_quality"] == 100.0
        sim.set_profile(
            {
                "name": "crossed",
                "faults": [{"endpoints": ["ticker"], "kind": "bad_data", "variants": ["crossed_book"]}],
            }
        )
        with pytest.raises(DataQualityError, match="crossed"):
            HardenedClient(
                sim.attach(ccxt.binance({"enableRateLimit": False})), max_retries=0, cache_ttl=0.0
            ).fetch_ticker("BTC/USDT")
        assert full_runs  # the doubtful ticker went through the full validation
