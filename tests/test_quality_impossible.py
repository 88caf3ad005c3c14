"""Logically impossible values never reach the caller silently, whatever the score says.

Under ``raise`` an answer holding one (high < low, open or close outside [low, high], a negative
price or volume, a crossed book, a null timestamp, an infinite or NaN number) raises
``DataQualityError`` even when the score is above the minimum; under ``repair`` it is dropped and
the report and a warning event say so. The score threshold only governs soft defects (gaps,
staleness, outliers).
"""

from __future__ import annotations

from typing import Any

import ccxt
import pytest
from structlog.testing import capture_logs

from hardened import DataQualityError, HardenedClient
from hardened.quality import QualityMonitor
from hardened.telemetry.events import bus

NOW = 1_750_000_020_000
MINUTE = 60_000
INF = float("inf")
NAN = float("nan")


def candles(n: int = 20) -> list[list[Any]]:
    last = NOW // MINUTE * MINUTE
    return [[last - (n - 1 - i) * MINUTE, 100.0, 101.0, 99.0, 100.5, 5.0] for i in range(n)]


def check(endpoint: str, result: Any, policy: str = "raise", min_score: float = 50, **kw: Any) -> Any:
    extra = {"timeframe": "1m"} if endpoint == "ohlcv" else {}
    return QualityMonitor().check(
        endpoint, result, policy=policy, min_score=min_score, now_ms=NOW, **extra, **kw
    )


def _one_bad_candle(i: int, value: Any) -> list[list[Any]]:
    rows = candles()
    rows[7][i] = value
    return rows


OHLCV_IMPOSSIBLE = {
    "high below low": _one_bad_candle(2, 98.0),
    "close above high": _one_bad_candle(4, 102.0),
    "open below low": _one_bad_candle(1, 98.5),
    "negative price": _one_bad_candle(3, -99.0),
    "negative volume": _one_bad_candle(5, -1.0),
    "NaN close": _one_bad_candle(4, NAN),
    "infinite high": _one_bad_candle(2, INF),
    "infinite volume": _one_bad_candle(5, INF),
    "null timestamp": _one_bad_candle(0, None),
}


@pytest.mark.parametrize("name", sorted(OHLCV_IMPOSSIBLE))
def test_one_impossible_candle_in_twenty_raises_under_raise(name: str) -> None:
    rows = OHLCV_IMPOSSIBLE[name]
    with pytest.raises(DataQualityError) as caught:
        check("ohlcv", rows, min_score=0)  # even a minimum of 0 does not let it through
    assert "impossible" in str(caught.value)
    assert caught.value.report.impossible


@pytest.mark.parametrize("name", sorted(OHLCV_IMPOSSIBLE))
def test_repair_drops_the_impossible_candle_and_says_so(name: str) -> None:
    rows = OHLCV_IMPOSSIBLE[name]
    with capture_logs() as logs:
        fixed, report = check("ohlcv", rows, policy="repair")
    assert len(fixed) == 19 and report.repaired and not report.impossible
    assert any(e["event"] == "data_quality_repaired" and e["log_level"] == "warning" for e in logs)


def test_warn_passes_impossible_values_but_says_so() -> None:
    rows = OHLCV_IMPOSSIBLE["high below low"]
    with capture_logs() as logs:
        result, report = check("ohlcv", rows, policy="warn")
    assert result is rows and report.impossible
    assert any(e["log_level"] == "warning" and "ohlc_inconsistent" in e["issues"] for e in logs)


def test_soft_defects_are_still_judged_by_the_score() -> None:
    rows = candles()
    del rows[10]  # a gap: a soft defect
    result, report = check("ohlcv", rows)
    assert result is rows and report.has("gap") and 50 <= report.score < 100 and not report.impossible


TICKER = {
    "symbol": "BTC/USDT",
    "timestamp": NOW - 1000,
    "high": 110.0,
    "low": 90.0,
    "bid": 100.0,
    "ask": 100.5,
    "last": 100.2,
    "close": 100.2,
    "open": 95.0,
    "vwap": 100.0,
    "baseVolume": 10.0,
    "quoteVolume": 1000.0,
    "info": {},
}


@pytest.mark.parametrize(
    "change",
    [
        {"bid": 100.6},  # crossed: bid above ask
        {"last": -100.2},
        {"high": 80.0},  # 24h high below the low
        {"baseVolume": -1.0},
        {"ask": INF},
        {"quoteVolume": NAN},
    ],
)
def test_an_impossible_ticker_raises_under_raise(change: dict[str, Any]) -> None:
    with pytest.raises(DataQualityError):
        check("ticker", {**TICKER, **change}, min_score=0, symbol="BTC/USDT")


def test_a_zero_vwap_is_not_impossible() -> None:
    _, report = check("ticker", {**TICKER, "vwap": 0.0}, symbol="BTC/USDT")  # no trades in the window
    assert report.has("nonpositive_price") and not report.impossible


def _book(**levels: Any) -> dict[str, Any]:
    book = {
        "symbol": "BTC/USDT",
        "bids": [[100.0 - i, 1.0] for i in range(50)],
        "asks": [[100.5 + i, 1.0] for i in range(50)],
        "timestamp": NOW - 100,
        "nonce": None,
    }
    book.update(levels)
    return book


@pytest.mark.parametrize(
    "book",
    [
        _book(bids=[[100.5, 1.0]] + [[100.0 - i, 1.0] for i in range(49)]),  # best bid == best ask
        _book(asks=[[100.5 + i, 1.0] for i in range(49)] + [[200.0, -1.0]]),  # a negative amount
        _book(asks=[[100.5 + i, 1.0] for i in range(49)] + [[INF, 1.0]]),
    ],
)
def test_an_impossible_book_raises_under_raise(book: dict[str, Any]) -> None:
    with pytest.raises(DataQualityError):
        check("order_book", book, min_score=0, symbol="BTC/USDT")


def _trades(n: int = 20) -> list[dict[str, Any]]:
    return [
        {
            "id": str(i),
            "timestamp": NOW - 10_000 + i,
            "price": 100.0,
            "amount": 1.0,
            "side": "buy",
            "symbol": "BTC/USDT",
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("field,value", [("timestamp", None), ("amount", -1.0), ("price", INF)])
def test_an_impossible_trade_raises_under_raise_and_is_dropped_under_repair(field: str, value: Any) -> None:
    trades = _trades()
    trades[3][field] = value
    with pytest.raises(DataQualityError):
        check("trades", trades, min_score=0)
    fixed, report = check("trades", trades, policy="repair")
    assert len(fixed) == 19 and report.repaired and not report.impossible


def test_the_client_never_hands_an_impossible_candle_to_the_caller() -> None:
    raw = ccxt.binance()
    rows = OHLCV_IMPOSSIBLE["high below low"]
    raw.fetch_ohlcv = lambda symbol, timeframe="1m", since=None, limit=None, params=None: [
        list(r) for r in rows
    ]
    raw.milliseconds = lambda: NOW
    ex = HardenedClient(raw, max_retries=0, cache_ttl=0, stale_if_error=0)
    with pytest.raises(DataQualityError):
        ex.fetch_ohlcv("BTC/USDT", "1m")
    repaired = HardenedClient(raw, max_retries=0, cache_ttl=0, stale_if_error=0, quality_policy="repair")
    events: list[dict[str, Any]] = []
    unsubscribe = bus.subscribe(events.append)
    try:
        got = repaired.fetch_ohlcv("BTC/USDT", "1m")
    finally:
        unsubscribe()
    assert len(got) == 19 and all(c[2] >= c[3] for c in got)
    assert any(e["kind"] == "quality_issues" and "repaired" in e["report"] for e in events)
