"""Health scores: levels, each component with its reason, latency baselines, memory, overall."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import ccxt
import psutil
import pytest

from hardened import HardenedClient
from hardened.telemetry import health as health_module
from hardened.telemetry.health import (
    HealthGate,
    LatencyBaselines,
    baselines,
    client_health,
    configure_health,
    level_of,
    overall_health,
    policy,
)


@pytest.fixture(autouse=True)
def _restore_policy() -> Iterator[None]:
    saved = dict(vars(policy))
    yield
    for name, value in saved.items():
        setattr(policy, name, value)


def endpoint(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "calls": 100,
        "successes": 100,
        "failures": {},
        "failed": 0,
        "retries": 0,
        "skips": 0,
        "cache_hits": 0,
        "stale_served": 0,
        "last_quality": None,
        "recent": {"window_s": 60, "calls": 100, "failures": 0},
        "latency_ms": {"p50": 20.0, "p95": 30.0, "p99": 40.0},
        "breaker": {"name": "binance_ticker", "state": "closed"},
    }
    data.update(over)
    return data


def stats(client: str = "binance", **endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"client": client, "exchange": "binance", "endpoints": endpoints or {"ticker": endpoint()}}


def score(s: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return client_health(s, memory=False, store=kw.pop("store", LatencyBaselines()), **kw)


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (100, "excellent"),
        (90, "excellent"),
        (89.9, "good"),
        (75, "good"),
        (74.9, "fair"),
        (60, "fair"),
        (59.9, "poor"),
        (40, "poor"),
        (39.9, "critical"),
        (0, "critical"),
    ],
)
def test_levels(value: float, level: str) -> None:
    assert level_of(value) == level


def test_healthy_client_scores_100() -> None:
    h = score(stats())
    assert h["score"] == 100.0 and h["status"] == "excellent"
    assert h["reasons"] == ["all endpoints healthy"]
    assert set(h["components"]) == {
        "error_rate",
        "breakers",
        "latency",
        "skips",
        "stale",
        "quality",
        "memory",
    }


def test_idle_client_says_so() -> None:
    idle = endpoint(calls=0, recent={"window_s": 60, "calls": 0, "failures": 0}, latency_ms={"p50": None})
    assert score(stats(ticker=idle))["reasons"] == ["no calls in the last minute"]


def test_error_rate_costs_points_with_a_reason() -> None:
    h = score(stats(ticker=endpoint(recent={"window_s": 60, "calls": 100, "failures": 20})))
    assert h["components"]["error_rate"] == 20.0
    assert h["score"] == 80.0 and h["status"] == "good"
    assert "20.0% of calls failed in the last minute (20/100)" in h["reasons"]


def test_open_and_half_open_breakers() -> None:
    # Two endpoints with equal traffic: each carries half; both breakers not closed for ten minutes.
    h = score(
        stats(
            ticker=endpoint(breaker={"state": "open", "tripped_for": 600.0}),
            ohlcv=endpoint(breaker={"state": "half_open", "tripped_for": 600.0}),
        )
    )
    assert h["components"]["breakers"] == 37.5 and h["score"] == 62.5 and h["status"] == "fair"
    assert "ticker: breaker open for 600 s (50% of traffic)" in h["reasons"]
    assert "ohlcv: breaker half-open, probing for 600 s (50% of traffic)" in h["reasons"]


def test_a_breaker_weighs_by_its_share_of_traffic_and_how_long_it_has_been_open() -> None:
    def breaker_points(calls: int, tripped_for: float) -> float:
        busy = endpoint(recent={"window_s": 60, "calls": 900, "failures": 0})
        tripped = endpoint(
            recent={"window_s": 60, "calls": calls, "failures": 0},
            breaker={"state": "open", "tripped_for": tripped_for},
        )
        return float(score(stats(ticker=busy, balance=tripped))["components"]["breakers"])

    assert breaker_points(9, 0.0) < breaker_points(900, 0.0)  # light endpoint < busy endpoint
    assert breaker_points(900, 0.0) < breaker_points(900, 60.0) < breaker_points(900, 120.0)
    assert breaker_points(900, 120.0) == breaker_points(900, 600.0) == 25.0  # half the traffic, in full


def test_a_few_breakers_open_at_three_percent_failures_is_not_critical() -> None:
    """The demo's weather: ~3 % of calls fail and a few light endpoints' breakers just opened."""
    busy = {"ticker": 400, "ohlcv": 300, "order_book": 250, "trades": 120}
    light = {"balance": 40, "create_order": 15, "cancel_order": 15, "markets": 2}
    endpoints = {
        name: endpoint(recent={"window_s": 60, "calls": calls, "failures": calls * 3 // 100})
        for name, calls in busy.items()
    }
    for name, calls in light.items():
        endpoints[name] = endpoint(
            recent={"window_s": 60, "calls": calls, "failures": 1},
            breaker={"state": "open" if name != "markets" else "closed", "tripped_for": 10.0},
        )
    h = score(stats(**endpoints))
    assert h["score"] >= 75, h
    assert h["status"] in {"excellent", "good"}
    assert sum("breaker open" in r for r in h["reasons"]) == 3


def test_an_outage_of_every_endpoint_is_critical() -> None:
    down = {
        name: endpoint(
            recent={"window_s": 60, "calls": 50, "failures": 50},
            breaker={"state": "open", "tripped_for": 300.0},
        )
        for name in ("ticker", "ohlcv", "order_book", "balance")
    }
    h = score(stats(**down))
    assert h["score"] == 0.0 and h["status"] == "critical"


def test_the_error_rate_of_a_few_calls_counts_only_in_part() -> None:
    few = score(stats(ticker=endpoint(recent={"window_s": 60, "calls": 4, "failures": 2})))
    many = score(stats(ticker=endpoint(recent={"window_s": 60, "calls": 400, "failures": 200})))
    assert many["components"]["error_rate"] == 50.0
    assert few["components"]["error_rate"] == 10.0  # 50 % of 4 calls: 4/20 of the points


def test_quality_skips_and_stale_answers() -> None:
    h = score(stats(ohlcv=endpoint(last_quality=40.0, skips=30, stale_served=50)))
    assert h["components"]["quality"] == 10.0
    assert h["components"]["skips"] == 6.0
    assert h["components"]["stale"] == 10.0
    assert "ohlcv: last data quality 40/100" in h["reasons"]
    assert "ohlcv: 30% of calls skipped by the gate" in h["reasons"]
    assert "ohlcv: 50% of calls answered with stale data" in h["reasons"]


def test_latency_against_its_own_baseline() -> None:
    store = LatencyBaselines()
    assert score(stats(ticker=endpoint(latency_ms={"p50": 100.0, "p95": 150.0})), store=store)["score"] == 100
    slow = score(stats(ticker=endpoint(latency_ms={"p50": 400.0, "p95": 500.0})), store=store)
    assert slow["components"]["latency"] == 15.0
    assert "ticker: p50 latency 400 ms is 4.0x its baseline 100 ms" in slow["reasons"]
    # Slow but steady is not unhealthy: a first reading only sets the baseline.
    assert score(stats(ticker=endpoint(latency_ms={"p50": 900.0, "p95": 1000.0})))["score"] == 100


def test_small_latency_changes_never_count() -> None:
    store = LatencyBaselines()
    score(stats(ticker=endpoint(latency_ms={"p50": 0.1, "p95": 0.2})), store=store)
    h = score(stats(ticker=endpoint(latency_ms={"p50": 5.0, "p95": 9.0})), store=store)  # 50x, but 5 ms
    assert h["components"]["latency"] == 0.0


def test_erratic_tail_latency() -> None:
    h = score(stats(ticker=endpoint(latency_ms={"p50": 20.0, "p95": 600.0, "p99": 900.0})))
    assert h["components"]["latency"] == 5.0
    assert "ticker: p95 latency 600 ms is 30x the p50 of 20 ms (erratic answers)" in h["reasons"]


def test_latency_compares_answers_that_reached_the_exchange_not_cache_hits() -> None:
    # Most calls are cache hits (p50 0.07 ms); the exchange's own answers are steady.
    data = endpoint(
        latency_ms={"p50": 0.07, "p95": 170.0, "p99": 250.0},
        exchange_latency_ms={"p50": 150.0, "p95": 180.0, "p99": 260.0},
    )
    h = score(stats(ticker=data))
    assert h["components"]["latency"] == 0.0, h["reasons"]
    assert not any("x the p50" in r for r in h["reasons"])


def test_stats_keep_the_exchange_latency_apart_from_cache_hits() -> None:
    ex = ccxt.binance()
    calls = []

    def ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.06)
        return {
            "symbol": "BTC/USDT",
            "last": 100.0,
            "bid": 99.9,
            "ask": 100.1,
            "timestamp": int(time.time() * 1000),
        }

    ex.fetch_ticker = ticker
    client = HardenedClient(ex, cache_ttl=60)
    try:
        for _ in range(20):
            client.fetch_ticker("BTC/USDT")
        data = client.stats()["endpoints"]["ticker"]
    finally:
        client.close()
    assert len(calls) == 1 and data["cache_hits"] == 19
    assert data["latency_ms"]["p50"] < 50  # what the bot waits: mostly cache hits
    assert data["exchange_latency_ms"]["p50"] >= 60  # what the exchange took
    assert data["exchange_latency_ms"]["p50"] == data["exchange_latency_ms"]["p99"]  # one answer


def test_baseline_is_a_time_weighted_ewma() -> None:
    store = LatencyBaselines()
    key = ("binance", "ticker")
    assert store.observe(key, 100.0, tau_s=600, now=0.0) is None
    assert store.observe(key, 200.0, tau_s=600, now=0.0) == 100.0  # no time passed: unchanged
    assert store.get(key) == 100.0
    store.observe(key, 200.0, tau_s=600, now=600.0)  # one time constant: 63% of the way
    assert store.get(key) == pytest.approx(100.0 + 100.0 * (1 - 2.718281828**-1), rel=1e-6)
    store.clear()
    assert store.get(key) is None


def test_memory_against_its_limit() -> None:
    rss = health_module.process_memory_mb()
    assert rss > 1
    configure_health(memory_limit_mb=rss / 2)
    h = client_health(stats(), store=LatencyBaselines())
    assert h["components"]["memory"] >= 30.0 and h["memory"]["limit_mb"] == rss / 2
    assert any("over its" in r and "MB limit" in r for r in h["reasons"])
    configure_health(memory_limit_mb=rss / 0.9)  # at 90 % of the limit: a warning's worth
    h = client_health(stats(), store=LatencyBaselines())
    assert 0 < h["components"]["memory"] < 15
    configure_health(memory_limit_mb=rss * 10)
    assert client_health(stats(), store=LatencyBaselines())["components"]["memory"] == 0


def test_memory_is_read_for_this_process_after_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached ``psutil.Process`` kept its pid across a fork: a worker forked after a first
    reading reported its parent's memory. Here the cache holds another pid, as a child's would."""
    monkeypatch.setattr(health_module, "_process", psutil.Process(os.getppid()))
    health_module.process_memory_mb()
    assert health_module._process is not None and health_module._process.pid == os.getpid()


def test_configure_health_validates() -> None:
    with pytest.raises(ValueError, match="unknown health setting"):
        configure_health(memory_limit=10)
    with pytest.raises(ValueError, match="positive"):
        configure_health(memory_limit_mb=-1)
    with pytest.raises(ValueError, match="healthy_above"):
        configure_health(healthy_above=40, unhealthy_below=50)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True])
def test_configure_health_refuses_nan_inf_and_bools(value: Any) -> None:
    """nan slipped past ``value <= 0``: ``unhealthy_below=nan`` never turned /health 503."""
    before = vars(health_module.policy).copy()
    with pytest.raises(ValueError, match="positive number"):
        configure_health(unhealthy_below=value)
    assert vars(health_module.policy) == before


@pytest.mark.parametrize("text", ["1GB", "0", "-5", "nan", "inf", ""])
def test_a_bad_memory_limit_in_the_environment_warns_and_keeps_the_default(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read when hardened is imported: "1GB" broke the import, 0 made every /health and /metrics
    reading divide by zero, a negative limit switched the memory check off."""
    monkeypatch.setenv("HARDENED_MEMORY_LIMIT_MB", text)
    with pytest.warns(RuntimeWarning, match="HARDENED_MEMORY_LIMIT_MB"):
        policy = health_module.HealthPolicy()
    assert policy.memory_limit_mb == 1024.0
    monkeypatch.setenv("HARDENED_MEMORY_LIMIT_MB", "2048")
    assert health_module.HealthPolicy().memory_limit_mb == 2048.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_gate_smooths_and_has_hysteresis() -> None:
    clock = FakeClock()
    gate = HealthGate(clock)
    assert gate.observe(90.0) is True
    for reading in (30.0, 90.0, 30.0, 90.0):  # a flapping score, one reading a second
        clock.now += 1
        assert gate.observe(reading) is True  # smoothed, it never falls below 50
    for _ in range(60):  # a sustained fall
        clock.now += 1
        gate.observe(20.0)
    assert gate.healthy is False and gate.smoothed is not None and gate.smoothed < 50
    for _ in range(120):  # back between the two levels: still unhealthy (no flapping at 50)
        clock.now += 1
        assert gate.observe(60.0) is False
    for _ in range(120):
        clock.now += 1
        gate.observe(70.0)
    assert gate.healthy is True
    report = gate.report({"score": 70.0, "status": "fair"})
    assert report["healthy"] is True and report["smoothed_score"] == pytest.approx(70.0, abs=0.5)


def test_baselines_are_dropped_when_short_lived_clients_close_or_are_collected() -> None:
    keeper = HardenedClient(ccxt.binance())  # a long-lived client: the others get new names (binance#N)
    before = len(baselines)
    for i in range(60):
        ex = ccxt.binance()
        ex.fetch_ticker = lambda *_a, **_k: {
            "symbol": "BTC/USDT",
            "last": 1.0,
            "bid": 1.0,
            "ask": 1.0,
            "timestamp": int(time.time() * 1000),
        }
        client = HardenedClient(ex, cache_ttl=0)
        client.fetch_ticker("BTC/USDT")
        client.health()  # takes a latency baseline for this client
        if i % 2:
            client.close()
        del client, ex
    gc.collect()
    keeper.close()
    assert len(baselines) - before < 5


def test_overall_is_the_mean_of_clients_with_memory_once() -> None:
    good = stats("binance")
    bad = stats("kucoin", ticker=endpoint(breaker={"state": "open", "tripped_for": 300.0}))
    report = overall_health({"binance": good, "kucoin": bad})
    assert report["clients"]["binance"]["score"] == 100.0
    assert report["clients"]["kucoin"]["score"] == 50.0  # all its traffic behind a breaker for 5 min
    assert report["score"] == 75.0 and report["status"] == "good"
    assert "kucoin: ticker: breaker open for 300 s (100% of traffic)" in report["reasons"]
    assert report["memory"]["points"] == 0.0
    assert overall_health({})["reasons"] == ["no clients registered"]
    assert overall_health({})["score"] == 100.0


def test_real_client_health_reflects_an_open_breaker() -> None:
    ex = ccxt.binance()

    def down(*_a: Any, **_k: Any) -> Any:
        raise ccxt.NetworkError("reset")

    ex.fetch_ticker = down
    client = HardenedClient(ex, max_retries=0, failure_threshold=2, cache_ttl=0, stale_if_error=0)
    try:
        for _ in range(30):  # two failures open the breaker, which then refuses the rest
            with pytest.raises(ccxt.NetworkError):
                client.fetch_ticker("BTC/USDT")
        h = client.health()
        assert h["status"] == "critical", h
        assert any(r.startswith("ticker: breaker open for") for r in h["reasons"])
        assert any("of calls failed in the last minute" in r for r in h["reasons"])
        report = overall_health()
        assert client.client_name in report["clients"]
    finally:
        client.close()


def test_a_client_collected_while_its_thread_holds_a_lock_does_not_deadlock() -> None:
    """The registry's finalizer runs inside the garbage collector, on whatever thread allocates,
    maybe one holding the registry's or the baselines' lock: it must not take either."""
    from hardened.telemetry import registry

    forgotten: list[str] = []
    registry.on_forget(forgotten.append)
    try:
        done = threading.Event()

        def collect_under_locks() -> None:
            with registry._lock, baselines._lock:  # what the collector may interrupt
                registry._collected("collected-under-lock", 1)  # as the finalizer runs it
            done.set()

        worker = threading.Thread(target=collect_under_locks, daemon=True)
        worker.start()
        assert done.wait(5.0), "the finalizer blocked on a lock its own thread holds"
        assert "collected-under-lock" not in forgotten  # queued, not yet done
        registry.clients()  # the next registry call forgets it, outside any lock
        assert "collected-under-lock" in forgotten
    finally:
        registry._forget_callbacks.remove(forgotten.append)
