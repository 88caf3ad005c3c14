"""Fault injection: each fault kind reaches ccxt as the error class ccxt raises against the live
exchange; decisions are reproducible for a seed; profiles validate with clear errors.

What ccxt 4.5.90's binance does with each fault (the simulator's answers are the real ones):
- 500/502/503 with an HTML body -> ExchangeNotAvailable; 504 -> RequestTimeout.
- 429 and 418 -> DDoSProtection (binance's handle_errors raises it for both, before any code).
- connection reset / accept-then-drop -> NetworkError (async: ExchangeNotAvailable, a NetworkError).
- timeout (connection held past exchange.timeout) -> RequestTimeout.
- exchange_error: maintenance -> OnMaintenance, clock_skew -> InvalidNonce, rate_limit -> DDoSProtection.
- 200 with an HTML body -> no error: fetch_ticker returns a ticker of Nones, fetch_ohlcv rows of Nones.
- malformed JSON (truncated) -> no error: ccxt parses the raw text and returns garbage.
- bad data -> no error: the defect is in the result (ccxt sorts candles, so out-of-order candles are
  hidden by ccxt itself; duplicates, gaps, high < low, stale and zero/negative prices get through).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened.sim import Simulator
from hardened.sim import faults as faults_module
from hardened.sim.faults import FaultEngine, ProfileError, load_profile


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(exchange="binance", seed=5) as s:
        yield s


@pytest.fixture
def ex(sim: Simulator) -> Iterator[ccxt.binance]:
    exchange = sim.attach(ccxt.binance({"enableRateLimit": False}))
    sim.set_profile(None)
    exchange.load_markets()
    yield exchange
    sim.set_profile(None)


def _on_ticker(kind: str, **extra: object) -> dict[str, object]:
    return {"faults": [{"kind": kind, "endpoints": ["ticker"], **extra}]}


@pytest.mark.parametrize(
    ("profile", "error", "status"),
    [
        (_on_ticker("http_5xx", status=[500]), ccxt.ExchangeNotAvailable, 500),
        (_on_ticker("http_5xx", status=[502]), ccxt.ExchangeNotAvailable, 502),
        (_on_ticker("http_5xx", status=[503]), ccxt.ExchangeNotAvailable, 503),
        (_on_ticker("http_5xx", status=[504]), ccxt.RequestTimeout, 504),
        (_on_ticker("rate_limit_429", retry_after=7), ccxt.DDoSProtection, 429),
        (_on_ticker("ban_418", retry_after=30), ccxt.DDoSProtection, 418),
        (_on_ticker("exchange_error", error="maintenance"), ccxt.OnMaintenance, 503),
        (_on_ticker("exchange_error", error="clock_skew"), ccxt.InvalidNonce, 400),
        (_on_ticker("exchange_error", error="rate_limit"), ccxt.DDoSProtection, 429),
        (_on_ticker("reset"), ccxt.NetworkError, None),
    ],
    ids=["500", "502", "503", "504", "429", "418", "maintenance", "clock_skew", "rate_limit", "reset"],
)
def test_fault_reaches_ccxt_as_its_live_error(
    sim: Simulator, ex: ccxt.binance, profile: dict[str, object], error: type, status: int | None
) -> None:
    sim.set_profile(profile)
    with pytest.raises(error):
        ex.fetch_ticker("BTC/USDT")
    record = sim.ground_truth()[-1]
    assert record["endpoint"] == "ticker" and record["status"] == status
    assert record["fault_kind"] == profile["faults"][0]["kind"]  # type: ignore[index]
    if status in (429, 418):
        retry_after = profile["faults"][0].get("retry_after", 1)  # type: ignore[index]
        assert ex.last_response_headers["Retry-After"] == str(retry_after)
    assert len(ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)) == 2  # other endpoints untouched


@pytest.mark.parametrize("kind", ["rate_limit_429", "ban_418"])
@pytest.mark.parametrize(("retry_after", "header"), [(0.5, "1"), (2.5, "3"), (0.2, "1"), (0, "0")])
def test_retry_after_is_rounded_up_to_whole_seconds(
    sim: Simulator, ex: ccxt.binance, kind: str, retry_after: float, header: str
) -> None:
    """Retry-After means "not before": 0.5 s was sent as 0 (retry at once) and 2.5 s as 2."""
    sim.set_profile(_on_ticker(kind, retry_after=retry_after))
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_ticker("BTC/USDT")
    assert ex.last_response_headers["Retry-After"] == header


def test_a_kucoin_ban_rounds_retry_after_up() -> None:
    with Simulator(exchange="kucoin", profile=_on_ticker("ban_418", retry_after=0.5)) as s:
        kucoin = s.attach(ccxt.kucoin({"enableRateLimit": False}))
        with pytest.raises(ccxt.RateLimitExceeded):
            kucoin.fetch_ticker("BTC/USDT")
        assert kucoin.last_response_headers["Retry-After"] == "1"


def test_timeout_holds_the_connection_past_the_client_timeout(sim: Simulator, ex: ccxt.binance) -> None:
    sim.set_profile(_on_ticker("timeout", hold=10))
    ex.timeout = 300
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ticker("BTC/USDT")
    assert sim.ground_truth()[-1]["outcome"] == "timeout"


def test_html_200_gives_a_ticker_of_nones(sim: Simulator, ex: ccxt.binance) -> None:
    sim.set_profile({"faults": [{"kind": "html_200", "endpoints": ["ticker", "ohlcv"]}]})
    ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["last"] is None and ticker["bid"] is None and ticker["timestamp"] is None
    assert all(value is None for row in ex.fetch_ohlcv("BTC/USDT", "1m", limit=3) for value in row)


def test_malformed_json_gives_garbage_without_an_error(sim: Simulator, ex: ccxt.binance) -> None:
    sim.set_profile(_on_ticker("malformed_json"))
    assert ex.fetch_ticker("BTC/USDT")["last"] is None
    assert sim.ground_truth()[-1]["status"] == 200


def _bad(sim: Simulator, endpoint: str, variant: str) -> None:
    sim.set_profile({"faults": [{"kind": "bad_data", "endpoints": [endpoint], "variants": [variant]}]})


def test_bad_candles_show_up_in_the_result(sim: Simulator, ex: ccxt.binance) -> None:
    _bad(sim, "ohlcv", "high_low")
    assert any(c[2] < c[3] for c in ex.fetch_ohlcv("BTC/USDT", "1m", limit=10))
    _bad(sim, "ohlcv", "gaps")
    gappy = ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)
    assert len(gappy) < 10 and any(b[0] - a[0] > 60_000 for a, b in pairwise(gappy))
    _bad(sim, "ohlcv", "duplicates")
    stamps = [c[0] for c in ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)]
    assert len(stamps) > len(set(stamps))
    _bad(sim, "ohlcv", "stale")
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)[-1][0] < sim.now_ms() - 5 * 60_000
    _bad(sim, "ohlcv", "zero_price")
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)[-1][3] == 0
    _bad(sim, "ohlcv", "negative_price")
    assert ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)[-1][3] < 0
    assert sim.ground_truth()[-1]["fault"] == "bad_data:negative_price"


def test_bad_tickers_books_and_trades_show_up_in_the_result(sim: Simulator, ex: ccxt.binance) -> None:
    _bad(sim, "ticker", "null_ticker")
    assert all(ex.fetch_ticker("BTC/USDT")[k] is None for k in ("last", "bid", "ask", "high", "timestamp"))
    _bad(sim, "ticker", "crossed_book")
    ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["bid"] > ticker["ask"]
    _bad(sim, "ticker", "stale")
    assert ex.fetch_ticker("BTC/USDT")["timestamp"] < sim.now_ms() - 5 * 60_000
    _bad(sim, "order_book", "crossed_book")
    book = ex.fetch_order_book("BTC/USDT", 10)
    assert book["bids"][0][0] > book["asks"][0][0]
    _bad(sim, "trades", "duplicates")
    ids = [t["id"] for t in ex.fetch_trades("BTC/USDT", limit=20)]
    assert len(ids) > len(set(ids))


def test_accept_then_drop_places_the_order_but_loses_the_answer(sim: Simulator, ex: ccxt.binance) -> None:
    price = round(ex.fetch_ticker("ETH/USDT")["bid"] * 0.5, 2)
    sim.set_profile({"faults": [{"kind": "accept_then_drop", "endpoints": ["create_order"]}]})
    with pytest.raises(ccxt.NetworkError):
        ex.create_order("ETH/USDT", "limit", "buy", 0.1, price, {"clientOrderId": "dropped-1"})
    assert sim.ground_truth()[-1]["outcome"] == "dropped"
    placed = [o for o in sim.orders("binance") if o.client_order_id == "dropped-1"]
    assert len(placed) == 1 and placed[0].status == "open"
    sim.set_profile(None)
    found = ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "dropped-1"})
    assert found["id"] == placed[0].id and found["status"] == "open"
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):  # a blind retry is refused
        ex.create_order("ETH/USDT", "limit", "buy", 0.1, price, {"clientOrderId": "dropped-1"})


@pytest.mark.parametrize(
    ("exchange_id", "broken", "healthy"),
    [
        ("binance", "BTC/USDT", "ETH/USDT"),
        ("kucoin", "BTC/USDT", "ETH/USDT"),
        ("bitvavo", "BTC/EUR", "ETH/EUR"),
    ],
)
def test_a_rule_narrowed_to_one_market_fires_on_orders_whose_market_is_in_the_body(
    exchange_id: str, broken: str, healthy: str
) -> None:
    """Orders carry their market in a form (Binance) or JSON (KuCoin, Bitvavo) body, not the query."""
    profile = {
        "faults": [{"kind": "http_5xx", "status": [503], "endpoints": ["create_order"], "symbols": [broken]}]
    }
    with Simulator(exchange=exchange_id, profile=profile, seed=1) as s:
        ex = s.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
        ex.load_markets()
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.create_order(broken, "market", "buy", 0.001)
        assert ex.create_order(healthy, "market", "buy", 0.01)["id"]
        faults = [
            (r["endpoint"], r["fault_kind"]) for r in s.ground_truth() if r["endpoint"] == "create_order"
        ]
        assert faults == [("create_order", "http_5xx"), ("create_order", None)]
        assert [o.symbol for o in s.orders(exchange_id)] == [healthy]


def test_latency_is_added_and_recorded(sim: Simulator, ex: ccxt.binance) -> None:
    sim.set_profile(
        {
            "faults": [
                {
                    "kind": "latency",
                    "endpoints": ["ticker"],
                    "latency": {"distribution": "fixed", "seconds": 0.05},
                }
            ]
        }
    )
    assert ex.fetch_ticker("BTC/USDT")["last"] > 0
    record = sim.ground_truth()[-1]
    assert record["latency_added"] == 0.05 and record["fault_kind"] == "latency" and record["status"] == 200


async def test_async_exchange_sees_the_same_error_classes(sim: Simulator) -> None:
    ex = sim.attach(accxt.binance({"enableRateLimit": False}))
    try:
        await ex.load_markets()
        sim.set_profile(_on_ticker("reset"))
        with pytest.raises(ccxt.NetworkError):
            await ex.fetch_ticker("BTC/USDT")
        sim.set_profile(_on_ticker("rate_limit_429"))
        with pytest.raises(ccxt.DDoSProtection):
            await ex.fetch_ticker("BTC/USDT")
        sim.set_profile(_on_ticker("timeout", hold=10))
        ex.timeout = 300
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_ticker("BTC/USDT")
        ex.timeout = 10_000
        sim.set_profile({"faults": [{"kind": "accept_then_drop", "endpoints": ["create_order"]}]})
        with pytest.raises(ccxt.NetworkError):
            await ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "async-drop"})
        assert [o.status for o in sim.orders("binance") if o.client_order_id == "async-drop"] == ["closed"]
    finally:
        sim.set_profile(None)
        await ex.close()


# -- reproducibility ------------------------------------------------------------------------------
MIXED = {
    "faults": [
        {
            "kind": "latency",
            "probability": 0.3,
            "latency": {"distribution": "lognormal", "median": 0.1, "sigma": 1},
        },
        {"kind": "http_5xx", "probability": 0.2},
        {"kind": "rate_limit_429", "endpoints": ["ticker"], "probability": 0.2},
        {"kind": "bad_data", "endpoints": ["ohlcv"], "probability": 0.3},
    ]
}


def _decisions(seed: int, calls: list[str]) -> list[tuple[object, ...]]:
    engine = FaultEngine(load_profile(MIXED), seed)
    out = []
    for endpoint in calls:
        d = engine.decide("binance", endpoint)
        out.append(
            (endpoint, None) if d is None else (endpoint, d.action, d.latency, d.choose([500, 502, 503, 504]))
        )
    return out


def test_same_seed_same_fault_decisions() -> None:
    calls = ["ticker", "ohlcv", "balance"] * 100
    first = _decisions(11, calls)
    assert first == _decisions(11, calls)
    assert first != _decisions(12, calls)
    actions = [d[1] for d in first if d[1] is not None]
    assert {"http_5xx", "rate_limit_429", "bad_data"} <= set(actions)
    # the n-th ticker request gets the same decision whatever else was called in between
    only_tickers = [d for d in _decisions(11, ["ticker"] * 100)]
    assert only_tickers == [d for d in first if d[0] == "ticker"]


def test_same_seed_same_faults_over_http() -> None:
    profile = {
        "faults": [{"kind": "http_5xx", "probability": 0.3}, {"kind": "rate_limit_429", "probability": 0.2}]
    }
    runs = []
    for _ in range(2):
        with Simulator(exchange="binance", profile=profile, seed=99) as s:
            e = s.attach(ccxt.binance({"enableRateLimit": False}))
            for _ in range(25):
                with contextlib.suppress(ccxt.BaseError):
                    e.publicGetTicker24hr({"symbol": "BTCUSDT"})
            runs.append([(r["fault_kind"], r["status"]) for r in s.ground_truth()])
    assert runs[0] == runs[1]
    assert any(kind for kind, _ in runs[0]) and any(kind is None for kind, _ in runs[0])


def test_windows_and_probability_bounds() -> None:
    profile = load_profile(
        {
            "faults": [
                {"kind": "http_5xx", "window": {"start": 10, "end": 20}},
                {"kind": "reset", "probability": 0.0},
            ]
        }
    )
    engine = FaultEngine(profile, 1, started=1000.0)
    assert engine.decide("binance", "ticker", now=1005.0) is None
    decision = engine.decide("binance", "ticker", now=1015.0)
    assert decision is not None and decision.action == "http_5xx"
    assert engine.decide("binance", "ticker", now=1020.0) is None


def test_schedule_switches_regimes_over_compressed_time() -> None:
    profile = load_profile(
        {
            "regimes": {
                "outage": {"faults": [{"kind": "http_5xx", "status": [503]}]},
                "busy": {"faults": [{"kind": "rate_limit_429"}]},
            },
            "schedule": {
                "time_compression": 60,
                "start_hour": 12,
                "periods": [{"regime": "calm", "duration": 600}, {"regime": "outage", "duration": 60}],
                "hours": [{"hours": [13], "regime": "busy"}],
            },
        }
    )
    engine = FaultEngine(profile, 1, started=0.0)
    assert engine.sim_elapsed(now=10.0) == 600.0  # 10 real seconds = 10 sim minutes
    assert engine.regimes_at(30.0) == ("calm", None)
    assert engine.regimes_at(610.0) == ("outage", None)
    assert engine.regimes_at(660.0 + 30.0) == ("calm", None)  # the cycle repeats
    assert engine.regimes_at(3600.0 + 30.0) == ("calm", "busy")  # 13:00 sim time
    assert engine.decide("binance", "ticker", now=5.0) is None
    outage = engine.decide("binance", "ticker", now=10.5)
    assert outage is not None and outage.action == "http_5xx" and outage.regime == "outage"
    busy = engine.decide("binance", "ticker", now=61.0)
    assert busy is not None and busy.action == "rate_limit_429" and busy.regime == "busy"


def test_set_profile_keeps_the_hour_of_day_of_the_simulators_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """set_profile kept the start for windows but took the wall clock anew: after 3 h of running,
    hour-of-day regimes moved 3 h later than those of the simulator's own clock."""
    start_wall = time.time()
    hour = time.gmtime(start_wall).tm_hour
    profile = {
        "regimes": {"busy": {"faults": [{"kind": "reset"}]}},
        "schedule": {"hours": [{"hours": [hour, (hour + 1) % 24], "regime": "busy"}]},
    }
    sim = Simulator(exchange="binance", profile=profile)  # not started: the engine is the point
    first = sim.faults
    assert first.regimes_at(0.0) == (None, "busy")
    later_mono, later_wall = time.monotonic() + 3 * 3600, time.time() + 3 * 3600
    three_hours_on = SimpleNamespace(
        monotonic=lambda: later_mono, time=lambda: later_wall, gmtime=time.gmtime
    )
    monkeypatch.setattr(faults_module, "time", three_hours_on)  # the fault engine's clock only
    sim.set_profile(profile)
    assert sim.faults.started == first.started and sim.faults.started_wall == first.started_wall
    assert sim.faults.regimes_at(0.0) == (None, "busy")  # the simulator's first sim second


def test_builtin_profiles_load() -> None:
    for name in ("calm", "flaky", "storm", "lively", "chaos_orders"):
        profile = load_profile(name)
        assert profile.name == name
    assert load_profile("calm").is_calm and not load_profile("storm").is_calm
    lively = load_profile("lively")
    assert lively.schedule is not None and {"outage", "burst", "degraded"} <= set(lively.regimes)
    chaos = load_profile("chaos_orders")
    assert any(r.kind == "accept_then_drop" and r.endpoints == ["create_order"] for r in chaos.faults)


def test_a_folder_named_like_a_builtin_profile_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder holding ``baddata/`` (a bot's data directory), ``load_profile("baddata")``
    failed with "Is a directory" instead of loading the built-in profile."""
    (tmp_path / "baddata").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_profile("baddata").name == "baddata"


def test_bad_profile_names_the_file_the_field_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[[faults]]\nkind = "http_5xx"\nprobability = 1.5\n\n'
        '[[faults]]\nkind = "latency"\nendpoints = ["tickr"]\n\n'
        '[[faults]]\nkind = "reset"\nretry_after = 3\n'
    )
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    message = str(err.value)
    assert str(path) in message
    assert "faults[0].probability" in message and "less than or equal to 1" in message
    assert "faults[1].endpoints" in message and "'tickr'" in message
    assert "faults[2]" in message and "retry_after" in message
    bad_json = tmp_path / "broken.json"
    bad_json.write_text(json.dumps({"schedule": {"periods": [{"regime": "nope", "duration": 5}]}}))
    with pytest.raises(ProfileError, match=r"broken\.json[\s\S]*'nope' is not defined"):
        load_profile(bad_json)
    unparsable = tmp_path / "junk.toml"
    unparsable.write_text("faults = [")
    with pytest.raises(ProfileError, match=r"junk\.toml: cannot parse"):
        load_profile(unparsable)
    with pytest.raises(ProfileError, match="unknown fault profile 'no-such'"):
        load_profile("no-such")
    with pytest.raises(ProfileError, match=r"latency: distribution 'uniform' needs high"):
        load_profile({"faults": [{"kind": "latency", "latency": {"distribution": "uniform", "low": 1}}]})
    with pytest.raises(ProfileError):
        Simulator(exchange="binance", profile={"faults": [{"kind": "exchange_error"}]})


def test_ground_truth_hides_secrets_and_aggregates(sim: Simulator, ex: ccxt.binance) -> None:
    sim.clear_ground_truth()
    sim.set_profile(_on_ticker("http_5xx", status=[502]))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ticker("BTC/USDT")
    ex.fetch_balance()
    records = sim.ground_truth()
    assert all("signature" not in r["path"] and ex.secret not in r["path"] for r in records)
    balance = next(r for r in records if r["endpoint"] == "balance")
    assert "timestamp=" in balance["path"] and balance["fault"] is None
    counts = sim.ground_truth_counts()
    assert counts["requests"] == len(records) and counts["faulted"] == 1
    assert counts["by_fault"] == {"http_5xx": 1}
    assert counts["by_endpoint"]["binance:ticker"]["statuses"] == {"502": 1}
    assert counts["by_endpoint"]["binance:balance"]["requests"] == 1


def test_ground_truth_is_bounded() -> None:
    with Simulator(exchange="binance", ground_truth_size=3) as s:
        e = s.attach(ccxt.binance({"enableRateLimit": False}))
        for _ in range(5):
            e.fetch_time()
        assert len(s.ground_truth()) == 3 and s.ground_truth()[-1]["endpoint"] == "time"
