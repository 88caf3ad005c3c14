"""Health scores: levels, each component with its reason, latency baselines, memory, overall."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from hardened import HardenedClient
from hardened.telemetry import health as health_module
from hardened.telemetry.health import (
    LatencyBaselines,
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
    h = score(
        stats(
            ticker=endpoint(breaker={"state": "open"}),
            ohlcv=endpoint(breaker={"state": "half_open"}),
        )
    )
    assert h["components"]["breakers"] == 35.0 and h["score"] == 65.0 and h["status"] == "fair"
    assert "ticker: breaker open" in h["reasons"] and "ohlcv: breaker half-open, probing" in h["reasons"]


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
    assert "ticker: p95 latency 600 ms is 30x the p50 (erratic answers)" in h["reasons"]


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


def test_configure_health_validates() -> None:
    with pytest.raises(ValueError, match="unknown health setting"):
        configure_health(memory_limit=10)
    with pytest.raises(ValueError, match="positive"):
        configure_health(memory_limit_mb=-1)


def test_overall_is_the_mean_of_clients_with_memory_once() -> None:
    good = stats("binance")
    bad = stats("kucoin", ticker=endpoint(breaker={"state": "open"}))
    report = overall_health({"binance": good, "kucoin": bad})
    assert report["clients"]["binance"]["score"] == 100.0
    assert report["clients"]["kucoin"]["score"] == 75.0
    assert report["score"] == 87.5 and report["status"] == "good"
    assert "kucoin: ticker: breaker open" in report["reasons"]
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
        for _ in range(3):
            with pytest.raises(ccxt.NetworkError):
                client.fetch_ticker("BTC/USDT")
        h = client.health()
        assert h["status"] == "critical"
        assert "ticker: breaker open" in h["reasons"]
        assert any("of calls failed in the last minute" in r for r in h["reasons"])
        report = overall_health()
        assert client.client_name in report["clients"]
    finally:
        client.close()
