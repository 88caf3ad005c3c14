"""Every corruption the simulator's bad-data faults inject is refused under policy ``raise``.

The simulator (``hardened/sim/faults.py``, ``BadData``) corrupts tickers, candles, order books and
trades with high < low, crossed quotes, zero and negative prices, stale timestamps, empty tickers,
repeated entries, gaps and reordering, and answers HTML or cut JSON with status 200. Each one that
changes what reaches the caller, and can be told from a healthy answer, must fail validation under
``raise`` whatever the score: the unit tests below show each check, the simulator tests show each
corruption refused through ``HardenedClient`` on Binance, KuCoin and Bitvavo at the default
``min_quality_score``. What cannot be told apart (a reordering ccxt undoes, a hole in trades or in
candles of an exchange that skips quiet intervals) is shown as such, not counted as caught.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import ccxt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardened import DataQualityError, HardenedClient
from hardened.benchmark.contenders import ENDPOINTS, symbol_for
from hardened.quality import (
    DEFAULT_THRESHOLDS,
    QualityMonitor,
    validate_ohlcv,
    validate_order_book,
    validate_ticker,
    validate_tickers,
    validate_trades,
)
from hardened.quality.memory import SeenSpan
from hardened.quality.trades import trade_span
from hardened.sim import Simulator
from hardened.testing import capture_events

NOW = 1_750_000_020_000  # 20 s into a minute
MINUTE = 60_000
BINANCE = replace(DEFAULT_THRESHOLDS, ticker_prices=("bid", "ask", "last"), continuous_candles=True)
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def candles(n: int = 30, last_open: int = NOW // MINUTE * MINUTE) -> list[list[Any]]:
    return [[last_open - (n - 1 - i) * MINUTE, 100.0, 101.0, 99.0, 100.5, 5.0] for i in range(n)]


def ticker(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "timestamp": NOW - 500,
        "bid": 100.0,
        "bidVolume": 1.5,
        "ask": 100.1,
        "askVolume": 2.0,
        "last": 100.05,
        "close": 100.05,
        "open": 99.0,
        "high": 101.0,
        "low": 98.0,
        "baseVolume": 10.0,
        "quoteVolume": 1000.0,
    }
    base.update(fields)
    return base


def trades(n: int = 20, ids: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "id": str(1000 + i) if ids else None,
            "timestamp": NOW - (n - i) * 700,
            "price": 100.0 + i * 0.01,
            "amount": 0.5,
            "side": "buy" if i % 2 else "sell",
            "info": {"sequence": str(1000 + i), "time": (NOW - (n - i) * 700) * 1_000_000},
        }
        for i in range(n)
    ]


def refused(endpoint: str, result: Any, thresholds: Any = DEFAULT_THRESHOLDS, **kw: Any) -> bool:
    """Whether ``raise`` at the default minimum score refuses the answer for an impossible value."""
    try:
        QualityMonitor().check(endpoint, result, policy="raise", now_ms=NOW, thresholds=thresholds, **kw)
    except DataQualityError as error:
        return bool(error.report.impossible)
    return False


# -- ticker -------------------------------------------------------------------------------------------
def test_a_price_the_exchange_always_sends_missing_is_refused() -> None:
    # ccxt's omit_zero turns the simulator's zero bid into None: only the exchange's facts see it
    zeroed = ticker(bid=None, bidVolume=None)
    assert refused("ticker", zeroed, BINANCE, symbol="BTC/USDT")
    assert not refused("ticker", zeroed, symbol="BTC/USDT")  # an exchange we know nothing about
    issues = validate_ticker(zeroed, now_ms=NOW, thresholds=BINANCE)
    assert [i.code for i in issues] == ["missing_field"] and "bid" in issues[0].message
    assert refused("ticker", ticker(last=0.0), BINANCE)  # present but zero: as impossible


def test_a_quote_with_a_size_but_no_price_is_refused_anywhere() -> None:
    assert refused("ticker", ticker(bid=None, bidVolume=0.49), symbol="BTC/USDT")
    assert refused("ticker", ticker(ask=None, askVolume=2.0))
    assert not refused("ticker", ticker(ask=None, askVolume=0.0))  # an empty side: no size either


def test_fetch_tickers_does_not_require_prices_of_quiet_markets() -> None:
    quiet = {"BTC/USDT": ticker(), "NEW/USDT": ticker(symbol="NEW/USDT", bid=None, bidVolume=None)}
    assert validate_tickers(quiet, now_ms=NOW, thresholds=BINANCE) == []


# -- candles ------------------------------------------------------------------------------------------
def test_repeated_and_zero_price_candles_are_refused() -> None:
    rows = candles()
    rows.insert(15, list(rows[15]))
    assert refused("ohlcv", rows, timeframe="1m")
    rows = candles()
    rows[-1][3] = rows[-1][4] = 0.0  # the simulator's zero_price: low and close zeroed
    assert refused("ohlcv", rows, timeframe="1m")


def test_a_hole_or_stale_end_in_live_candles_is_refused_where_every_interval_is_sent() -> None:
    holed = candles()
    del holed[10:15]
    stale = candles(last_open=NOW // MINUTE * MINUTE - 10 * MINUTE)
    for rows in (holed, stale, []):
        assert refused("ohlcv", rows, BINANCE, timeframe="1m")
        assert not refused("ohlcv", rows, timeframe="1m")  # KuCoin skips quiet minutes: weighed only
    # the incremental refresh (since = the last candle held, no limit) reaches now: live as well
    assert refused("ohlcv", [], BINANCE, timeframe="1m", since=NOW // MINUTE * MINUTE - MINUTE)
    # a historical window is old on purpose and may span exchange downtime
    old = NOW - 10 * 86_400_000
    assert not refused("ohlcv", [], BINANCE, timeframe="1m", since=old, limit=30)
    history = candles(last_open=old // MINUTE * MINUTE)
    del history[10:15]
    assert not refused("ohlcv", history, BINANCE, timeframe="1m", since=history[0][0], limit=30)


def test_repair_is_not_refused_for_the_hole_it_made() -> None:
    rows = candles()
    rows[7][2] = 98.0  # high below low: the repair drops it and leaves a one-minute hole
    monitor = QualityMonitor()
    fixed, report = monitor.check(
        "ohlcv", rows, policy="repair", now_ms=NOW, timeframe="1m", thresholds=BINANCE
    )
    assert len(fixed) == 29 and report is not None and report.repaired and not report.impossible
    rows = candles()
    del rows[10:15]
    rows[20][2] = 98.0  # a hole the exchange sent stays refused even when something was repaired
    with pytest.raises(DataQualityError, match="gap"):
        monitor.check("ohlcv", rows, policy="repair", now_ms=NOW, timeframe="1m", thresholds=BINANCE)


# -- order book ---------------------------------------------------------------------------------------
def book(**fields: Any) -> dict[str, Any]:
    bids = [[100.0 - i * 0.1, 1.0] for i in range(20)]
    asks = [[100.1 + i * 0.1, 1.0] for i in range(20)]
    return {"symbol": "BTC/USDT", "bids": bids, "asks": asks, "timestamp": None, "nonce": 5, **fields}


def test_a_zero_price_level_and_a_repeated_price_are_refused() -> None:
    zero = book()
    zero["bids"][-1][0] = 0.0
    assert refused("order_book", zero)
    repeated = book()
    repeated["bids"].insert(1, list(repeated["bids"][0]))
    assert refused("order_book", repeated)
    assert {i.code for i in validate_order_book(repeated)} == {"unsorted_bids"}


def test_a_book_older_than_one_seen_is_refused_per_client() -> None:
    monitor = QualityMonitor()
    kw: dict[str, Any] = {"policy": "raise", "symbol": "BTC/USDT", "exchange": "binance"}
    monitor.check("order_book", book(nonce=900), venue="client-a", **kw)
    with pytest.raises(DataQualityError, match="nonce"):
        monitor.check("order_book", book(nonce=300), venue="client-a", **kw)
    monitor.check("order_book", book(nonce=300), venue="client-b", **kw)  # testnet beside live


# -- trades -------------------------------------------------------------------------------------------
def test_zero_price_and_repeated_trades_are_refused() -> None:
    rows = trades()
    rows[-1]["price"] = 0.0
    assert refused("trades", rows)
    rows = trades()
    rows.insert(10, dict(rows[10]))
    assert refused("trades", rows)
    # KuCoin's public trades have no id: the same raw record twice is the repeat
    rows = trades(ids=False)
    rows.insert(10, dict(rows[10]))
    assert refused("trades", rows)
    twins = trades(ids=False)  # two distinct trades in one millisecond at one price: both real
    twins.insert(10, dict(twins[10], info={"sequence": "x", "time": 1}))
    assert not refused("trades", twins)


def test_trades_that_vanish_from_a_later_answer_are_refused() -> None:
    for ids in (True, False):
        every = trades(45, ids=ids)
        earlier, later = every[:40], every[5:]  # five newer trades, five older ones out
        seen = trade_span(earlier)
        assert validate_trades(later, now_ms=NOW, seen=seen) == []
        holed = later[:10] + later[21:]  # the simulator's "gaps": trades cut from the middle
        issues = validate_trades(holed, now_ms=NOW, seen=seen)
        assert [(i.code, i.count, i.impossible) for i in issues] == [("trades_vanished", 11, True)]


def test_answers_in_flight_together_are_not_compared() -> None:
    monitor = QualityMonitor()
    kw: dict[str, Any] = {"policy": "raise", "symbol": "BTC/USDT", "now_ms": NOW, "venue": "v"}
    shifted = [dict(t, timestamp=t["timestamp"] - 600_000) for t in trades()]
    began = time.perf_counter()  # this call began before the newer answer below was remembered
    monitor.check("trades", trades(), sent_at=time.perf_counter(), **kw)
    monitor.check("trades", shifted, sent_at=began, **kw)  # landed late: may be older
    with pytest.raises(DataQualityError, match="trades_regressed"):
        monitor.check("trades", shifted, sent_at=time.perf_counter(), **kw)
    monitor.check("order_book", book(nonce=900), sent_at=time.perf_counter(), **kw)
    monitor.check("order_book", book(nonce=300), sent_at=began, **kw)
    with pytest.raises(DataQualityError, match="nonce"):
        monitor.check("order_book", book(nonce=300), sent_at=time.perf_counter(), **kw)


def test_candles_that_vanish_or_go_back_are_refused_where_quiet_minutes_are_skipped() -> None:
    every = candles(40)
    del every[12]  # a quiet minute KuCoin never sent: in both answers, no defect
    earlier, later = every[:30], every[4:]
    monitor = QualityMonitor()
    kw: dict[str, Any] = {"policy": "raise", "symbol": "BTC/USDT", "timeframe": "1m", "venue": "v"}
    monitor.check("ohlcv", earlier, now_ms=earlier[-1][0] + 20_000, **kw)
    now = later[-1][0] + 20_000
    holed = later[:10] + later[15:]  # the simulator's "gaps": five candles cut from the middle
    with pytest.raises(DataQualityError, match="candles_vanished"):
        monitor.check("ohlcv", holed, now_ms=now, **kw)
    shifted = [[c[0] - 10 * MINUTE, *c[1:]] for c in earlier]  # the "stale" variant
    with pytest.raises(DataQualityError, match="candles_regressed"):
        monitor.check("ohlcv", shifted, now_ms=now, **kw)
    monitor.check("ohlcv", later, now_ms=now, **kw)  # the healthy later answer passes


def test_latest_trades_older_than_already_seen_are_refused() -> None:
    monitor = QualityMonitor()
    kw: dict[str, Any] = {"policy": "raise", "symbol": "BTC/USDT", "now_ms": NOW, "venue": "v"}
    monitor.check("trades", trades(), **kw)
    shifted = [dict(t, timestamp=t["timestamp"] - 600_000) for t in trades()]  # the "stale" variant
    with pytest.raises(DataQualityError, match="trades_regressed"):
        monitor.check("trades", shifted, **kw)
    monitor.check("trades", shifted, since=NOW - 900_000, **kw)  # a window asked for: old on purpose
    monitor.check("trades", trades(), **kw)  # the memory did not move back


# -- valid data is never refused by the new checks ----------------------------------------------------
@st.composite
def live_candles(draw: st.DrawFn) -> tuple[list[list[Any]], int]:
    n = draw(st.integers(2, 60))
    last = draw(st.integers(1_600_000_000_000 // MINUTE, 1_800_000_000_000 // MINUTE)) * MINUTE
    price = draw(st.floats(1e-4, 1e5))
    rows = []
    for i in range(n):
        o = price
        price = price * math.exp(draw(st.floats(-0.003, 0.003)))
        hi, lo = max(o, price) * 1.001, min(o, price) * 0.999
        rows.append([last - (n - 1 - i) * MINUTE, o, hi, lo, price, draw(st.floats(0, 1e6))])
    return rows, last + draw(st.integers(0, 2 * MINUTE))


@PROPERTY
@given(live_candles())
def test_continuous_live_candles_pass_on_a_continuous_exchange(series: tuple[list[list[Any]], int]) -> None:
    rows, now = series
    assert validate_ohlcv(rows, timeframe="1m", now_ms=now, thresholds=BINANCE) == []
    assert validate_ohlcv(rows, timeframe="1m", now_ms=now, since=rows[0][0], thresholds=BINANCE) == []


@PROPERTY
@given(series=live_candles(), cut=st.data(), quiet=st.sets(st.integers(1, 58), max_size=10))
def test_later_candles_pass_the_memory(
    series: tuple[list[list[Any]], int], cut: st.DataObject, quiet: set[int]
) -> None:
    rows = [row for i, row in enumerate(series[0]) if i not in quiet]  # quiet minutes never sent
    k = cut.draw(st.integers(1, len(rows)))  # the earlier answer: the first k candles
    j = cut.draw(st.integers(0, k - 1))  # the later one: everything from candle j on
    seen = SeenSpan.of_times(np.array([r[0] for r in rows[:k]], dtype=np.float64))
    assert seen is not None
    found = validate_ohlcv(rows[j:], timeframe="1m", seen=seen)
    assert [i for i in found if i.impossible] == []


@PROPERTY
@given(
    bid=st.floats(1e-4, 1e5),
    spread=st.floats(0, 0.01),
    sizes=st.tuples(st.none() | st.floats(0, 1e6), st.none() | st.floats(0, 1e6)),
)
def test_full_quotes_pass_with_the_exchange_facts(
    bid: float, spread: float, sizes: tuple[float | None, float | None]
) -> None:
    ask = bid * (1 + spread)
    t = ticker(bid=bid, ask=ask, last=bid, close=bid, high=ask, low=bid, open=bid)
    t["bidVolume"], t["askVolume"] = sizes
    assert validate_ticker(t, now_ms=NOW, thresholds=BINANCE) == []


@PROPERTY
@given(
    n=st.integers(2, 60),
    cut=st.data(),
    burst=st.booleans(),
    ids=st.booleans(),
)
def test_later_trades_pass_the_memory(n: int, cut: st.DataObject, burst: bool, ids: bool) -> None:
    rows = trades(n, ids=ids)
    if burst:  # distinct trades sharing one millisecond
        rows[-1]["timestamp"] = rows[-2]["timestamp"]
        rows[-1]["info"] = dict(rows[-1]["info"], time=rows[-2]["info"]["time"])
    k = cut.draw(st.integers(1, n))  # the earlier answer: the first k trades
    j = cut.draw(st.integers(0, k - 1))  # the later one: everything from trade j on
    seen = trade_span(rows[:k])
    assert seen is not None
    assert validate_trades(rows[j:], now_ms=NOW, seen=seen) == []


# -- through the client, against the simulator ---------------------------------------------------------
EXCHANGES = ("binance", "kucoin", "bitvavo")
# Corruptions that change what reaches the caller and can be told apart, per endpoint (holes and
# staleness in trades, and in candles of exchanges that skip quiet intervals, by what the healthy
# answer before them showed).
CAUGHT = {
    "fetch_ticker": ("high_low", "stale", "crossed_book", "zero_price", "negative_price", "null_ticker"),
    "fetch_ohlcv": ("high_low", "gaps", "duplicates", "stale", "zero_price", "negative_price"),
    "fetch_order_book": ("duplicates", "stale", "crossed_book", "zero_price", "negative_price"),
    "fetch_trades": ("gaps", "duplicates", "stale", "zero_price", "negative_price"),
}
CASES = [
    (exchange, method, kind)
    for exchange in EXCHANGES
    for method in CAUGHT
    for kind in (*CAUGHT[method], "html_200", "malformed_json")
]


@pytest.fixture(scope="module")
def sim() -> Any:
    with Simulator(exchanges=EXCHANGES, seed=5) as server:
        yield server


@pytest.mark.parametrize(("exchange", "method", "kind"), CASES)
def test_each_corruption_is_refused_under_raise(
    sim: Simulator, exchange: str, method: str, kind: str
) -> None:
    spec = ENDPOINTS[method]
    sim.set_profile(None)
    raw = sim.attach(getattr(ccxt, exchange)({"enableRateLimit": False}))
    client = HardenedClient(raw, max_retries=0, cache_ttl=0, stale_if_error=0, learning_store=None)
    symbol = symbol_for(exchange)

    def call() -> Any:
        return getattr(client, spec.method)(symbol, *spec.args, **spec.kwargs)

    try:
        call()  # a healthy answer first: the book's nonce and the latest trades are remembered
        rule: dict[str, Any] = {"kind": kind, "endpoints": [spec.endpoint]}
        if kind not in ("html_200", "malformed_json"):
            rule = {"kind": "bad_data", "variants": [kind], "endpoints": [spec.endpoint]}
        sim.set_profile({"faults": [rule]})
        with pytest.raises(DataQualityError):
            call()
        record = sim.ground_truth()[-1]
        assert record["endpoint"] == spec.endpoint
        assert record["fault"] in (f"bad_data:{kind}", kind)  # the simulator did corrupt this answer
    finally:
        sim.set_profile(None)
        client.close()


def test_reordering_is_undone_by_ccxt_before_anyone_sees_it(sim: Simulator) -> None:
    """``out_of_order`` swaps candles, reverses trades and book sides; ccxt's parsers sort them
    back, so the caller's answer holds the exchange's truth in its order: nothing wrong is left to
    detect (the benchmark's judge, reading the simulator's log only, still counts it)."""
    sim.set_profile(None)
    raw = sim.attach(ccxt.binance({"enableRateLimit": False}))
    clean = raw.fetch_ohlcv("BTC/USDT", "1m", limit=100)
    sim.set_profile({"faults": [{"kind": "bad_data", "variants": ["out_of_order"], "endpoints": ["ohlcv"]}]})
    try:
        shuffled = raw.fetch_ohlcv("BTC/USDT", "1m", limit=100)
        assert sim.ground_truth()[-1]["fault"] == "bad_data:out_of_order"
    finally:
        sim.set_profile(None)
    truth = {c[0]: c for c in clean[:-1]}  # closed candles: the open one may have moved on since
    common = [c for c in shuffled[:-1] if c[0] in truth]
    assert len(common) >= 90 and all(c == truth[c[0]] for c in common)
    assert [c[0] for c in shuffled] == sorted({c[0] for c in shuffled})
    # trades reversed and book sides reversed: sorted back as well
    clean_trades = raw.fetch_trades("BTC/USDT", limit=100)
    rule = {"kind": "bad_data", "variants": ["out_of_order"], "endpoints": ["trades", "order_book"]}
    sim.set_profile({"faults": [rule]})
    try:
        reversed_trades = raw.fetch_trades("BTC/USDT", limit=100)
        book = raw.fetch_order_book("BTC/USDT", 20)
        assert sim.ground_truth()[-1]["fault"] == "bad_data:out_of_order"
    finally:
        sim.set_profile(None)
    strip = [{k: t[k] for k in ("id", "timestamp", "price", "amount", "side")} for t in clean_trades]
    by_id = {t["id"]: t for t in strip}
    got = [{k: t[k] for k in ("id", "timestamp", "price", "amount", "side")} for t in reversed_trades]
    assert len([t for t in got if t["id"] in by_id]) >= 50
    assert all(t == by_id[t["id"]] for t in got if t["id"] in by_id)
    assert [t["timestamp"] for t in got] == sorted(t["timestamp"] for t in got)
    assert [p for p, _ in book["bids"]] == sorted((p for p, _ in book["bids"]), reverse=True)
    assert [p for p, _ in book["asks"]] == sorted(p for p, _ in book["asks"])


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_an_incremental_refresh_without_the_candle_held_is_refused(sim: Simulator, exchange: str) -> None:
    """The cache asks for candles from the last one it holds; a stale answer (every candle ten
    minutes back) loses them all to ccxt's ``since`` filter and comes back empty: on KuCoin, which
    skips quiet minutes, only the candle held says that this emptiness is impossible."""
    sim.set_profile(None)
    raw = sim.attach(getattr(ccxt, exchange)({"enableRateLimit": False}))
    client = HardenedClient(raw, max_retries=0, cache_ttl=0, learning_store=None)  # stale-if-error on
    symbol = symbol_for(exchange)
    try:
        first = client.fetch_ohlcv(symbol, "1m", limit=50)
        again = client.fetch_ohlcv(symbol, "1m", limit=50)  # the refresh: since = the last candle held
        assert "since" in sim.ground_truth()[-1]["path"] or "start" in sim.ground_truth()[-1]["path"]
        assert again[0][0] >= first[0][0] and len(again) == 50
        rule = {"kind": "bad_data", "variants": ["stale"], "endpoints": ["ohlcv"]}
        sim.set_profile({"faults": [rule]})
        with capture_events(["quality_failed"]) as events:
            served = client.fetch_ohlcv(symbol, "1m", limit=50)  # refused, then stale-if-error
        assert sim.ground_truth()[-1]["fault"] == "bad_data:stale"
        assert [e["report"].split("quality 0/100: ")[1] for e in events] == [
            "empty x0 (error, impossible)"  # Binance sends every interval: no candle now is impossible
            if exchange == "binance"
            else "gap (error, impossible)"  # elsewhere the candle held is what says so
        ]
        assert client._hd.stats_by_endpoint["ohlcv"].stale_served == 1
        assert served[-1][0] == again[-1][0]  # the series held, not a stale one passed off as new
    finally:
        sim.set_profile(None)
        client.close()
