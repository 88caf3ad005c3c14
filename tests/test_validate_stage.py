"""The validation stage inside the client, against the simulator's bad data and HTML answers."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest
from structlog.testing import capture_logs

from hardened import DataQualityError, HardenedClient, quality
from hardened.sim import Simulator
from hardened.telemetry.events import bus
from hardened.testing import capture_events, heal_after_first_fault

FAST = {"initial_delay": 0.01, "jitter": 0.0, "cache_ttl": 0.0, "stale_if_error": 0.0}


pytestmark = pytest.mark.usefixtures("calm")  # `sim` and `calm` come from conftest.py


def client(sim: Simulator, exchange_id: str = "binance", **settings: Any) -> HardenedClient:
    ex = HardenedClient(
        sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False})), **{**FAST, **settings}
    )
    ex.load_markets()
    return ex


def fault(endpoint: str, **rule: Any) -> dict[str, Any]:
    return {"name": "test", "faults": [{"endpoints": [endpoint], **rule}]}


@pytest.mark.parametrize(("exchange_id", "symbol"), [("binance", "BTC/USDT"), ("kucoin", "BTC/USDT")])
def test_html_200_is_caught_and_never_reaches_the_bot(sim: Simulator, exchange_id: str, symbol: str) -> None:
    ex = client(sim, exchange_id, max_retries=0)
    sim.set_profile(fault("ticker", kind="html_200"))
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
    assert raw.fetch_ticker(symbol)["bid"] is None  # what ccxt hands a bot: no error, all None
    events: list[dict[str, Any]] = []
    unsubscribe = bus.subscribe(events.append)
    try:
        with pytest.raises(DataQualityError) as info:
            ex.fetch_ticker(symbol)
    finally:
        unsubscribe()
    assert isinstance(info.value, ccxt.BadResponse)
    assert info.value.score < 50
    assert "garbled_body" in str(info.value.report)  # refused before ccxt's parser made Nones of it
    assert any(e["kind"] == "quality_failed" and e["endpoint"] == "ticker" for e in events)


def test_bad_answer_is_retried_like_any_bad_response(sim: Simulator) -> None:
    ex = client(sim, max_retries=3)
    sim.set_profile(fault("ticker", kind="html_200"))
    healer = heal_after_first_fault(sim, "binance", "ticker")
    with capture_events(["quality_failed"]) as events:
        ticker = ex.fetch_ticker("BTC/USDT")
    healer.join()
    assert ticker["bid"] is not None
    stats = ex.stats()["endpoints"]["ticker"]
    assert (stats["retries"], stats["successes"], stats["last_quality"]) == (1, 1, 100.0)
    assert len(events) == 1


def test_bad_data_counts_against_the_breaker(sim: Simulator) -> None:
    ex = client(sim, max_retries=0, failure_threshold=2)
    sim.set_profile(fault("order_book", kind="bad_data", variants=["crossed_book"]))
    for _ in range(2):
        with pytest.raises(DataQualityError):
            ex.fetch_order_book("BTC/USDT")
    assert ex.breakers["binance_order_book"].state == "open"


def test_repair_policy_hands_back_clean_candles(sim: Simulator) -> None:
    ex = client(sim, endpoints={"ohlcv": {"quality_policy": "repair"}})
    sim.set_profile(fault("ohlcv", kind="bad_data", variants=["duplicates"]))
    candles = ex.fetch_ohlcv("BTC/USDT", "1m", limit=100)
    stamps = [c[0] for c in candles]
    assert stamps == sorted(set(stamps))
    assert ex.stats()["endpoints"]["ohlcv"]["last_quality"] is not None


def test_warn_policy_logs_and_passes(sim: Simulator) -> None:
    ex = client(sim, quality_policy="warn")
    sim.set_profile(fault("ticker", kind="html_200"))
    with capture_logs() as logs:
        ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["bid"] is None
    assert any(e["event"] == "data_quality_below_minimum" for e in logs)


def test_off_policy_returns_what_ccxt_returns(sim: Simulator) -> None:
    ex = client(sim, quality_policy="off")
    sim.set_profile(fault("ticker", kind="html_200"))
    assert ex.fetch_ticker("BTC/USDT")["bid"] is None
    assert ex.stats()["endpoints"]["ticker"]["last_quality"] is None


def test_clean_answers_pass_untouched(sim: Simulator) -> None:
    ex = client(sim)
    raw = sim.attach(ccxt.binance({"enableRateLimit": False}))
    since = raw.milliseconds() - 200 * 60_000
    since -= since % 60_000
    assert ex.fetch_ohlcv("BTC/USDT", "1m", since, 100) == raw.fetch_ohlcv("BTC/USDT", "1m", since, 100)
    assert ex.stats()["endpoints"]["ohlcv"]["last_quality"] == 100.0


def test_user_checks_run_inside_the_client(sim: Simulator) -> None:
    ex = client(sim, max_retries=0)
    quality.add_custom_check(
        "no_btc_above_a_million", lambda t: (t.get("last") or 0) < 1.0, endpoints="ticker"
    )
    try:
        with pytest.raises(DataQualityError, match="no_btc_above_a_million"):
            ex.fetch_ticker("BTC/USDT")
    finally:
        quality.remove_custom_check("no_btc_above_a_million")
    assert ex.fetch_ticker("BTC/USDT")["last"] > 1.0


@pytest.mark.parametrize("key", ["startTime", "endTime"])
def test_a_window_placed_by_the_exchanges_own_params_is_not_stale(sim: Simulator, key: str) -> None:
    # Binance's startTime (like ccxt's since) asks for old candles on purpose: they were refused
    # as "stale x49" under the default policy.
    ex = client(sim)
    raw = sim.attach(ccxt.binance({"enableRateLimit": False}))
    at = raw.milliseconds() - 3_600_000
    params = {key: at - at % 60_000}
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=10, params=params) == raw.fetch_ohlcv(
        "BTC/USDT", "1m", limit=10, params=params
    )


@pytest.mark.parametrize(
    ("exchange_id", "limit", "quiet"), [("kucoin", 100, 60), ("bitvavo", 1, 10), ("bitvavo", 100, 60)]
)
def test_a_quiet_market_where_quiet_minutes_are_skipped_is_not_refused(
    sim: Simulator, exchange_id: str, limit: int, quiet: int
) -> None:
    """KuCoin and Bitvavo send no candle for a minute without trades: on a market quiet for the
    last ``quiet`` minutes the newest candle is that old. That is the exchange's truth
    (``limit=1``, "the latest candle", is a bot's everyday call), so the wrapper hands back
    exactly what raw ccxt does instead of refusing it as stale."""
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
    real = raw.publicGetMarketCandles

    def quiet_answer(params: Any, *args: Any, **kwargs: Any) -> Any:
        if exchange_id == "bitvavo":  # the newest ``limit`` candles the market has: ask for more
            params = {**params, "limit": 1440}
        answer = real(params, *args, **kwargs)  # newest first
        cutoff = raw.milliseconds() - quiet * 60_000
        if exchange_id == "kucoin":  # {"data": [[open in seconds (a string), ...], ...]}
            answer["data"] = [row for row in answer["data"] if int(row[0]) * 1000 < cutoff]
            return answer
        return [row for row in answer if row[0] < cutoff][:limit]

    raw.publicGetMarketCandles = quiet_answer
    ex = HardenedClient(raw, **{**FAST, "max_retries": 0})
    ex.load_markets()
    expected = raw.fetch_ohlcv("BTC/USDT" if exchange_id == "kucoin" else "BTC/EUR", "1m", limit=limit)
    assert expected and all(raw.milliseconds() - c[0] > quiet * 60_000 for c in expected)
    got = ex.fetch_ohlcv("BTC/USDT" if exchange_id == "kucoin" else "BTC/EUR", "1m", limit=limit)
    assert got == expected


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "param"),
    [("binance", "BTC/USDT", "endTime"), ("binance", "BTC/USDT", "until"), ("bitvavo", "BTC/EUR", "until")],
)
def test_a_window_placed_by_params_is_not_held_against_the_latest_answer(
    sim: Simulator, exchange_id: str, symbol: str, param: str
) -> None:
    """A bot reads the latest candles and trades, then a window of six hours ago placed with
    ccxt's ``until`` or the exchange's own ``endTime`` (no ``since``). That window is not "the
    latest" gone back in time (``candles_regressed``, ``trades_regressed``): the wrapper hands
    back exactly what raw ccxt does."""
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
    ex = client(sim, exchange_id, max_retries=0)
    end = raw.milliseconds() - 6 * 3_600_000
    ex.fetch_ohlcv(symbol, "1m", limit=50)
    expected = raw.fetch_ohlcv(symbol, "1m", limit=50, params={param: end})
    assert expected and expected[-1][0] <= end
    assert ex.fetch_ohlcv(symbol, "1m", limit=50, params={param: end}) == expected
    ex.fetch_trades(symbol, limit=50)
    trades = raw.fetch_trades(symbol, None, 50, {param: end})
    assert trades and trades[-1]["timestamp"] <= end
    assert ex.fetch_trades(symbol, None, 50, {param: end}) == trades
    assert ex.fetch_trades(symbol, limit=50, params={param: end}) == trades
