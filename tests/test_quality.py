"""Property tests of the data-quality checks: valid answers score 100, every injected defect is found.

Hypothesis builds valid OHLCV series (aligned, increasing, consistent, positive, calm returns),
tickers, order books and trade lists; each defect is injected into an otherwise valid answer and
the matching issue code must appear. Repairable defects must be gone after a repair, and the
caller's object must be left untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardened.quality import (
    DEFAULT_THRESHOLDS,
    QualityMonitor,
    parse_timeframe,
    repair_ohlcv,
    repair_order_book,
    repair_ticker,
    repair_trades,
    validate_ohlcv,
    validate_order_book,
    validate_ticker,
    validate_tickers,
    validate_trades,
)

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_750_000_000_000
TH = DEFAULT_THRESHOLDS
TIMEFRAMES = ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w"]
positive = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)
amounts = st.floats(min_value=1e-8, max_value=1e6, allow_nan=False, allow_infinity=False)


def codes(issues: list[Any]) -> set[str]:
    return {i.code for i in issues}


# --------------------------------------------------------------------------------------------------
# OHLCV
# --------------------------------------------------------------------------------------------------
@dataclass
class Series:
    timeframe: str
    tf_ms: int
    rows: list[list[Any]]
    now: int


@st.composite
def valid_ohlcv(draw: st.DrawFn, min_size: int = 12, max_size: int = 40) -> Series:
    """Aligned, strictly increasing, consistent, positive candles; returns within +-0.4 %."""
    timeframe = draw(st.sampled_from(TIMEFRAMES))
    tf_ms = parse_timeframe(timeframe).ms
    n = draw(st.integers(min_size, max_size))
    first = draw(st.integers(1_500_000_000_000 // tf_ms, 1_700_000_000_000 // tf_ms)) * tf_ms
    scale = draw(st.floats(1e-5, 0.004))
    volume = st.floats(0, 1e6) | st.integers(0, 10**6)
    candle = st.tuples(st.floats(-1, 1), st.floats(0, 0.01), st.floats(0, 0.01), volume)
    shapes = draw(st.lists(candle, min_size=n, max_size=n))
    prev = draw(positive)
    rows: list[list[Any]] = []
    for i, (move, wick_up, wick_down, vol) in enumerate(shapes):
        o, c = prev, prev * math.exp(scale * move)
        rows.append([first + i * tf_ms, o, max(o, c) * (1 + wick_up), min(o, c) * (1 - wick_down), c, vol])
        prev = c
    now = rows[-1][0] + draw(st.integers(0, 2 * tf_ms))
    return Series(timeframe, tf_ms, rows, now)


Defect = Callable[[Series, st.DataObject], None]


def _interior(s: Series, data: st.DataObject) -> int:
    return data.draw(st.integers(1, len(s.rows) - 2), label="position")


def high_below_low(s: Series, data: st.DataObject) -> None:
    row = s.rows[_interior(s, data)]
    row[2] = row[3] * data.draw(st.floats(0.1, 0.99))


def high_below_body(s: Series, data: st.DataObject) -> None:
    row = s.rows[_interior(s, data)]
    row[2] = max(row[1], row[4]) * 0.995
    row[3] = min(row[3], row[2])


def low_above_body(s: Series, data: st.DataObject) -> None:
    row = s.rows[_interior(s, data)]
    row[3] = min(row[1], row[4]) * 1.005
    row[2] = max(row[2], row[3])


def negative_price(s: Series, data: st.DataObject) -> None:
    row = s.rows[_interior(s, data)]
    col = data.draw(st.integers(1, 4))
    row[col] = -abs(row[col])


def zero_price(s: Series, data: st.DataObject) -> None:
    s.rows[_interior(s, data)][data.draw(st.integers(1, 4))] = 0.0


def missing_price(s: Series, data: st.DataObject) -> None:
    s.rows[_interior(s, data)][data.draw(st.integers(1, 4))] = None


def negative_volume(s: Series, data: st.DataObject) -> None:
    s.rows[_interior(s, data)][5] = -data.draw(st.floats(1e-6, 1e6))


def misaligned(s: Series, data: st.DataObject) -> None:
    s.rows[_interior(s, data)][0] += data.draw(st.integers(1, s.tf_ms - 1))


def duplicate(s: Series, data: st.DataObject) -> None:
    i = _interior(s, data)
    s.rows.insert(i + 1, list(s.rows[i]))


def out_of_order(s: Series, data: st.DataObject) -> None:
    i = _interior(s, data)
    s.rows[i], s.rows[i + 1] = s.rows[i + 1], s.rows[i]


def gap(s: Series, data: st.DataObject) -> None:
    i = _interior(s, data)
    k = data.draw(st.integers(1, max(1, min(5, len(s.rows) - 1 - i - 1))))
    del s.rows[i : i + k]


def stale(s: Series, data: st.DataObject) -> None:
    s.now = (
        s.rows[-1][0]
        + int(TH.stale_intervals * s.tf_ms)
        + TH.stale_tolerance_ms
        + data.draw(st.integers(1, 50 * s.tf_ms))
    )


def future(s: Series, data: st.DataObject) -> None:
    s.now = s.rows[-1][0] - TH.future_tolerance_ms - 1


def spike(s: Series, data: st.DataObject) -> None:
    row = s.rows[_interior(s, data)]
    factor = data.draw(st.floats(1.5, 20))
    if data.draw(st.booleans()):
        factor = 1 / factor
    row[1:5] = [x * factor for x in row[1:5]]


def short_row(s: Series, data: st.DataObject) -> None:
    i = _interior(s, data)
    s.rows[i] = s.rows[i][:4]


def garbage_row(s: Series, data: st.DataObject) -> None:
    s.rows[_interior(s, data)] = data.draw(
        st.sampled_from(["<html>", None, {"ts": 1}, ["a", "b", "c", "d", "e", "f"]])
    )


def seconds_not_ms(s: Series, data: st.DataObject) -> None:
    s.rows[0][0] //= 1000


OHLCV_DEFECTS: dict[str, tuple[Defect, str]] = {
    "high<low": (high_below_low, "ohlc_inconsistent"),
    "high<body": (high_below_body, "ohlc_inconsistent"),
    "low>body": (low_above_body, "ohlc_inconsistent"),
    "negative price": (negative_price, "nonpositive_price"),
    "zero price": (zero_price, "nonpositive_price"),
    "None price": (missing_price, "nonpositive_price"),
    "negative volume": (negative_volume, "negative_volume"),
    "misaligned ts": (misaligned, "misaligned_timestamp"),
    "duplicate": (duplicate, "duplicate_timestamp"),
    "out of order": (out_of_order, "out_of_order"),
    "gap": (gap, "gap"),
    "stale last candle": (stale, "stale"),
    "future candle": (future, "future_timestamp"),
    "outlier spike": (spike, "outlier"),
    "short row": (short_row, "malformed"),
    "garbage row": (garbage_row, "malformed"),
    "seconds timestamp": (seconds_not_ms, "absurd_timestamp"),
}
NOT_REPAIRABLE = {"gap", "stale last candle"}


@PROPERTY
@given(valid_ohlcv())
def test_valid_ohlcv_is_clean(s: Series) -> None:
    assert validate_ohlcv(s.rows, timeframe=s.timeframe, now_ms=s.now) == []
    monitor = QualityMonitor()
    for policy in ("raise", "repair", "warn"):
        result, report = monitor.check(
            "ohlcv", s.rows, policy=policy, min_score=100, timeframe=s.timeframe, now_ms=s.now
        )
        assert result is s.rows
        assert report is not None and report.score == 100 and not report.issues and not report.repaired


@pytest.mark.parametrize("name", sorted(OHLCV_DEFECTS))
@PROPERTY
@given(s=valid_ohlcv(), data=st.data())
def test_every_ohlcv_defect_is_found(name: str, s: Series, data: st.DataObject) -> None:
    defect, code = OHLCV_DEFECTS[name]
    defect(s, data)
    issues = validate_ohlcv(s.rows, timeframe=s.timeframe, now_ms=s.now)
    assert code in codes(issues), issues
    report = QualityMonitor().validate("ohlcv", s.rows, timeframe=s.timeframe, now_ms=s.now)
    assert report is not None and report.score < 100 and report.has(code)


@pytest.mark.parametrize("name", sorted(set(OHLCV_DEFECTS) - NOT_REPAIRABLE))
@PROPERTY
@given(s=valid_ohlcv(), data=st.data())
def test_repaired_ohlcv_passes_validation(name: str, s: Series, data: st.DataObject) -> None:
    defect, _ = OHLCV_DEFECTS[name]
    defect(s, data)
    before = copy.deepcopy(s.rows)
    result, report = QualityMonitor().check(
        "ohlcv", s.rows, policy="repair", min_score=0, timeframe=s.timeframe, now_ms=s.now
    )
    assert s.rows == before, "the caller's candles were modified"
    assert result is not s.rows
    assert report is not None and report.repaired and report.repairs
    # Dropping a candle leaves a hole: a gap is the only issue a repair may leave behind.
    remaining = codes(validate_ohlcv(result, timeframe=s.timeframe, now_ms=s.now))
    assert remaining <= {"gap"}, remaining
    assert report.codes == remaining
    assert report.score_before is not None and report.score >= report.score_before


@PROPERTY
@given(s=valid_ohlcv(), data=st.data())
def test_repair_keeps_valid_candles_in_place(s: Series, data: st.DataObject) -> None:
    out_of_order(s, data)
    repaired, done = repair_ohlcv(s.rows, timeframe=s.timeframe, now_ms=s.now)
    assert repaired == sorted(s.rows, key=lambda r: r[0])
    assert done == ("sorted candles by open time",)


@PROPERTY
@given(s=valid_ohlcv(min_size=20), data=st.data())
def test_more_bad_candles_score_lower(s: Series, data: st.DataObject) -> None:
    monitor = QualityMonitor()
    scores = []
    for i in range(1, 6):
        row = s.rows[i * 3]
        row[2] = row[3] * 0.5
        report = monitor.validate("ohlcv", s.rows, timeframe=s.timeframe, now_ms=s.now)
        assert report is not None
        scores.append(report.score)
    assert all(a > b for a, b in pairwise(scores)), scores


# --------------------------------------------------------------------------------------------------
# Tickers
# --------------------------------------------------------------------------------------------------
@st.composite
def valid_ticker(draw: st.DrawFn, symbol: str = "BTC/USDT") -> dict[str, Any]:
    bid = draw(positive)
    ask = bid * (1 + draw(st.floats(0, 0.02)))
    last = min(max(bid + (ask - bid) * draw(st.floats(0, 1)), bid), ask)
    open_ = last * math.exp(draw(st.floats(-0.2, 0.2)))
    high = max(bid, ask, last, open_) * (1 + draw(st.floats(0, 0.05)))
    low = min(bid, ask, last, open_) * (1 - draw(st.floats(0, 0.05)))
    base = draw(st.floats(0, 1e9))
    ticker: dict[str, Any] = {
        "symbol": symbol,
        "timestamp": NOW - draw(st.integers(0, TH.ticker_max_age_ms)),
        "datetime": None,
        "high": high,
        "low": low,
        "bid": bid,
        "bidVolume": draw(st.none() | amounts),
        "ask": ask,
        "askVolume": draw(st.none() | amounts),
        "vwap": (high + low) / 2,
        "open": open_,
        "close": last,
        "last": last,
        "previousClose": None,
        "change": last - open_,
        "percentage": (last - open_) / open_ * 100,
        "average": (last + open_) / 2,
        "baseVolume": base,
        "quoteVolume": base * last,
        "info": {},
    }
    hidden = draw(st.sets(st.sampled_from(["quote", "vwap", "range", "volumes", "timestamp"])))
    fields = {
        "quote": ("bid", "ask", "bidVolume", "askVolume"),
        "vwap": ("vwap",),
        "range": ("high", "low"),
        "volumes": ("baseVolume", "quoteVolume"),
        "timestamp": ("timestamp",),
    }
    for name in hidden:
        for field in fields[name]:
            ticker[field] = None
    return ticker


def t_all_none(t: dict[str, Any], data: st.DataObject) -> None:
    for key in t:
        if key not in ("symbol", "info"):
            t[key] = None
    t["info"] = "<html><body>502 Bad Gateway</body></html>"


def t_bid_above_ask(t: dict[str, Any], data: st.DataObject) -> None:
    t["bid"] = t["bid"] or 100.0
    t["ask"] = t["bid"] * data.draw(st.floats(0.5, 0.9999))


def t_negative_price(t: dict[str, Any], data: st.DataObject) -> None:
    t[data.draw(st.sampled_from(["last", "close", "open"]))] = -data.draw(positive)


def t_zero_price(t: dict[str, Any], data: st.DataObject) -> None:
    t[data.draw(st.sampled_from(["last", "close", "open"]))] = 0.0


def t_last_off_spread(t: dict[str, Any], data: st.DataObject) -> None:
    t["bid"] = t["bid"] or 100.0
    t["ask"] = t["ask"] or t["bid"] * 1.001
    beyond = TH.last_spread_tolerance + data.draw(st.floats(0.001, 0.9))
    t["last"] = t["ask"] * (1 + beyond) if data.draw(st.booleans()) else t["bid"] * (1 - beyond)


def t_stale(t: dict[str, Any], data: st.DataObject) -> None:
    t["timestamp"] = NOW - TH.ticker_max_age_ms - data.draw(st.integers(1, 10**8))


def t_range(t: dict[str, Any], data: st.DataObject) -> None:
    t["high"], t["low"] = 1.0, 2.0


def t_negative_volume(t: dict[str, Any], data: st.DataObject) -> None:
    t["baseVolume"] = -data.draw(amounts)


def t_no_quote(t: dict[str, Any], data: st.DataObject) -> None:
    for key in ("bid", "ask", "last", "close"):
        t[key] = None
    t["baseVolume"] = 5.0


def t_not_numbers(t: dict[str, Any], data: st.DataObject) -> None:
    t["last"] = "<html>"


TICKER_DEFECTS: dict[str, tuple[Callable[[dict[str, Any], st.DataObject], None], str]] = {
    "all None": (t_all_none, "empty_ticker"),
    "bid > ask": (t_bid_above_ask, "crossed"),
    "negative price": (t_negative_price, "nonpositive_price"),
    "zero price": (t_zero_price, "nonpositive_price"),
    "last off spread": (t_last_off_spread, "last_outside_spread"),
    "stale": (t_stale, "stale"),
    "high < low": (t_range, "range_inconsistent"),
    "negative volume": (t_negative_volume, "negative_volume"),
    "no quote": (t_no_quote, "missing_price"),
    "not numbers": (t_not_numbers, "malformed"),
}
TICKER_REPAIRABLE = {"bid > ask", "negative price", "zero price", "high < low", "negative volume"}


@PROPERTY
@given(valid_ticker())
def test_valid_ticker_is_clean(t: dict[str, Any]) -> None:
    assert validate_ticker(t, now_ms=NOW, symbol="BTC/USDT") == []
    result, report = QualityMonitor().check(
        "ticker", t, policy="raise", min_score=100, now_ms=NOW, symbol="BTC/USDT"
    )
    assert result is t and report is not None and report.score == 100


@pytest.mark.parametrize("name", sorted(TICKER_DEFECTS))
@PROPERTY
@given(t=valid_ticker(), data=st.data())
def test_every_ticker_defect_is_found(name: str, t: dict[str, Any], data: st.DataObject) -> None:
    defect, code = TICKER_DEFECTS[name]
    defect(t, data)
    assert code in codes(validate_ticker(t, now_ms=NOW)), validate_ticker(t, now_ms=NOW)


@PROPERTY
@given(t=valid_ticker(), data=st.data())
def test_all_none_ticker_scores_zero(t: dict[str, Any], data: st.DataObject) -> None:
    t_all_none(t, data)
    report = QualityMonitor().validate("ticker", t, now_ms=NOW)
    assert report is not None and report.score == 0 and report.has("empty_ticker")


@pytest.mark.parametrize("name", sorted(TICKER_REPAIRABLE))
@PROPERTY
@given(t=valid_ticker(), data=st.data())
def test_repaired_ticker_passes_validation(name: str, t: dict[str, Any], data: st.DataObject) -> None:
    defect, code = TICKER_DEFECTS[name]
    defect(t, data)
    before = copy.deepcopy(t)
    fixed, done = repair_ticker(t, now_ms=NOW)
    assert t == before and fixed is not t and done
    assert code not in codes(validate_ticker(fixed, now_ms=NOW))
    assert codes(validate_ticker(fixed, now_ms=NOW)) <= {"missing_price"}


@pytest.mark.parametrize("n", [1, 4])
def test_tickers_dict_clean_and_one_empty(n: int) -> None:
    tickers = {s: _plain_ticker(s) for s in ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"][:n]}
    assert validate_tickers(tickers, now_ms=NOW) == []
    first = next(iter(tickers))
    tickers[first] = {**dict.fromkeys(tickers[first]), "symbol": first}
    found = {i.code: i for i in validate_tickers(tickers, now_ms=NOW)}
    assert set(found) == {"empty_ticker"} and found["empty_ticker"].where == (first,)
    assert (found["empty_ticker"].severity.label == "critical") == (n == 1)


def _plain_ticker(symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
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


# --------------------------------------------------------------------------------------------------
# Order books
# --------------------------------------------------------------------------------------------------
@st.composite
def valid_book(draw: st.DrawFn) -> dict[str, Any]:
    tick = draw(st.floats(1e-6, 10))
    bid_ks = sorted(draw(st.sets(st.integers(1, 10_000), min_size=2, max_size=40)), reverse=True)
    first_ask = bid_ks[0] + draw(st.integers(1, 100))
    ask_ks = sorted(first_ask + k for k in draw(st.sets(st.integers(0, 10_000), min_size=2, max_size=40)))
    return {
        "symbol": "BTC/USDT",
        "bids": [[k * tick, draw(amounts)] for k in bid_ks],
        "asks": [[k * tick, draw(amounts)] for k in ask_ks],
        "timestamp": draw(st.none() | st.integers(NOW - TH.book_max_age_ms, NOW)),
        "datetime": None,
        "nonce": draw(st.none() | st.integers(0, 10**12)),
    }


def b_crossed(b: dict[str, Any], data: st.DataObject) -> None:
    b["bids"].insert(0, [b["asks"][0][0] * (1 + data.draw(st.floats(0, 0.5))), 1.0])


def b_swap_bids(b: dict[str, Any], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(b["bids"]) - 2))
    b["bids"][i], b["bids"][i + 1] = b["bids"][i + 1], b["bids"][i]


def b_swap_asks(b: dict[str, Any], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(b["asks"]) - 2))
    b["asks"][i], b["asks"][i + 1] = b["asks"][i + 1], b["asks"][i]


def b_repeat_bid(b: dict[str, Any], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(b["bids"]) - 1))
    b["bids"].insert(i + 1, list(b["bids"][i]))


def b_zero_amount(b: dict[str, Any], data: st.DataObject) -> None:
    side = b[data.draw(st.sampled_from(["bids", "asks"]))]
    side[data.draw(st.integers(0, len(side) - 1))][1] = data.draw(st.sampled_from([0.0, -1.0]))


def b_bad_price(b: dict[str, Any], data: st.DataObject) -> None:
    b["bids"][-1][0] = data.draw(st.sampled_from([0.0, -1.0]))


def b_stale(b: dict[str, Any], data: st.DataObject) -> None:
    b["timestamp"] = NOW - TH.book_max_age_ms - data.draw(st.integers(1, 10**8))


def b_malformed(b: dict[str, Any], data: st.DataObject) -> None:
    side = b[data.draw(st.sampled_from(["bids", "asks"]))]
    side[data.draw(st.integers(0, len(side) - 1))] = data.draw(st.sampled_from([[1.0], None, ["1", "2"]]))


BOOK_DEFECTS: dict[str, tuple[Callable[[dict[str, Any], st.DataObject], None], str]] = {
    "crossed": (b_crossed, "crossed"),
    "unsorted bids": (b_swap_bids, "unsorted_bids"),
    "unsorted asks": (b_swap_asks, "unsorted_asks"),
    "repeated bid level": (b_repeat_bid, "unsorted_bids"),
    "zero amount": (b_zero_amount, "nonpositive_amount"),
    "bad price": (b_bad_price, "nonpositive_price"),
    "stale": (b_stale, "stale"),
    "malformed level": (b_malformed, "malformed"),
}


@PROPERTY
@given(valid_book())
def test_valid_book_is_clean(b: dict[str, Any]) -> None:
    assert validate_order_book(b, now_ms=NOW, symbol="BTC/USDT") == []
    result, report = QualityMonitor().check("order_book", b, policy="raise", min_score=100, now_ms=NOW)
    assert result is b and report is not None and report.score == 100


@pytest.mark.parametrize("name", sorted(BOOK_DEFECTS))
@PROPERTY
@given(b=valid_book(), data=st.data())
def test_every_book_defect_is_found(name: str, b: dict[str, Any], data: st.DataObject) -> None:
    defect, code = BOOK_DEFECTS[name]
    defect(b, data)
    assert code in codes(validate_order_book(b, now_ms=NOW)), validate_order_book(b, now_ms=NOW)


@pytest.mark.parametrize("name", sorted(set(BOOK_DEFECTS) - {"stale"}))
@PROPERTY
@given(b=valid_book(), data=st.data())
def test_repaired_book_passes_validation(name: str, b: dict[str, Any], data: st.DataObject) -> None:
    BOOK_DEFECTS[name][0](b, data)
    before = copy.deepcopy(b)
    fixed, done = repair_order_book(b, now_ms=NOW)
    assert b == before and fixed is not b and done
    assert validate_order_book(fixed, now_ms=NOW) == []


@PROPERTY
@given(b=valid_book(), data=st.data())
def test_crossed_repair_drops_the_lone_bad_level(b: dict[str, Any], data: st.DataObject) -> None:
    original_asks = copy.deepcopy(b["asks"])
    b_crossed(b, data)
    fixed, _ = repair_order_book(b)
    assert fixed["asks"] == original_asks


# --------------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------------
@st.composite
def valid_trades(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(2, 40))
    stamps = sorted(draw(st.lists(st.integers(NOW - 86_400_000, NOW), min_size=n, max_size=n)))
    named = draw(st.booleans())
    trades = []
    for i, ts in enumerate(stamps):
        price, amount = draw(positive), draw(amounts)
        trades.append(
            {
                "id": str(i) if named else None,
                "timestamp": ts,
                "datetime": None,
                "symbol": "BTC/USDT",
                "order": None,
                "type": None,
                "side": draw(st.sampled_from(["buy", "sell", None])),
                "takerOrMaker": None,
                "price": price,
                "amount": amount,
                "cost": price * amount,
                "fee": None,
                "fees": [],
                "info": {},
            }
        )
    return trades


def _pick(trades: list[dict[str, Any]], data: st.DataObject) -> dict[str, Any]:
    return trades[data.draw(st.integers(0, len(trades) - 1))]


def tr_price(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    _pick(trades, data)["price"] = data.draw(st.sampled_from([0.0, -5.0, None]))


def tr_amount(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    _pick(trades, data)["amount"] = data.draw(st.sampled_from([0.0, -5.0, None]))


def tr_future(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    trades[-1]["timestamp"] = NOW + TH.future_tolerance_ms + data.draw(st.integers(1, 10**9))


def tr_absurd(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    trades[0]["timestamp"] = NOW // 1000


def tr_backwards(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    trades[-1]["timestamp"] = trades[0]["timestamp"] - data.draw(st.integers(1, 10**6))


def tr_side(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    _pick(trades, data)["side"] = data.draw(st.sampled_from(["long", "BUY", "", 1]))


def tr_duplicate(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    trades.append(dict(trades[-1], id="dup"))
    trades.append(dict(trades[-1], id="dup"))


def tr_no_ts(trades: list[dict[str, Any]], data: st.DataObject) -> None:
    _pick(trades, data)["timestamp"] = None


TRADE_DEFECTS: dict[str, tuple[Callable[[list[dict[str, Any]], st.DataObject], None], str]] = {
    "bad price": (tr_price, "nonpositive_price"),
    "bad amount": (tr_amount, "nonpositive_amount"),
    "future": (tr_future, "future_timestamp"),
    "seconds timestamp": (tr_absurd, "absurd_timestamp"),
    "backwards": (tr_backwards, "out_of_order"),
    "invalid side": (tr_side, "invalid_side"),
    "duplicate id": (tr_duplicate, "duplicate_id"),
    "missing timestamp": (tr_no_ts, "missing_timestamp"),
}


@PROPERTY
@given(valid_trades())
def test_valid_trades_are_clean(trades: list[dict[str, Any]]) -> None:
    assert validate_trades(trades, now_ms=NOW, symbol="BTC/USDT") == []
    result, report = QualityMonitor().check("trades", trades, policy="raise", min_score=100, now_ms=NOW)
    assert result is trades and report is not None and report.score == 100


@pytest.mark.parametrize("name", sorted(TRADE_DEFECTS))
@PROPERTY
@given(trades=valid_trades(), data=st.data())
def test_every_trade_defect_is_found(name: str, trades: list[dict[str, Any]], data: st.DataObject) -> None:
    defect, code = TRADE_DEFECTS[name]
    defect(trades, data)
    assert code in codes(validate_trades(trades, now_ms=NOW)), validate_trades(trades, now_ms=NOW)


@pytest.mark.parametrize("name", sorted(set(TRADE_DEFECTS) - {"missing timestamp"}))
@PROPERTY
@given(trades=valid_trades(), data=st.data())
def test_repaired_trades_pass_validation(
    name: str, trades: list[dict[str, Any]], data: st.DataObject
) -> None:
    TRADE_DEFECTS[name][0](trades, data)
    before = copy.deepcopy(trades)
    fixed, done = repair_trades(trades, now_ms=NOW)
    assert trades == before and fixed is not trades and done
    assert validate_trades(fixed, now_ms=NOW) == []
