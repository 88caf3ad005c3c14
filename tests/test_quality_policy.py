"""Policies, custom checks, scoring and calendar cases of the data-quality library.

``raise`` raises a ``DataQualityError`` (a ``ccxt.BadResponse``) carrying the report, ``repair``
returns a fixed copy, ``warn`` logs through structlog and passes, ``off`` does nothing; user checks
run where they are registered, and a broken one becomes an issue instead of an exception.
"""

from __future__ import annotations

import calendar
import copy
from itertools import pairwise
from typing import Any

import ccxt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hardened import quality
from hardened.errors import DataQualityError
from hardened.quality import (
    CheckContext,
    Issue,
    QualityMonitor,
    QualityReport,
    QualityThresholds,
    Severity,
    parse_timeframe,
    score_of,
    validate_ohlcv,
    validate_order_book,
)

NOW = 1_750_000_020_000  # 20 s into a minute
MINUTE = 60_000


def candles(n: int = 30, tf_ms: int = MINUTE, last_open: int | None = None) -> list[list[Any]]:
    last = (NOW // tf_ms) * tf_ms if last_open is None else last_open
    first = last - (n - 1) * tf_ms
    rows = []
    price = 100.0
    for i in range(n):
        close = price * (1.001 if i % 2 else 0.999)
        rows.append(
            [first + i * tf_ms, price, max(price, close) * 1.001, min(price, close) * 0.999, close, 5.0]
        )
        price = close
    return rows


def broken_candles() -> list[list[Any]]:
    rows = candles()
    for i in range(0, 30, 2):
        rows[i][2] = rows[i][3] * 0.5  # high below low on half the candles
    return rows


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
    "baseVolume": 10.0,
    "quoteVolume": 1000.0,
    "info": {},
}
HTML_TICKER = {
    **dict.fromkeys(TICKER),
    "symbol": "BTC/USDT",
    "info": "<html><head><title>502 Bad Gateway</title></head></html>",
}


@pytest.fixture
def monitor() -> QualityMonitor:
    return QualityMonitor()


# -- policies ----------------------------------------------------------------------------------------
def test_raise_policy_raises_a_ccxt_bad_response_with_the_report(monitor: QualityMonitor) -> None:
    rows = broken_candles()
    with pytest.raises(DataQualityError) as caught:
        monitor.check(
            "ohlcv", rows, policy="raise", min_score=50, timeframe="1m", now_ms=NOW, symbol="BTC/USDT"
        )
    err = caught.value
    assert isinstance(err, ccxt.BadResponse)
    assert err.endpoint == "ohlcv" and err.score < 50
    assert isinstance(err.report, QualityReport)
    assert err.report.score == err.score and err.report.has("ohlc_inconsistent")
    assert "ohlc_inconsistent" in str(err) and "BTC/USDT" in str(err.report)


def test_raise_policy_passes_answers_above_the_minimum(monitor: QualityMonitor) -> None:
    rows = candles()
    del rows[5]  # one missing candle of 30: a soft defect, judged by the score
    result, report = monitor.check("ohlcv", rows, policy="raise", min_score=50, timeframe="1m", now_ms=NOW)
    assert result is rows
    assert report is not None and 50 <= report.score < 100 and report.has("gap")


def test_raise_policy_never_passes_an_impossible_candle(monitor: QualityMonitor) -> None:
    rows = candles()
    rows[5][2] = rows[5][3] * 0.5  # one candle of 30 with high < low: scores 77, but cannot exist
    with pytest.raises(DataQualityError) as caught:
        monitor.check("ohlcv", rows, policy="raise", min_score=50, timeframe="1m", now_ms=NOW)
    assert caught.value.score >= 50 and caught.value.report.has("ohlc_inconsistent")


def test_html_ticker_raises_under_every_minimum(monitor: QualityMonitor) -> None:
    with pytest.raises(DataQualityError) as caught:
        monitor.check("ticker", HTML_TICKER, policy="raise", min_score=1, now_ms=NOW)
    assert caught.value.score == 0 and caught.value.report.has("empty_ticker")


def test_warn_policy_logs_and_passes(monitor: QualityMonitor) -> None:
    rows = broken_candles()
    before = copy.deepcopy(rows)
    with capture_logs() as logs:
        result, report = monitor.check(
            "ohlcv",
            rows,
            policy="warn",
            min_score=50,
            timeframe="1m",
            now_ms=NOW,
            symbol="ETH/USDT",
            exchange="binance",
        )
    assert result is rows and rows == before
    assert report is not None and report.score < 50
    assert len(logs) == 1
    event = logs[0]
    assert event["event"] == "data_quality_below_minimum" and event["log_level"] == "warning"
    assert event["endpoint"] == "ohlcv" and event["symbol"] == "ETH/USDT" and event["exchange"] == "binance"
    assert "ohlc_inconsistent" in event["issues"]


def test_warn_policy_is_silent_on_clean_data(monitor: QualityMonitor) -> None:
    with capture_logs() as logs:
        monitor.check("ohlcv", candles(), policy="warn", min_score=99, timeframe="1m", now_ms=NOW)
    assert logs == []


def test_off_policy_does_nothing(monitor: QualityMonitor) -> None:
    calls: list[Any] = []
    monitor.add_custom_check("spy", lambda r: calls.append(r))
    with capture_logs() as logs:
        result, report = monitor.check("ticker", HTML_TICKER, policy="off", min_score=100)
    assert result is HTML_TICKER and report is None and logs == [] and calls == []


def test_repair_policy_returns_a_fixed_copy(monitor: QualityMonitor) -> None:
    rows = candles()
    for i in range(0, 30, 3):
        rows[i][2] = rows[i][3] * 0.5
    rows.insert(3, list(rows[3]))  # and a duplicate
    before = copy.deepcopy(rows)
    result, report = monitor.check("ohlcv", rows, policy="repair", min_score=50, timeframe="1m", now_ms=NOW)
    assert rows == before and result is not rows
    assert report is not None and report.repaired and report.score_before is not None
    assert report.score > report.score_before and report.score >= 50
    assert "dropped" in report.repairs[0] and "repaired" in str(report)
    assert {i.code for i in report.issues} <= {"gap"}
    assert all(row in before for row in result)


def test_repair_policy_raises_when_nothing_can_save_the_answer(monitor: QualityMonitor) -> None:
    with pytest.raises(DataQualityError) as caught:
        monitor.check("ticker", HTML_TICKER, policy="repair", min_score=50, now_ms=NOW)
    assert caught.value.report.has("empty_ticker") and not caught.value.report.repaired


def test_repair_that_would_drop_most_of_the_answer_is_abandoned(monitor: QualityMonitor) -> None:
    rows = candles()
    for i in range(30):
        if i % 3:
            rows[i][2] = rows[i][3] * 0.5  # two thirds of the candles are broken: garbage, not damage
    with pytest.raises(DataQualityError) as caught:
        monitor.check("ohlcv", rows, policy="repair", min_score=50, timeframe="1m", now_ms=NOW)
    assert not caught.value.report.repaired and caught.value.report.has("ohlc_inconsistent")
    lenient = QualityThresholds(max_repair_drop=0.9)
    result, report = monitor.check(
        "ohlcv", rows, policy="repair", min_score=0, timeframe="1m", now_ms=NOW, thresholds=lenient
    )
    assert report is not None and report.repaired and len(result) == 10


def test_repair_of_a_crossed_ticker_clears_the_quote(monitor: QualityMonitor) -> None:
    ticker = {**TICKER, "bid": 101.0, "ask": 100.0}
    result, report = monitor.check("ticker", ticker, policy="repair", min_score=50, now_ms=NOW)
    assert ticker["bid"] == 101.0 and result["bid"] is None and result["ask"] is None
    assert result["last"] == TICKER["last"]
    assert report is not None and report.repaired and report.score == 100


def test_repair_of_tickers_drops_empty_ones(monitor: QualityMonitor) -> None:
    tickers = {"BTC/USDT": TICKER, "ETH/USDT": {**HTML_TICKER, "symbol": "ETH/USDT"}}
    result, report = monitor.check("tickers", tickers, policy="repair", min_score=50, now_ms=NOW)
    assert list(result) == ["BTC/USDT"] and list(tickers) == ["BTC/USDT", "ETH/USDT"]
    assert report is not None and report.repaired and report.score == 100


def test_clean_answers_share_one_report(monitor: QualityMonitor) -> None:
    _, first = monitor.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)
    _, second = monitor.check("ticker", dict(TICKER), policy="raise", min_score=50, now_ms=NOW)
    assert first is second and first is not None and first.score == 100 and first.ok


def test_unknown_endpoints_pass_through(monitor: QualityMonitor) -> None:
    address = {"address": None}
    assert monitor.check("deposit_address", address, policy="raise", min_score=100) == (address, None)
    assert monitor.validate("deposit_address", address) is None


def test_balances_are_checked_for_structure(monitor: QualityMonitor) -> None:
    # Private answers are checked since issue 13: a balance without its maps is not a balance.
    report = monitor.validate("balance", {"free": {"BTC": -1}})
    assert report is not None and report.score == 0 and "malformed" in report.codes


def test_unknown_policy_is_refused(monitor: QualityMonitor) -> None:
    with pytest.raises(ValueError, match="explode"):
        monitor.check("ticker", TICKER, policy="explode", min_score=50)


# -- custom checks -----------------------------------------------------------------------------------
def test_custom_check_in_the_seed_style(monitor: QualityMonitor) -> None:
    def custom_volume_check(data: list[list[Any]]) -> bool:
        return sum(row[5] for row in data) / len(data) > 10_000

    monitor.add_custom_check("volume_threshold", custom_volume_check, endpoints="ohlcv")
    with pytest.raises(DataQualityError) as caught:
        monitor.check("ohlcv", candles(), policy="raise", min_score=50, timeframe="1m", now_ms=NOW)
    assert caught.value.report.has("volume_threshold") and caught.value.score == 0
    # Only where registered: a ticker is not checked by it.
    assert monitor.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)[1].score == 100


def test_custom_check_receives_the_context(monitor: QualityMonitor) -> None:
    seen: list[CheckContext] = []

    def inspect(result: Any, context: CheckContext) -> None:
        seen.append(context)

    monitor.add_custom_check("inspect", inspect)
    monitor.check("ohlcv", candles(), policy="raise", min_score=50, timeframe="1m", now_ms=NOW, symbol="X/Y")
    assert seen == [CheckContext("ohlcv", "X/Y", "1m", NOW, None, None, None)]


def test_custom_check_may_return_issues_or_a_message(monitor: QualityMonitor) -> None:
    monitor.add_custom_check(
        "issues",
        lambda r: [Issue("too_thin", Severity.WARNING, "thin book", 1, (), 0.5)],
        endpoints="order_book",
    )
    monitor.add_custom_check(
        "message", lambda r: "no market maker", endpoints=["order_book"], severity="info"
    )
    book = {"bids": [[1.0, 1.0]], "asks": [[2.0, 1.0]], "symbol": "X/Y"}
    report = monitor.validate("order_book", book)
    assert report is not None and report.codes == {"too_thin", "message"}
    severities = {i.code: i.severity for i in report.issues}
    assert severities == {"too_thin": Severity.WARNING, "message": Severity.INFO}


def test_raising_custom_check_is_an_issue_not_a_crash(monitor: QualityMonitor) -> None:
    def broken(result: Any) -> bool:
        raise KeyError("volume")

    monitor.add_custom_check("broken", broken)
    result, report = monitor.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)
    assert result is TICKER and report is not None
    assert report.has("custom_check_error") and "broken" in str(report.issues[0].message)
    assert 90 < report.score < 100


def test_custom_check_returning_nonsense_is_reported(monitor: QualityMonitor) -> None:
    monitor.add_custom_check("nonsense", lambda r: 42)
    report = monitor.validate("ticker", TICKER)
    assert report is not None and report.has("custom_check_error")


def balance(free: float, used: float) -> dict[str, Any]:
    return {
        "info": {},
        "free": {"BTC": free},
        "used": {"BTC": used},
        "total": {"BTC": free + used},
    }


def test_custom_check_on_a_private_endpoint(monitor: QualityMonitor) -> None:
    monitor.add_custom_check(
        "no_negative", lambda b: all(v >= 0 for v in b["free"].values()), endpoints="balance"
    )
    assert monitor.validate("balance", balance(-1.0, 1.0)).codes == {"no_negative"}  # type: ignore[union-attr]
    with pytest.raises(DataQualityError):
        monitor.check("balance", balance(-1.0, 1.0), policy="raise", min_score=50)
    assert monitor.check("balance", balance(1.0, 0.0), policy="raise", min_score=50)[1].score == 100


def test_custom_checks_run_on_the_repaired_answer(monitor: QualityMonitor) -> None:
    lengths: list[int] = []
    monitor.add_custom_check("count", lambda rows: lengths.append(len(rows)), endpoints="ohlcv")
    rows = candles()
    rows.append(list(rows[-1]))
    monitor.check("ohlcv", rows, policy="repair", min_score=50, timeframe="1m", now_ms=NOW)
    assert lengths == [30]


def test_remove_custom_check(monitor: QualityMonitor) -> None:
    monitor.add_custom_check("always_bad", lambda r: False)
    assert "always_bad" in monitor.custom_checks()
    assert monitor.remove_custom_check("always_bad") is True
    assert monitor.remove_custom_check("always_bad") is False
    assert monitor.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)[1].score == 100


def test_registering_a_name_again_replaces_the_check(monitor: QualityMonitor) -> None:
    monitor.add_custom_check("rule", lambda r: False)
    monitor.add_custom_check("rule", lambda r: True)
    assert list(monitor.custom_checks()) == ["rule"]
    assert monitor.validate("ticker", TICKER, now_ms=NOW).score == 100


def test_bad_custom_check_registrations_are_refused(monitor: QualityMonitor) -> None:
    async def coroutine(result: Any) -> bool:
        return True

    with pytest.raises(TypeError):
        monitor.add_custom_check("async", coroutine)
    with pytest.raises(TypeError):
        monitor.add_custom_check("not_callable", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        monitor.add_custom_check("", lambda r: True)
    with pytest.raises(ValueError):
        monitor.add_custom_check("nowhere", lambda r: True, endpoints=[])
    with pytest.raises(ValueError):
        monitor.add_custom_check("level", lambda r: True, severity="fatal")


def test_module_level_functions_use_the_shared_monitor() -> None:
    quality.add_custom_check("module_level_rule", lambda r: "bad", endpoints="ticker")
    try:
        assert quality.quality_monitor.custom_checks()["module_level_rule"].name == "module_level_rule"
        with pytest.raises(DataQualityError):
            quality.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)
    finally:
        assert quality.remove_custom_check("module_level_rule")
    assert quality.check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)[1].score == 100


# -- scores and reports ------------------------------------------------------------------------------
def test_score_formula_is_monotone() -> None:
    def issue(severity: Severity, extent: float) -> Issue:
        return Issue("x", severity, "x", 1, (), extent)

    assert score_of([]) == 100
    assert score_of([issue(Severity.CRITICAL, 0.0)]) == 0
    assert score_of([issue(Severity.ERROR, 1.0)]) == 0
    ladder = [score_of([issue(s, 0.3)]) for s in Severity]
    assert ladder == sorted(ladder, reverse=True) and len(set(ladder)) == 4
    extents = [score_of([issue(Severity.WARNING, e / 10)]) for e in range(11)]
    assert all(a > b for a, b in pairwise(extents))
    one = [issue(Severity.INFO, 0.0)]
    assert score_of([*one, issue(Severity.INFO, 0.0)]) < score_of(one)


def test_report_text_and_dict() -> None:
    report = QualityReport.of(
        "ohlcv",
        [Issue("gap", Severity.WARNING, "m", 3, (4,), 0.1), Issue("stale", Severity.ERROR, "m", 1, (), 0.01)],
        "BTC/USDT",
    )
    assert str(report).startswith("ohlcv BTC/USDT quality ")
    assert "stale (error)" in str(report) and "gap x3 (warning)" in str(report)
    assert report.issues[0].code == "stale"  # worst first
    as_dict = report.to_dict()
    assert as_dict["issues"][1] == {
        "code": "gap",
        "severity": "warning",
        "message": "m",
        "count": 3,
        "where": [4],
        "extent": 0.1,
    }


def test_every_emitted_code_is_documented(monitor: QualityMonitor) -> None:
    rows = broken_candles()
    rows.insert(4, list(rows[4]))
    reports = [
        monitor.validate("ohlcv", rows, timeframe="1m", now_ms=NOW + 3_600_000),
        monitor.validate("ticker", HTML_TICKER),
        monitor.validate("order_book", {"bids": [[1.0, 1.0], [2.0, 0.0]], "asks": [[1.5, 1.0]]}),
        monitor.validate("trades", [{"price": -1, "amount": 1, "timestamp": 5, "side": "x", "id": 1}]),
    ]
    for report in reports:
        assert report is not None and report.issues
        assert report.codes <= set(quality.CODES), report.codes - set(quality.CODES)


# -- timeframes, calendars, staleness ---------------------------------------------------------------
def test_parse_timeframe() -> None:
    assert parse_timeframe("1m").ms == 60_000 and parse_timeframe("4h").ms == 14_400_000
    assert parse_timeframe("1M").months == 1 and parse_timeframe("1y").months == 12
    with pytest.raises(ValueError):
        parse_timeframe("fortnight")


def test_weekly_candles_starting_monday_are_aligned() -> None:
    week = 7 * 86_400_000
    monday = calendar.timegm((2024, 1, 1, 0, 0, 0)) * 1000
    rows = candles(20, week, last_open=monday + 19 * week)
    assert validate_ohlcv(rows, timeframe="1w", now_ms=monday + 19 * week + 1000) == []
    rows[7][0] += 86_400_000  # a Tuesday
    assert "misaligned_timestamp" in {i.code for i in validate_ohlcv(rows, timeframe="1w")}


def test_daily_candles_cut_at_a_local_midnight_are_aligned() -> None:
    day = 86_400_000
    rows = candles(20, day, last_open=(NOW // day) * day - 8 * 3_600_000)  # UTC+8 midnight
    assert validate_ohlcv(rows, timeframe="1d", now_ms=rows[-1][0] + 1000) == []


def test_monthly_candles_follow_the_calendar() -> None:
    starts = [calendar.timegm((2023 + m // 12, m % 12 + 1, 1, 0, 0, 0)) * 1000 for m in range(18)]
    rows = [[ts, 100.0, 101.0, 99.0, 100.5, 1.0] for ts in starts]
    assert validate_ohlcv(rows, timeframe="1M", now_ms=starts[-1] + 86_400_000) == []
    del rows[5]
    gaps = [i for i in validate_ohlcv(rows, timeframe="1M") if i.code == "gap"]
    assert len(gaps) == 1 and gaps[0].count == 1
    rows[3][0] += 86_400_000
    assert "misaligned_timestamp" in {i.code for i in validate_ohlcv(rows, timeframe="1M")}


def test_historical_ranges_are_not_stale() -> None:
    rows = candles(last_open=NOW - 30 * 86_400_000 // MINUTE * MINUTE)
    since = rows[0][0]
    assert "stale" in {i.code for i in validate_ohlcv(rows, timeframe="1m", now_ms=NOW)}
    assert validate_ohlcv(rows, timeframe="1m", now_ms=NOW, since=since) == []
    assert validate_ohlcv(rows, timeframe="1m", now_ms=NOW, since=since, limit=30) == []
    # A since whose range reaches now is a request for the latest candles: staleness counts again.
    stale = validate_ohlcv(rows, timeframe="1m", now_ms=NOW, since=since, limit=10**9)
    assert "stale" in {i.code for i in stale}


def test_a_window_placed_by_params_is_not_the_latest_answer_gone_back() -> None:
    """Candles asked for with ``until`` (no ``since``) after the latest ones: a window the caller
    placed in the past, not the latest candles regressed."""
    monitor = QualityMonitor()
    kw: dict[str, Any] = {"timeframe": "1m", "symbol": "BTC/USDT", "exchange": "binance"}
    monitor.check("ohlcv", candles(), now_ms=NOW, **kw)
    older = candles(last_open=NOW // MINUTE * MINUTE - 360 * MINUTE)
    assert monitor.check("ohlcv", older, window=True, **kw)[1].score == 100
    with pytest.raises(DataQualityError, match="candles_regressed"):
        monitor.check("ohlcv", older, **kw)


def test_staler_series_score_lower(monitor: QualityMonitor) -> None:
    rows = candles()
    scores = [
        monitor.validate("ohlcv", rows, timeframe="1m", now_ms=NOW + k * 10 * MINUTE).score for k in range(4)
    ]
    assert scores[0] == 100 and all(a > b for a, b in pairwise(scores))


def test_without_timeframe_or_now_only_shape_checks_run() -> None:
    rows = candles()
    del rows[10]
    assert validate_ohlcv(rows) == []
    assert validate_ohlcv([]) and validate_ohlcv([])[0].code == "empty"
    assert validate_ohlcv(None)[0].severity is Severity.CRITICAL


def test_flat_series_is_not_full_of_outliers() -> None:
    rows = [[i * MINUTE + 1_700_000_000_000 // MINUTE * MINUTE, 5.0, 5.0, 5.0, 5.0, 0.0] for i in range(100)]
    rows[40][4] = rows[41][1] = 5.001  # a 0.02 % tick on a flat market
    rows[40][2] = rows[41][2] = 5.001
    assert validate_ohlcv(rows, timeframe="1m") == []


# -- order book nonce memory -------------------------------------------------------------------------
def test_book_nonce_going_backwards_is_flagged(monitor: QualityMonitor) -> None:
    book = {"symbol": "BTC/USDT", "bids": [[1.0, 1.0]], "asks": [[2.0, 1.0]], "nonce": 100}
    kw: dict[str, Any] = {"policy": "raise", "min_score": 50, "symbol": "BTC/USDT", "exchange": "binance"}
    assert monitor.check("order_book", book, **kw)[1].score == 100
    older = {**book, "nonce": 99}
    with pytest.raises(DataQualityError, match="nonce_regressed") as info:  # back in time: impossible
        monitor.check("order_book", older, **kw)
    assert info.value.report.has("nonce_regressed") and info.value.report.impossible
    _, report = monitor.check("order_book", older, **{**kw, "policy": "warn"})
    assert report is not None and report.has("nonce_regressed")
    assert monitor.check("order_book", older, **{**kw, "exchange": "kucoin"})[1].score == 100
    assert monitor.check("order_book", {**book, "nonce": 101}, **kw)[1].score == 100
    monitor.forget_nonces()
    assert monitor.check("order_book", older, **kw)[1].score == 100


def test_crossed_book_fails_the_default_minimum() -> None:
    book = {"bids": [[100.0 - i, 1.0] for i in range(50)], "asks": [[99.5 + i, 1.0] for i in range(50)]}
    report = QualityReport.of("order_book", validate_order_book(book))
    assert report.has("crossed") and report.score < 50


# -- thresholds ------------------------------------------------------------------------------------------
def test_thresholds_are_validated_and_used() -> None:
    with pytest.raises(ValueError, match="outlier_threshold"):
        QualityThresholds(outlier_threshold=0)
    strict = QualityMonitor(QualityThresholds(ticker_max_age_ms=100))
    assert strict.validate("ticker", TICKER, now_ms=NOW).has("stale")
    lenient = QualityThresholds(ticker_max_age_ms=10_000)
    assert strict.validate("ticker", TICKER, now_ms=NOW, thresholds=lenient).score == 100


# -- the HTML-with-200 failure, through ccxt's own parsers -------------------------------------------
@pytest.mark.parametrize("endpoint", ["ohlcv", "ticker", "order_book", "trades"])
def test_html_body_parsed_by_ccxt_scores_zero(endpoint: str) -> None:
    exchange = ccxt.binance()
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    parsers = {
        "ohlcv": lambda: exchange.parse_ohlcvs(html, None, "1m"),
        "ticker": lambda: exchange.parse_ticker(html),
        "order_book": lambda: exchange.parse_order_book(html, "BTC/USDT"),
        "trades": lambda: exchange.parse_trades(html, None),
    }
    result = parsers[endpoint]()
    binance = QualityThresholds(continuous_candles=True)  # its adapter profile's [market_data]
    report = QualityMonitor().validate(
        endpoint, result, timeframe="1m", now_ms=NOW, symbol="BTC/USDT", thresholds=binance
    )
    assert report is not None and report.score < 1, report
    with pytest.raises(DataQualityError):
        QualityMonitor().check(endpoint, result, policy="repair", min_score=1, timeframe="1m", now_ms=NOW)


# -- robustness: a validator never turns garbage into an exception ----------------------------------
_KEYS = [
    "bids",
    "asks",
    "price",
    "amount",
    "timestamp",
    "side",
    "id",
    "bid",
    "ask",
    "last",
    "symbol",
    "nonce",
]
_SCALARS = st.none() | st.booleans() | st.floats() | st.integers(-(10**20), 10**20) | st.text(max_size=4)
_NUMBERS = st.floats() | st.integers(-(10**20), 10**20) | st.none()
_ANSWERS = (
    st.recursive(
        _SCALARS,
        lambda inner: (
            st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=8)
        ),
        max_leaves=30,
    )
    | st.lists(st.lists(_NUMBERS, min_size=5, max_size=7), max_size=20)
    | st.fixed_dictionaries(
        {
            "bids": st.lists(st.lists(_NUMBERS, min_size=1, max_size=3), max_size=8),
            "asks": st.lists(st.lists(_NUMBERS, min_size=1, max_size=3), max_size=8),
            "timestamp": _NUMBERS,
            "nonce": _NUMBERS,
        }
    )
    | st.lists(
        st.fixed_dictionaries({k: _SCALARS for k in ("price", "amount", "timestamp", "side", "id")}),
        max_size=8,
    )
    | st.fixed_dictionaries(
        {k: _NUMBERS for k in ("bid", "ask", "last", "close", "high", "low", "timestamp")}
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    answer=_ANSWERS,
    endpoint=st.sampled_from(["ohlcv", "ticker", "tickers", "order_book", "trades"]),
    timeframe=st.sampled_from([None, "1m", "4h", "1w", "1M"]),
)
def test_garbage_never_raises_anything_but_data_quality_errors(
    answer: Any, endpoint: str, timeframe: Any
) -> None:
    monitor = QualityMonitor()
    for policy in ("warn", "repair", "raise"):
        try:
            _, report = monitor.check(
                endpoint,
                answer,
                policy=policy,
                min_score=50,
                timeframe=timeframe,
                now_ms=NOW,
                symbol="BTC/USDT",
            )
        except DataQualityError as exc:
            assert exc.report.score < 50 or exc.report.impossible  # impossible values fail at any score
        else:
            assert report is not None and 0 <= report.score <= 100


def test_a_failing_book_does_not_move_the_nonce_memory(monitor: QualityMonitor) -> None:
    kw: dict[str, Any] = {"policy": "warn", "min_score": 50, "symbol": "BTC/USDT"}
    good = {"bids": [[1.0, 1.0]], "asks": [[2.0, 1.0]], "nonce": 10}
    monitor.check("order_book", good, **kw)
    with capture_logs():
        monitor.check("order_book", {"bids": [], "asks": [], "nonce": 10**15}, **kw)  # garbage
    assert monitor.check("order_book", {**good, "nonce": 11}, **kw)[1].score == 100
