"""The error tracker: counts, rates, bounded history, redaction, export, clear, and the bus feed."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import ccxt
import pytest

from hardened import HardenedClient
from hardened.telemetry import tracker as tracker_module
from hardened.telemetry.events import EventBus
from hardened.telemetry.tracker import ErrorTracker, tracker


def test_counts_by_type_and_endpoint() -> None:
    t = ErrorTracker()
    for _ in range(3):
        t.record("NetworkError", "ticker")
    t.record("NetworkError", "ohlcv")
    t.record("RateLimitExceeded", "ohlcv")
    t.record("db_error")  # no endpoint: counted under "-"
    s = t.summary()
    assert s["total_errors"] == 6
    assert {k: v["count"] for k, v in s["by_type"].items()} == {
        "NetworkError": 4,
        "RateLimitExceeded": 1,
        "db_error": 1,
    }
    assert next(iter(s["by_type"])) == "NetworkError"  # most frequent first
    assert {k: v["count"] for k, v in s["by_endpoint"].items()} == {"ticker": 3, "ohlcv": 2, "-": 1}
    assert t.counts() == {
        "by_type": {"NetworkError": 4, "RateLimitExceeded": 1, "db_error": 1},
        "by_endpoint": {"ticker": 3, "ohlcv": 2, "-": 1},
    }


def test_rate_per_minute_over_a_sliding_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(tracker_module.time, "time", lambda: now[0])
    t = ErrorTracker(window_s=60)
    for _ in range(6):
        t.record("NetworkError", "ticker")
    t.record("ExchangeNotAvailable", "ohlcv")
    assert t.rate_per_minute() == 7.0
    assert t.rate_per_minute("NetworkError") == 6.0
    now[0] += 30
    t.record("NetworkError", "ticker")
    s = t.summary()
    assert s["rate_per_min"] == 8.0 and s["by_type"]["NetworkError"]["rate_per_min"] == 7.0
    now[0] += 31  # the first seven left the window; the counts stay
    s = t.summary()
    assert s["rate_per_min"] == 1.0
    assert s["by_type"]["ExchangeNotAvailable"] == {"count": 1, "rate_per_min": 0.0}
    assert s["by_endpoint"]["ticker"] == {"count": 7, "rate_per_min": 1.0}
    assert s["total_errors"] == 8


def test_rate_scales_with_a_longer_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker_module.time, "time", lambda: 5_000.0)
    t = ErrorTracker(window_s=300)
    for _ in range(10):
        t.record("NetworkError", "ticker")
    assert t.rate_per_minute() == 2.0  # 10 errors over five minutes


def test_history_is_bounded_and_keeps_the_newest() -> None:
    t = ErrorTracker(max_history=5)
    for i in range(12):
        t.record("NetworkError", "ticker", {"i": i})
    s = t.summary(recent=10)
    assert s["history_size"] == 5 and s["max_history"] == 5
    assert [e["context"]["i"] for e in s["recent"]] == [7, 8, 9, 10, 11]
    assert s["total_errors"] == 12
    assert [e["context"]["i"] for e in t.recent(2)] == [10, 11]
    assert t.recent(2)[0]["time"].endswith("+00:00")
    with pytest.raises(ValueError):
        ErrorTracker(max_history=0)


def test_default_history_holds_one_thousand() -> None:
    t = ErrorTracker()
    for i in range(1005):
        t.record("E", "x", {"i": i})
    assert t.summary(recent=0)["history_size"] == 1000
    assert t.recent(1)[0]["context"]["i"] == 1004


def test_context_and_messages_are_redacted() -> None:
    t = ErrorTracker()
    t.record(
        "AuthenticationError",
        "balance",
        {
            "apiKey": "AKIAREALKEY",
            "headers": {"X-MBX-APIKEY": "abc123", "KC-API-PASSPHRASE": "pp", "accept": "json"},
            "url": "https://api.binance.com/api/v3/account?timestamp=1&signature=deadbeef",
            "nested": [{"secret": "s3cr3t"}, "token=tok123", "KC-API-SIGN: zzsig99", "Password=pw0rd!"],
            "obj": object(),
            "n": 3,
        },
        message="GET /api/v3/order?signature=cafebabe failed",
    )
    entry = t.recent(1)[0]
    text = json.dumps(entry)
    for secret in ("AKIAREALKEY", "abc123", "deadbeef", "s3cr3t", "tok123", "cafebabe", "zzsig99", "pw0rd!"):
        assert secret not in text
    ctx = entry["context"]
    assert ctx["apiKey"] == "***" and ctx["headers"]["X-MBX-APIKEY"] == "***"
    assert ctx["headers"]["KC-API-PASSPHRASE"] == "***" and ctx["headers"]["accept"] == "json"
    assert ctx["url"].endswith("signature=***") and ctx["n"] == 3
    assert ctx["obj"].startswith("<object")


def test_export_writes_json_atomically(tmp_path: Path) -> None:
    t = ErrorTracker(max_history=3)
    for i in range(4):
        t.record("NetworkError", "ticker", {"i": i}, exchange="binance", message="reset")
    target = tmp_path / "reports" / "errors.json"
    assert t.export(target) == target
    report = json.loads(target.read_text())
    assert report["total_errors"] == 4
    assert [e["context"]["i"] for e in report["history"]] == [1, 2, 3]
    assert report["history"][0]["exchange"] == "binance" and "time" in report["history"][0]
    assert report["by_type"]["NetworkError"]["count"] == 4
    assert "exported_at" in report
    assert [p.name for p in target.parent.iterdir()] == ["errors.json"]  # no temporary file left
    t.export(target)  # overwriting works too
    assert json.loads(target.read_text())["total_errors"] == 4


def test_clear_forgets_everything() -> None:
    t = ErrorTracker()
    t.record("NetworkError", "ticker")
    t.clear()
    s = t.summary()
    assert s["total_errors"] == 0 and s["by_type"] == {} and s["recent"] == [] and s["rate_per_min"] == 0


def test_seed_style_calls_work() -> None:
    t = ErrorTracker()
    t.record_error(
        "api_ohlcv_error", ValueError("empty"), {"symbol": "SOL/USDT", "endpoint": "ohlcv"}, "WARNING"
    )
    s = t.get_error_summary()
    assert s["by_type"]["api_ohlcv_error"]["count"] == 1
    entry = s["recent"][0]
    assert entry["endpoint"] == "ohlcv" and entry["severity"] == "WARNING"
    assert entry["message"] == "ValueError: empty"
    t.clear_errors()
    assert t.summary()["total_errors"] == 0


def test_concurrent_records_are_all_counted() -> None:
    t = ErrorTracker(max_history=100)

    def work() -> None:
        for _ in range(2000):
            t.record("NetworkError", "ticker")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.summary()["total_errors"] == 8000
    assert t.counts()["by_endpoint"]["ticker"] == 8000


def test_attach_listens_to_call_failed_only() -> None:
    b = EventBus()
    t = ErrorTracker()
    t.attach(b)
    b.publish(
        "call_failed",
        exchange="kucoin",
        endpoint="ohlcv",
        attempts=4,
        error="RequestTimeout",
        error_kind="transient",
        latency_ms=12.5,
        message="timed out",
    )
    b.publish("breaker_transition", breaker="kucoin_ohlcv", old="closed", new="open")
    t.detach()
    b.publish("call_failed", exchange="kucoin", endpoint="ohlcv", error="RequestTimeout")
    s = t.summary()
    assert s["total_errors"] == 1
    entry = s["recent"][0]
    assert entry["error_type"] == "RequestTimeout" and entry["exchange"] == "kucoin"
    assert entry["context"] == {"attempts": 4, "error_kind": "transient", "latency_ms": 12.5}


def test_process_tracker_counts_failed_calls_of_a_real_client() -> None:
    ex = ccxt.binance({"apiKey": "MYAPIKEY123", "secret": "MYSECRET456"})

    def down(*_a: Any, **_k: Any) -> Any:
        raise ccxt.NetworkError("binance GET https://api.binance.com/api/v3/ticker?signature=0ff1ce reset")

    ex.fetch_ticker = down
    client = HardenedClient(ex, max_retries=0, failure_threshold=100, cache_ttl=0, stale_if_error=0)
    before = tracker.counts()
    try:
        for _ in range(3):
            with pytest.raises(ccxt.NetworkError):
                client.fetch_ticker("BTC/USDT")
    finally:
        client.close()
    after = tracker.counts()
    assert after["by_type"].get("NetworkError", 0) - before["by_type"].get("NetworkError", 0) == 3
    assert after["by_endpoint"].get("ticker", 0) - before["by_endpoint"].get("ticker", 0) == 3
    last = tracker.recent(1)[0]
    assert last["exchange"] == "binance" and last["endpoint"] == "ticker"
    assert "0ff1ce" not in last["message"] and "signature=***" in last["message"]
