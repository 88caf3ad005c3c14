"""Prometheus metrics: read from real clients' stats at scrape time, parseable, the expected series."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hardened import HardenedClient
from hardened.status import start_status_server
from hardened.telemetry.metrics import HardenedCollector, metrics_text, register_collector
from hardened.telemetry.tracker import ErrorTracker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fresh_ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
    """A clean ticker stamped now (the validation stage refuses stale ones)."""
    return {
        "symbol": "BTC/USDT",
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "timestamp": int(time.time() * 1000),
    }


def fresh_ohlcv(*_a: Any, **_k: Any) -> list[list[float]]:
    """Five clean one-minute candles ending at the current minute."""
    minute = int(time.time() // 60) * 60_000
    return [[minute - i * 60_000, 100.0, 101.0, 99.0, 100.5, 10.0] for i in range(4, -1, -1)]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def client() -> Iterator[HardenedClient]:
    ex = ccxt.binance()
    state = {"fail": False}

    def ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
        if state["fail"]:
            raise ccxt.RequestTimeout("timed out")
        return fresh_ticker()

    ex.fetch_ticker = ticker
    ex.fetch_ohlcv = fresh_ohlcv
    c = HardenedClient(ex, max_retries=0, failure_threshold=2, cache_ttl=0, stale_if_error=0)
    for _ in range(4):
        c.fetch_ticker("BTC/USDT")
    c.fetch_ohlcv("BTC/USDT", "1m")
    state["fail"] = True
    for _ in range(3):
        with pytest.raises(ccxt.NetworkError):
            c.fetch_ticker("BTC/USDT")
    yield c
    c.close()


def test_series_per_exchange_and_endpoint(client: HardenedClient) -> None:
    tracker = ErrorTracker()
    tracker.record("RequestTimeout", "ticker")
    tracker.record("RequestTimeout", "ticker")
    collector = HardenedCollector(lambda: {client.client_name: client.stats()}, tracker)
    types, samples = parse(metrics_text(collector).decode())
    ticker = {"client": client.client_name, "exchange": "binance", "endpoint": "ticker"}
    assert types["hardened_calls"] == "counter"
    assert value(samples, "hardened_calls_total", **ticker) == 7
    assert value(samples, "hardened_successes_total", **ticker) == 4
    assert value(samples, "hardened_failures_total", **ticker, error="RequestTimeout") == 2
    assert value(samples, "hardened_failures_total", **ticker, error="CircuitOpenError") == 1
    assert value(samples, "hardened_retries_total", **ticker) == 0
    assert value(samples, "hardened_skips_total", **ticker) == 0
    assert value(samples, "hardened_cache_hits_total", **ticker) == 0
    breaker = {**ticker, "breaker": "binance_ticker"}
    assert value(samples, "hardened_breaker_state", **breaker, state="open") == 1
    assert value(samples, "hardened_breaker_state", **breaker, state="closed") == 0
    assert value(samples, "hardened_breaker_state", **breaker, state="half_open") == 0
    assert value(samples, "hardened_breaker_trips_total", **breaker) == 1
    assert value(samples, "hardened_breaker_rejected_total", **breaker) == 1
    assert types["hardened_latency_seconds"] == "gauge"
    p50 = value(samples, "hardened_latency_seconds", **ticker, quantile="0.5")
    p99 = value(samples, "hardened_latency_seconds", **ticker, quantile="0.99")
    assert 0 < p50 <= p99 < 1  # seconds, not milliseconds
    ohlcv = {**ticker, "endpoint": "ohlcv"}
    assert value(samples, "hardened_calls_total", **ohlcv) == 1
    health_score = value(samples, "hardened_health_score", client=client.client_name, exchange="binance")
    assert health_score == client.health()["score"] < 90  # the open breaker and failures cost points
    assert 0 <= value(samples, "hardened_health_overall_score") <= 100
    assert value(samples, "hardened_process_memory_bytes") > 1e6
    assert value(samples, "hardened_tracked_errors_total", error_type="RequestTimeout") == 2
    assert value(samples, "hardened_tracked_endpoint_errors_total", endpoint="ticker") == 2
    assert value(samples, "hardened_tracked_error_rate_per_minute") == 2.0


def test_quality_score_is_exported_when_known(client: HardenedClient) -> None:
    stats = client.stats()
    stats["endpoints"]["ohlcv"]["last_quality"] = 72.5
    types, samples = parse(metrics_text(HardenedCollector(lambda: {"x": stats}, ErrorTracker())).decode())
    assert types["hardened_quality_score"] == "gauge"
    assert value(samples, "hardened_quality_score", client="x", exchange="binance", endpoint="ohlcv") == 72.5


def test_collector_reads_at_scrape_time(client: HardenedClient) -> None:
    collector = HardenedCollector(lambda: {client.client_name: client.stats()}, ErrorTracker())
    label = {"client": client.client_name, "exchange": "binance", "endpoint": "ohlcv"}
    before = value(parse(metrics_text(collector).decode())[1], "hardened_calls_total", **label)
    client.fetch_ohlcv("BTC/USDT", "1m")
    after = value(parse(metrics_text(collector).decode())[1], "hardened_calls_total", **label)
    assert after == before + 1


def test_default_collector_reads_the_registry(client: HardenedClient) -> None:
    _, samples = parse(metrics_text().decode())
    assert (
        value(
            samples, "hardened_calls_total", client=client.client_name, exchange="binance", endpoint="ticker"
        )
        == 7
    )


def test_register_collector_on_a_user_registry(client: HardenedClient) -> None:
    registry = CollectorRegistry()
    register_collector(registry, stats_source=lambda: {client.client_name: client.stats()})
    _, samples = parse(generate_latest(registry).decode())
    assert (
        value(
            samples, "hardened_calls_total", client=client.client_name, exchange="binance", endpoint="ticker"
        )
        == 7
    )


def test_metrics_endpoint_serves_prometheus_text(client: HardenedClient) -> None:
    with (
        start_status_server(
            port=0, http_port=0, stats_source=lambda: {client.client_name: client.stats()}
        ) as h,
        urllib.request.urlopen(h.http_url + "/metrics", timeout=5) as response,
    ):
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    assert content_type.startswith("text/plain")
    types, samples = parse(text)
    labels = {"client": client.client_name, "exchange": "binance", "endpoint": "ticker"}
    assert value(samples, "hardened_calls_total", **labels) == 7
    assert types["hardened_status_connections"] == "gauge"
    assert value(samples, "hardened_status_connections") == 0
    assert "hardened_status_dropped_total" in {name for name, _ in samples}
