"""The learning gate: record store, features, model, probes, anomalies, and the stage in a client."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import ccxt
import pytest

import hardened
from hardened import ErrorLearner, HardenedClient, ModelVersionError, RequestSkipped
from hardened.adapters import load_profile as load_exchange_profile
from hardened.config import ConfigError, HardenedConfig
from hardened.learning import GateModel, RecordStore, StoreError
from hardened.learning.evaluate import choose_threshold
from hardened.learning.features import (
    FEATURES,
    NO_ROOM,
    ROW_COLUMNS,
    bucket_limit,
    bucket_room,
    generic_parts,
)
from hardened.pipeline.gate import GateStage, call_arguments
from hardened.ratelimit import RateLimitBudget
from hardened.sim import Simulator
from hardened.sim.faults import FaultEngine, load_profile
from hardened.testing import capture_events


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _learner(tmp: Path | None = None, **kw: Any) -> ErrorLearner:
    kw.setdefault("background", False)
    kw.setdefault("min_samples", 100)
    return ErrorLearner(None if tmp is None else tmp / "store.db", **kw)


# --- the record store --------------------------------------------------------------------------


def test_store_batches_in_wal_and_bounds_rows(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    store = RecordStore(tmp_path / "s.db", ("ts", "v"), max_rows=1_000, flush_interval=60.0, clock=clock)
    try:
        for i in range(2_500):
            store.append((float(i) + 999_000.0, i))
        assert store.written == 0  # nothing written on the caller's thread
        assert store.flush()
        assert store.count() == 1_000  # the oldest rows went first
        assert store.rows(limit=1)[0] == (1_001_499.0, 2_499)
        assert store.rows()[0] == (1_000_500.0, 1_500)
        mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        store.close()


def test_store_retention_by_time() -> None:
    clock = Clock(10_000.0)
    store = RecordStore(None, ("ts", "v"), retention=100.0, clock=clock)
    try:
        for i in range(10):
            store.append((9_800.0 + i * 50.0, i))  # 9800 ... 10250
        store.prune()
        assert [r[1] for r in store.rows()] == [2, 3, 4, 5, 6, 7, 8, 9]  # ts >= 9900 kept
        clock.t = 10_200.0
        store.prune()
        assert [r[1] for r in store.rows()] == [6, 7, 8, 9]  # ts >= 10100 kept
    finally:
        store.close()


def test_store_queue_bound_drops_and_counts() -> None:
    store = RecordStore(None, ("ts", "v"), max_queue=10, flush_interval=60.0)
    try:
        now = time.time()
        for i in range(25):
            store.append((now, i))
        assert store.dropped == 15
        store.flush()
        assert store.count() == 10
    finally:
        store.close()


def test_store_written_by_an_earlier_schema_gains_the_new_columns(tmp_path: Path) -> None:
    now = time.time()  # the store prunes rows older than its retention
    old = RecordStore(tmp_path / "s.db", ("ts", "a"))
    old.append((now, 10))
    old.close()
    upgraded = RecordStore(tmp_path / "s.db", ("ts", "a", "b"))
    try:
        upgraded.append((now + 1.0, 20, 0.5))
        upgraded.flush()
        assert upgraded.count() == 2  # nothing recorded before the upgrade is lost
        with sqlite3.connect(tmp_path / "s.db") as conn:
            rows = conn.execute("SELECT ts, a, b FROM calls ORDER BY ts").fetchall()
        assert rows == [(now, 10, None), (now + 1.0, 20, 0.5)]  # the old row reads "unknown" there
    finally:
        upgraded.close()


def test_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open record store"):
        RecordStore(tmp_path / "bad.db", ("ts", "a"))


_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from hardened.learning.store import RecordStore
    store = RecordStore(sys.argv[1], ("ts", "seq"), flush_interval=0.02)
    i = 0
    while True:
        store.append((time.time(), i))
        i += 1
        if i % 200 == 0:
            store.flush()
            print(i, flush=True)
    """
)


def test_store_survives_sigkill_losing_at_most_the_last_batch(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    committed = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            committed = int(line)
            if committed >= 2_000:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    seqs = [row[0] for row in conn.execute("SELECT seq FROM calls ORDER BY id")]
    assert len(seqs) >= committed  # every flushed row is there
    assert seqs == list(range(len(seqs)))  # a prefix: nothing missing in the middle
    # what was lost is only what the writer had not committed yet: the last batch at most
    assert len(seqs) <= committed + 200 + 5_000


# --- features ----------------------------------------------------------------------------------


def test_features_come_from_the_call_arguments() -> None:
    assert call_arguments("ohlcv", ("BTC/USDT", "5m"), {"limit": 1000}) == ("BTC/USDT", "5m", 1000, None)
    assert call_arguments("ohlcv", ("ETH/USDT",), {}) == ("ETH/USDT", "1m", None, None)
    assert call_arguments("order_book", ("BTC/USDT", 500), {}) == ("BTC/USDT", None, 500, None)
    assert call_arguments("create_order", ("BTC/USDT", "limit", "buy", 1, 100), {}) == (
        "BTC/USDT",
        None,
        None,
        "limit/buy",
    )
    assert call_arguments("ticker", ("BTC/USDT",), {"params": {"type": "spot"}})[3] == "params:type"
    assert call_arguments("balance", (), {}) == (None, None, None, None)
    assert bucket_limit(500) == 9 and bucket_limit(1000) == 10 and bucket_limit(None) is None
    # room after the call's weight: tenths rounded down, its own bucket when it does not fit
    rooms = [bucket_room(x) for x in (None, -0.1, -0.001, 0.0, 0.004, 0.0999, 0.1, 0.57, 1.0, 2.0)]
    assert rooms == [None, NO_ROOM, NO_ROOM, 0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 1.0]
    variant, numbers = generic_parts({"command": "start", "system_load": 0.5, "symbol": "BTC"})
    assert variant == "command=start" and numbers == (0.5, None, None, None)


def test_call_key_holds_symbol_limit_and_recent_errors() -> None:
    clock = Clock()
    learner = _learner(clock=clock)
    ep, this = FEATURES.index("err_ep"), FEATURES.index("err_call")
    try:
        key, call = learner.call_key("exchange", "binance", "ohlcv", "BTC/USDT", "1m", None, 1000)
        assert key[:7] == ("exchange", "binance", "ohlcv", "BTC/USDT", "1m", None, 10.0)
        assert key[this] is None  # no history yet for this call
        learner.finish(key, call, True, 0.1)
        key2, _ = learner.call_key("exchange", "binance", "ohlcv", "BTC/USDT", "1m", None, 1000)
        assert key2[ep] == 1.0 and key2[this] == 1.0  # endpoint and this call failed recently
        other, _ = learner.call_key("exchange", "binance", "ohlcv", "ETH/USDT", "1m", None, 1000)
        assert other[ep] == 1.0 and other[this] is None  # the endpoint's share, not this market's
    finally:
        learner.close()


# --- the model and the gate --------------------------------------------------------------------


def _feed_symbol_pattern(learner: ErrorLearner, clock: Clock, n: int = 600) -> None:
    """BTC/USDT tickers always fail, ETH/USDT and SOL/USDT never: the endpoint fails a third of
    the time, which a per-endpoint breaker sees as one flaky endpoint."""
    for i in range(n):
        symbol = ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3]
        key, call = learner.call_key("exchange", "binance", "ticker", symbol)
        learner.finish(key, call, symbol == "BTC/USDT", 0.02)
        clock.t += 0.5


def test_never_skips_before_min_samples() -> None:
    clock = Clock()
    learner = _learner(clock=clock, min_samples=1_000)
    try:
        _feed_symbol_pattern(learner, clock, 600)
        assert learner.train() is None  # not enough data: no model, no skip
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        assert learner.decide(key, call) == (False, None, False)
        verdict = learner.predict_error_likelihood(
            "exchange", {"exchange": "binance", "endpoint": "ticker", "symbol": "BTC/USDT"}
        )
        assert verdict["should_attempt"] is True and verdict["model_trained"] is False
        assert verdict["confidence"] == 0.0
    finally:
        learner.close()


def test_learns_a_failing_symbol_and_skips_only_that_one() -> None:
    clock = Clock()
    learner = _learner(clock=clock, probe_share=0.0)
    try:
        _feed_symbol_pattern(learner, clock)
        assert learner.train() is not None
        decisions = {}
        for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
            key, call = learner.call_key("exchange", "binance", "ticker", symbol)
            decisions[symbol] = learner.decide(key, call)
        assert decisions["BTC/USDT"][0] is True and decisions["BTC/USDT"][1] > 0.9
        assert decisions["ETH/USDT"][0] is False and decisions["ETH/USDT"][1] < 0.1
        assert decisions["SOL/USDT"][0] is False
        verdict = learner.predict_error_likelihood(
            "exchange", {"exchange": "binance", "endpoint": "ticker", "symbol": "BTC/USDT"}
        )
        assert verdict["should_attempt"] is False and verdict["risk_level"] == "high"
        assert verdict["confidence"] > 0.5
        assert any(s["action"] == "wait" for s in verdict["alternative_suggestions"])
    finally:
        learner.close()


def test_never_skips_an_endpoint_the_model_saw_no_outcome_of() -> None:
    """A model trained on ticker calls only (BTC/USDT always failing) scores BTC/USDT's order
    book and candles as failing too; it saw none of them, so they are not skipped."""
    clock = Clock()
    learner = _learner(clock=clock, probe_share=0.0)
    try:
        _feed_symbol_pattern(learner, clock)
        assert learner.train() is not None
        for endpoint in ("order_book", "ohlcv"):
            key, call = learner.call_key("exchange", "binance", endpoint, "BTC/USDT")
            assert learner.probability(key) >= learner.threshold  # what the model says ...
            assert learner.decide(key, call)[0] is False  # ... is not acted on without data
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        assert learner.decide(key, call)[0] is True  # the endpoint it learned is still skipped
        # once the endpoint has outcomes of its own, the model decides on it
        for _ in range(30):
            key, call = learner.call_key("exchange", "binance", "ohlcv", "BTC/USDT")
            learner.finish(key, call, True, 0.02)
            key, call = learner.call_key("exchange", "binance", "ohlcv", "ETH/USDT")
            learner.finish(key, call, False, 0.02)
            clock.t += 1.0
        assert learner.train() is not None
        key, call = learner.call_key("exchange", "binance", "ohlcv", "BTC/USDT")
        assert learner.decide(key, call)[0] is True
    finally:
        learner.close()


def test_probes_go_through_and_a_recovery_is_seen() -> None:
    clock = Clock()
    learner = _learner(clock=clock, probe_share=0.1)
    try:
        _feed_symbol_pattern(learner, clock)
        learner.train()
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        outcomes = [learner.decide(key, call) for _ in range(100)]
        probes = [o for o in outcomes if o[2]]
        assert len(probes) == 10  # one in ten would-be skips goes through
        assert all(not o[0] for o in probes) and sum(o[0] for o in outcomes) == 90
        # two probes in a row succeed: the gate stops skipping this call at once
        for _ in range(2):
            key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
            assert learner.decide(key, call)[0] is True
            learner.finish(key, call, False, 0.02)
            clock.t += 1.0
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        assert learner.decide(key, call)[0] is False
        # and the next training learns the recovery from the recorded successes
        for _ in range(60):
            key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
            learner.finish(key, call, False, 0.02)
            clock.t += 1.0
        learner.train()
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        assert learner.decide(key, call)[0] is False
        assert learner.probability(key) < learner.threshold
    finally:
        learner.close()


def test_no_probe_while_the_rate_limit_budget_is_spent() -> None:
    clock = Clock()
    learner = _learner(clock=clock, probe_share=0.1)
    try:
        _feed_symbol_pattern(learner, clock)
        learner.train()
        for headroom, room, probes in ((0.0, None, 0), (0.5, -0.01, 0), (0.5, 0.4, 10)):
            learner._would_skip.clear()
            key, call = learner.call_key(
                "exchange", "binance", "ticker", "BTC/USDT", headroom=headroom, room=room
            )
            outcomes = [learner.decide(key, call) for _ in range(100)]
            assert sum(o[2] for o in outcomes) == probes  # a probe at no headroom would earn a 429
            assert sum(o[0] for o in outcomes) == 100 - probes
    finally:
        learner.close()


def test_an_unscored_bucket_borrows_the_probability_of_the_same_room() -> None:
    """BTC/USDT tickers fail only when the rate-limit budget has no room for them: a bucket not
    scored yet (here: a new hour) takes the probability last scored for the call with the same
    room, not the last one scored for the call at all (the calm one, which would let it go)."""
    clock = Clock(1_800_000_000.0)
    learner = _learner(clock=clock, probe_share=0.0)
    try:
        for i in range(900):
            symbol = ("BTC/USDT", "ETH/USDT")[i % 2]
            room = -0.01 if i % 6 < 2 else 0.9
            key, call = learner.call_key("exchange", "binance", "ticker", symbol, room=room)
            learner.finish(key, call, symbol == "BTC/USDT" and room < 0, 0.02)
            clock.t += 0.5
        assert learner.train() is not None
        clock.t += 3600.0  # another hour of the day: buckets never scored
        calm, _ = learner.call_key("exchange", "binance", "ticker", "BTC/USDT", room=0.9)
        assert learner.probability(calm) < learner.threshold  # the last scored for this call
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT", room=-0.01)
        assert key not in learner._cache
        assert learner._last_p[call] < learner.threshold  # what the call alone would borrow
        skip, p, _ = learner.decide(key, call)
        assert skip is True and p is not None and p >= learner.threshold
        assert learner.decide(calm, call)[0] is False
        # successes the model expected (the budget came back) are no sign of a recovery: after
        # them the no-room bucket is still skipped (only unexpected successes end a skip)
        for _ in range(3):
            learner.finish(calm, call, False, 0.02)
            clock.t += 1.0
        assert call not in learner._recovered
        assert learner.decide(key, call)[0] is True
    finally:
        learner.close()


def test_stage_reads_the_room_left_for_each_call_in_its_own_pool() -> None:
    """Ten weight units left: a ticker fits, a 5000-deep order book does not."""
    budget = RateLimitBudget(load_exchange_profile("binance"))
    limit = budget.usage(time.time())["request_weight"].limit
    budget.observe("ticker", 200, {"x-mbx-used-weight-1m": str(int(limit - 10))}, time.time())
    learner = _learner()
    try:
        stage = GateStage("binance", learner, False, rate_limits=budget)
        assert stage.headroom() == pytest.approx(10 / limit)
        ticker = budget.weight_of("ticker")
        book = budget.weight_of("order_book", limit=5000)
        assert ticker < 10 < book
        assert stage.room("ticker", None, "BTC/USDT") == pytest.approx((10 - ticker) / limit)
        assert stage.room("order_book", 5000, "BTC/USDT") == pytest.approx((10 - book) / limit)
        assert stage.room("order_book", [1], "BTC/USDT") is not None  # odd arguments: no crash
        assert GateStage("binance", learner, False).room("ticker", None, "BTC/USDT") is None
    finally:
        learner.close()


def test_choose_threshold_takes_the_lowest_within_the_good_call_budget() -> None:
    probs = [0.95, 0.9, 0.7, 0.6, 0.55, 0.1, 0.05, 0.6, 0.3, 0.2] * 10
    labels = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0] * 10
    # good calls: 0.6, 0.1, 0.05, 0.3, 0.2 (per ten); at 0.6 or below the 0.6 one is skipped
    threshold, figures = choose_threshold(probs, labels, max_good_skipped=0.1)
    assert threshold == 0.65
    by_t = {f["threshold"]: f for f in figures}
    assert by_t[0.6]["good_skipped_share"] == 0.2 and by_t[0.65]["good_skipped_share"] == 0.0
    assert by_t[0.65]["failing_avoided_share"] == 0.6
    assert choose_threshold(probs, labels, max_good_skipped=0.2)[0] == 0.5
    # no candidate meets the budget: the most cautious one
    assert choose_threshold([0.99, 0.99], [0, 1], max_good_skipped=0.0)[0] == 0.95
    with pytest.raises(ValueError, match="labels"):
        choose_threshold([0.5], [1, 0])
    with pytest.raises(ValueError, match="max_good_skipped"):
        choose_threshold([0.5], [1], max_good_skipped=2.0)


def test_tune_threshold_chooses_on_held_out_time() -> None:
    """BTC/USDT always fails, SOL/USDT fails seven times in ten at random, ETH/USDT never: the
    threshold chosen on the last quarter of the time skips BTC/USDT but not SOL/USDT's good calls."""
    clock = Clock()
    learner = _learner(clock=clock, probe_share=0.0)
    rng = random.Random(3)
    try:
        for i in range(1_500):
            symbol = ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3]
            failed = symbol == "BTC/USDT" or (symbol == "SOL/USDT" and rng.random() < 0.7)
            key, call = learner.call_key("exchange", "binance", "ticker", symbol)
            learner.finish(key, call, failed, 0.02)
            clock.t += 0.5
        choice = learner.tune_threshold(validation_share=0.25, max_good_skipped=0.01)
        assert choice is not None and learner.threshold == choice["threshold"]
        assert choice["validated_on"] == pytest.approx(375, abs=3)
        assert choice["fitted_on"] + choice["validated_on"] == 1_500
        by_t = {f["threshold"]: f for f in choice["candidates"]}
        assert by_t[learner.threshold]["good_skipped_share"] <= 0.01
        lower = [t for t in by_t if t < learner.threshold]
        assert all(by_t[t]["good_skipped_share"] > 0.01 for t in lower)  # the lowest that fits
        learner.train()
        key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
        assert learner.decide(key, call)[0] is True
        with pytest.raises(ValueError, match="validation_share"):
            learner.tune_threshold(validation_share=1.5)
    finally:
        learner.close()


def test_generic_component_api() -> None:
    clock = Clock()
    learner = _learner(clock=clock, min_samples=50)
    try:
        for i in range(200):
            busy = i % 4 == 0
            context = {"command_type": "start", "system_load": 0.9 if busy else 0.2}
            learner.record_operation_result(
                "telegram_bot",
                context,
                had_error=busy,
                error_details="timeout" if busy else None,
                execution_time=0.1,
            )
            clock.t += 1
        learner.train()
        busy = learner.predict_error_likelihood("telegram_bot", {"command_type": "start", "system_load": 0.9})
        calm = learner.predict_error_likelihood("telegram_bot", {"command_type": "start", "system_load": 0.2})
        assert set(busy) >= {
            "error_probability",
            "confidence",
            "should_attempt",
            "risk_level",
            "alternative_suggestions",
        }
        assert busy["error_probability"] > 0.8 > calm["error_probability"]
        assert calm["should_attempt"] is True and calm["risk_level"] == "low"
        with pytest.raises(TypeError, match="mapping"):
            learner.predict_error_likelihood("x", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="execution_time"):
            learner.record_operation_result("x", {}, False, execution_time=-1)
    finally:
        learner.close()


def test_model_saved_with_schema_and_other_version_refused(tmp_path: Path) -> None:
    loaded = GateModel.load(_saved_model(tmp_path))
    assert loaded.schema["features"][:3] == ["component", "exchange", "endpoint"]
    sidecar = tmp_path / "m.joblib.json"
    schema = json.loads(sidecar.read_text())
    schema["hardened_version"] = "0.0.1"
    sidecar.write_text(json.dumps(schema))
    with pytest.raises(ModelVersionError, match=r"trained by hardened 0\.0\.1"):
        GateModel.load(tmp_path / "m.joblib")
    schema["hardened_version"] = hardened.__version__
    schema["schema_version"] = 999
    sidecar.write_text(json.dumps(schema))
    with pytest.raises(ModelVersionError, match="feature schema 999"):
        GateModel.load(tmp_path / "m.joblib")
    # a learner starting on a refused model waits for data instead of misreading it
    again = ErrorLearner(None, model_path=tmp_path / "m.joblib", background=False)
    try:
        assert again.model is None
    finally:
        again.close()


# --- anomalies ---------------------------------------------------------------------------------


def test_anomaly_detection_flags_a_latency_spike() -> None:
    clock = Clock(1_800_000_000.0)
    learner = _learner(clock=clock)
    try:
        for minute in range(60):
            spike = minute == 45
            for j in range(20):
                key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT")
                latency = 2.0 + j * 0.01 if spike else 0.02 + (j % 5) * 0.002
                learner.finish(key, call, False, latency)
                clock.t += 3.0
        report = learner.get_anomaly_report(hours=2)
        assert report["endpoints_judged"] == 1
        flagged = [a for a in report["anomalies"] if a["metric"] == "latency"]
        assert len(flagged) == 1 and flagged[0]["endpoint"] == "ticker"
        assert flagged[0]["value"] > 1.0
        with capture_events(["anomaly_detected"]) as events:
            learner._publish_anomalies(hours=2)
            learner._publish_anomalies(hours=2)  # published once, not at every check
        assert len(events) == 1 and events[0]["metric"] == "latency" and "p95 latency" in events[0]["message"]
        with pytest.raises(ValueError, match="hours"):
            learner.get_anomaly_report(0)
    finally:
        learner.close()


# --- configuration -----------------------------------------------------------------------------


def test_config_fields_validated() -> None:
    config = HardenedConfig()
    assert config.gate_enabled is False and config.learning_record is True
    with pytest.raises(ConfigError, match="gate_threshold"):
        HardenedConfig(gate_threshold=1.5)
    with pytest.raises(ConfigError, match="gate_probe_share"):
        HardenedConfig(gate_probe_share=-0.1)
    with pytest.raises(ConfigError, match="gate_min_samples"):
        HardenedConfig(gate_min_samples=1)


# --- the simulator's narrowed rules and the stage in a client ----------------------------------


def test_fault_rules_narrowed_to_a_symbol_and_to_large_requests() -> None:
    profile = load_profile(
        {
            "faults": [
                {"kind": "http_5xx", "endpoints": ["ticker"], "symbols": ["BTC/USDT"]},
                {"kind": "reset", "endpoints": ["ohlcv"], "min_limit": 500},
            ]
        }
    )
    engine = FaultEngine(profile, seed=1, started=0.0)
    assert engine.decide("binance", "ticker", now=1.0, symbol="BTCUSDT").action == "http_5xx"
    assert engine.decide("kucoin", "ticker", now=1.0, symbol="BTC-USDT").action == "http_5xx"
    assert engine.decide("binance", "ticker", now=1.0, symbol="ETH/USDT") is None
    assert engine.decide("binance", "ohlcv", now=1.0, limit=1000).action == "reset"
    assert engine.decide("binance", "ohlcv", now=1.0, limit=100) is None


PROFILE = {
    "name": "one_market",
    "faults": [{"kind": "http_5xx", "endpoints": ["ticker"], "symbols": ["ETH/USDT"], "status": [503]}],
}


def test_stage_skips_the_failing_market_in_a_client(tmp_path: Path) -> None:
    with Simulator(exchange="binance", seed=3, profile=PROFILE) as sim:
        raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
        client = HardenedClient(
            raw,
            gate_enabled=True,
            gate_min_samples=60,
            gate_probe_share=0.0,
            learning_store=str(tmp_path / "gate.db"),
            max_retries=0,
            cache_ttl=0,
            stale_if_error=0,
            failure_threshold=10_000,
            failure_rate_threshold=1.0,
            minimum_calls=100_000,
        )
        try:
            assert client.pipeline.names()[:3] == ["record", "gate", "cache"]
            learner = client.pipeline.stages[1].learner
            learner.background = False
            for _ in range(40):
                client.fetch_ticker("BTC/USDT")
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    client.fetch_ticker("ETH/USDT")
            assert learner.train() is not None
            with capture_events(["request_skipped"]) as events:
                with pytest.raises(RequestSkipped) as caught:
                    client.fetch_ticker("ETH/USDT")
                assert isinstance(caught.value, ccxt.ExchangeNotAvailable)
                assert caught.value.probability >= 0.8
                assert client.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"  # the rest is served
                for _ in range(20):
                    with pytest.raises(RequestSkipped):
                        client.fetch_ticker("ETH/USDT")
            assert 1 <= len(events) <= 2  # a burst of skips is one or two events, with a count
            assert client.stats()["endpoints"]["ticker"]["skips"] == 21
            assert client.breakers["binance_ticker"].state == "closed"  # skips never count there
            names = [r["path"] for r in sim.ground_truth()]
            assert sum("ETHUSDT" in p for p in names) == 40  # the skipped calls never left
        finally:
            client.close()


def test_orders_and_cancels_are_never_skipped_but_still_recorded(tmp_path: Path) -> None:
    """A model that saw every order and cancel fail still lets the next ones go: a skipped
    cancel leaves an order working that the caller wanted gone. Market data is still skipped."""
    with Simulator(exchange="binance", seed=3) as sim:
        raw = sim.attach(
            ccxt.binance({"apiKey": "k", "secret": "s", "enableRateLimit": False, "timeout": 3000})
        )
        client = HardenedClient(
            raw,
            gate_enabled=True,
            gate_min_samples=40,
            gate_probe_share=0.0,
            learning_store=str(tmp_path / "orders.db"),
            max_retries=0,
            cache_ttl=0,
        )
        try:
            learner = client.pipeline.stages[1].learner
            learner.background = False
            client.load_markets()
            order_args = ("BTC/USDT", "limit", "buy", 0.01, 10_000)
            for _ in range(40):  # an outage the gate saw: every order and cancel failed
                for endpoint, args in (("create_order", order_args), ("cancel_order", ("1", "BTC/USDT"))):
                    symbol, timeframe, limit, variant = call_arguments(endpoint, args, {})
                    key, call = learner.call_key(
                        "exchange", "binance", endpoint, symbol, timeframe, variant, limit, breaker="closed"
                    )
                    learner.finish(key, call, True, 0.5, "ExchangeNotAvailable", "transient")
                key, call = learner.call_key("exchange", "binance", "ticker", "ETH/USDT", breaker="closed")
                learner.finish(key, call, True, 0.5, "ExchangeNotAvailable", "transient")
                key, call = learner.call_key("exchange", "binance", "ticker", "BTC/USDT", breaker="closed")
                learner.finish(key, call, False, 0.01)
            assert learner.train() is not None
            recorded = learner.store.count()
            order = client.create_order(*order_args)
            assert client.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"
            with pytest.raises(RequestSkipped):  # the gate still acts on market data
                client.fetch_ticker("ETH/USDT")
            assert learner.store.count() == recorded + 2  # the order and the cancel, as sent
            assert client.stats()["endpoints"]["cancel_order"]["skips"] == 0
        finally:
            client.close()


def test_recording_only_by_default(tmp_path: Path) -> None:
    with Simulator(exchange="binance", seed=3) as sim:
        raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
        client = HardenedClient(raw, learning_store=str(tmp_path / "rec.db"), cache_ttl=0)
        try:
            assert "gate" in client.pipeline.names()
            for _ in range(5):
                client.fetch_ohlcv("BTC/USDT", "5m", limit=100)
            learner = client.pipeline.stages[1].learner
            rows = learner.store.rows()
            assert len(rows) == 5
            row = dict(zip(ROW_COLUMNS, rows[-1], strict=True))
            assert row["symbol"] == "BTC/USDT" and row["timeframe"] == "5m" and row["limit_n"] == 7.0
            assert row["had_error"] == 0 and row["latency"] > 0 and row["breaker"] == 0
            assert 0.0 <= row["room"] <= 1.0  # the budget's room for the call, read with the headroom
        finally:
            client.close()
        off = HardenedClient(ccxt.binance(), learning_record=False)
        assert "gate" not in off.pipeline.names()
        off.close()


def test_a_failure_answered_stale_by_the_cache_is_recorded_as_a_failure(tmp_path: Path) -> None:
    """stale-if-error gives the caller an earlier answer when the exchange fails: the gate still
    learns that the exchange failed (not a run of successes through an outage). A call the
    breaker refused, answered stale, never reached the exchange and is not recorded."""
    with Simulator(exchange="binance", seed=3) as sim:
        raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
        client = HardenedClient(
            raw,
            learning_store=str(tmp_path / "stale.db"),
            max_retries=0,
            cache_ttl=0,
            stale_if_error=600,
            failure_threshold=4,
        )
        try:
            learner = client.pipeline.stages[1].learner
            first = client.fetch_ticker("BTC/USDT")
            sim.set_profile({"name": "down", "faults": [{"kind": "http_5xx", "endpoints": ["ticker"]}]})
            for _ in range(6):  # four 503s answered stale, then two refusals of the open breaker
                assert client.fetch_ticker("BTC/USDT")["last"] == first["last"]
            assert client.breakers["binance_ticker"].state == "open"
            sent = [r for r in sim.ground_truth() if r["endpoint"] == "ticker"]
            assert len(sent) == 5
            rows = learner.store.query("SELECT had_error, error_kind FROM calls ORDER BY id")
            assert rows == [(0, None)] + [(1, "transient")] * 4
        finally:
            client.close()


def test_recording_pays_the_features_on_the_learners_thread(tmp_path: Path) -> None:
    """With the gate off, the caller's thread hands the outcome over; features, stats and the row
    are made on the learner's background thread, and no model is trained for nobody."""
    import threading

    learner = ErrorLearner(None, min_samples=10, retrain_every=10)
    made_on: list[str] = []
    real = learner.call_key

    def spy(*args: Any, **kwargs: Any) -> Any:
        made_on.append(threading.current_thread().name)
        return real(*args, **kwargs)

    learner.call_key = spy  # type: ignore[method-assign]
    with Simulator(exchange="binance", seed=3) as sim:
        raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
        client = HardenedClient(raw, cache_ttl=0)
        gate = client.pipeline.stages[1]
        assert gate.name == "gate"
        gate.learner = learner
        try:
            for _ in range(30):
                client.fetch_ticker("BTC/USDT")
            deadline = time.monotonic() + 20.0
            while len(made_on) < 30 and time.monotonic() < deadline:
                time.sleep(0.01)  # the learner's thread drains every 50 ms
            assert set(made_on) == {"hardened-gate-scorer"}
            client.fetch_ticker("BTC/USDT")
            assert len(learner.store.rows()) == 31  # a read waits for what is still handed over
            assert learner.model is None and learner.deciding is False  # recording only: no fits
            learner.want_decisions()
            client.fetch_ticker("BTC/USDT")
            learner.drain()
            deadline = time.monotonic() + 20.0
            while learner.model is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert learner.model is not None  # asked for decisions: it trains as data grows
        finally:
            client.close()
            learner.close()


# --- the command line --------------------------------------------------------------------------


def test_train_and_report_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hardened.cli import main

    store = tmp_path / "cli.db"
    clock = Clock(time.time() - 3_600.0)
    learner = ErrorLearner(store, background=False, clock=clock)
    _feed_symbol_pattern(learner, clock, 900)
    learner.close()
    assert main(["train", "--store", str(store), "--json"]) == 0
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n") :])  # after any log line of this test process
    policies = {r["policy"]: r for r in out["results"]}
    assert set(policies) == {"no gate", "consecutive-failure breaker", "SRE throttle (K=2)", "learned gate"}
    learned = policies["learned gate"]
    assert learned["failing_avoided_share"] > 0.9 and learned["good_skipped_share"] < 0.02
    assert Path(out["model_saved"]).exists() and Path(out["model_saved"] + ".json").exists()
    assert out["threshold_suggested"] == 0.5  # BTC/USDT always fails, the others never: no doubt
    assert main(["report", "--store", str(store), "--hours", "2"]) == 0
    text = capsys.readouterr().out
    assert "binance:ticker" in text and "model trained" in text and "anomalies:" in text
    assert main(["report", "--store", str(tmp_path / "none.db")]) == 1
    assert "no record store" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    ErrorLearner(empty, background=False).close()
    assert main(["train", "--store", str(empty)]) == 1
    assert "gate_min_samples" in capsys.readouterr().err


async def test_async_client_records_and_skips(tmp_path: Path) -> None:
    import ccxt.async_support as accxt

    from hardened import AsyncHardenedClient

    with Simulator(exchange="binance", seed=5, profile=PROFILE) as sim:
        raw = sim.attach(accxt.binance({"enableRateLimit": False, "timeout": 3000}))
        async with AsyncHardenedClient(
            raw,
            gate_enabled=True,
            gate_min_samples=40,
            gate_probe_share=0.0,
            learning_store=str(tmp_path / "async.db"),
            max_retries=0,
            cache_ttl=0,
            stale_if_error=0,
            failure_threshold=10_000,
            failure_rate_threshold=1.0,
            minimum_calls=100_000,
        ) as client:
            learner = client.pipeline.stages[1].learner
            learner.background = False
            for _ in range(30):
                await client.fetch_ticker("BTC/USDT")
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await client.fetch_ticker("ETH/USDT")
            assert learner.train() is not None
            with pytest.raises(RequestSkipped):
                await client.fetch_ticker("ETH/USDT")
            assert (await client.fetch_ticker("BTC/USDT"))["symbol"] == "BTC/USDT"
            assert learner.store.count() == 61


def test_the_module_level_api_answers_for_any_component() -> None:
    """``hardened.predict_error_likelihood`` / ``record_operation_result`` on the process's default
    learner (this once deadlocked: the default learner was built under the lock it takes)."""
    import hardened

    context = {"symbol": "BTC/USDT", "system_load": 0.7}
    verdict = hardened.predict_error_likelihood("signal_generator", context)
    assert set(verdict) >= {"error_probability", "confidence", "should_attempt", "risk_level"}
    assert verdict["should_attempt"] is True  # no data yet: never skip
    hardened.record_operation_result("signal_generator", context, had_error=False, execution_time=0.1)
    assert hardened.predict_error_likelihood("signal_generator", context)["should_attempt"] is True


def test_the_store_never_holds_a_secret_from_a_context_or_an_error(tmp_path: Path) -> None:
    """Secret-named context keys are left out of the variant; error text and metrics are masked
    as the tracker masks them."""
    learner = _learner(tmp_path)
    context = {
        "symbol": "BTC/USDT",
        "api_key": "AKIA-SECRET-1",
        "passphrase": "SECRET-pass-2",
        "mode": "live",
    }
    learner.record_operation_result("bot", context, True, error_details=ValueError("token=SECRET-tok-5"))
    learner.record_operation_result(
        "bot",
        context,
        had_error=True,
        error_details="GET https://api.binance.com/api/v3/account?timestamp=1&signature=SECRETsig3",
        success_metrics={"token": "SECRET-tok-4", "fills": 2},
        execution_time=0.1,
    )
    learner.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
        (variant, first), (_, details) = db.execute("SELECT variant, details FROM calls ORDER BY rowid")
    assert "SECRET" not in dump
    assert variant == "mode=live"
    assert "signature=***" in details and '"fills": 2' in details
    assert "token=***" in first


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [
        ({"had_error": "false"}, TypeError, "had_error"),
        ({"had_error": None}, TypeError, "had_error"),
        ({"had_error": 2}, TypeError, "had_error"),
        ({"had_error": False, "execution_time": float("nan")}, ValueError, "execution_time"),
        ({"had_error": False, "execution_time": float("inf")}, ValueError, "execution_time"),
        ({"had_error": False, "execution_time": "0.1"}, TypeError, "execution_time"),
        ({"had_error": False, "execution_time": True}, TypeError, "execution_time"),
        ({"had_error": False, "component": 123}, TypeError, "component"),
        ({"had_error": False, "component": ""}, TypeError, "component"),
    ],
)
def test_record_operation_result_refuses_what_it_would_store_wrongly(
    arguments: dict[str, Any], error: type[Exception], named: str
) -> None:
    """``"false"`` stored as a failure, NaN stored as NULL: refused instead, naming the argument."""
    learner = _learner()
    try:
        with pytest.raises(error, match=named):
            learner.record_operation_result(arguments.pop("component", "bot"), {"symbol": "X"}, **arguments)
        for flag in (True, False, 0, 1):  # what a bot's own code passes stays accepted
            learner.record_operation_result("bot", {"symbol": "X"}, had_error=flag, execution_time=0)
    finally:
        learner.close()


def test_train_refuses_a_store_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --store named nothing and silently created an empty database there."""
    from hardened.train import main_argv

    missing = tmp_path / "typo.db"
    assert main_argv(["--store", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("threshold", ["5", "0", "-0.5", "nan"])
def test_train_refuses_a_threshold_out_of_range_as_a_usage_error(
    threshold: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with the flag named, as --split: it was exit 1 once a store existed, 2 without one."""
    from hardened.train import main_argv

    _learner(tmp_path).close()  # an (empty) store that exists
    store = tmp_path / "store.db"
    assert main_argv(["--store", str(store), "--threshold", threshold]) == 2
    assert "--threshold must be in (0, 1]" in capsys.readouterr().err


def test_train_finds_a_configured_store_written_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clients expand ``~`` in ``learning_store``; train looked for the literal ``~/...`` path and
    said there was no store (a config file or a service's environment has no shell to expand it)."""
    from hardened.train import main_argv

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARDENED_LEARNING_STORE", "~/store.db")
    _learner(tmp_path).close()  # what a client recording to ~/store.db leaves there
    assert main_argv([]) == 1  # found, with too few calls to learn from
    err = capsys.readouterr().err
    assert f"0 calls recorded in {tmp_path / 'store.db'}" in err
    assert main_argv(["--store", "~/store.db"]) == 1


def test_outcomes_handed_to_the_learner_are_stored_at_a_normal_exit(tmp_path: Path) -> None:
    """The learner's thread turns outcomes into rows every few ms; a bot that exited right after
    its calls lost the ones still waiting."""
    store = tmp_path / "exit.db"
    script = f"""
import ccxt
from hardened import HardenedClient
from hardened.sim import Simulator
with Simulator(exchange="binance", seed=3) as sim:
    ex = HardenedClient(sim.attach(ccxt.binance()), learning_store={str(store)!r}, cache_ttl=0)
    for _ in range(30):
        ex.fetch_ticker("BTC/USDT")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, capture_output=True)
    with sqlite3.connect(store) as db:
        (tickers,) = db.execute("SELECT COUNT(*) FROM calls WHERE endpoint = 'ticker'").fetchone()
    assert tickers == 30


# --- the store under bad rows, shutdown, several writers, bad paths -----------------------------


def test_store_keeps_writing_after_a_row_it_cannot_store(tmp_path: Path) -> None:
    """A row SQLite refuses (an int past 64 bits, a dict) once killed the writer thread, and with
    it every later outcome; it also took the good rows of its batch with it."""
    store = RecordStore(tmp_path / "s.db", ("ts", "v"), flush_interval=60.0)
    try:
        now = time.time()
        for row in [(now, 1), (now, 10**30), (now, 2), (now, {"a": 1}), (now, 3)]:
            store.append(row)
        assert store.flush(timeout=5.0)
        assert [r[1] for r in store.rows()] == [1, 2, 3]  # the good rows of the batch are kept
        assert store.dropped == 2  # the refused ones are counted
        store.append((now, 4))
        assert store.flush(timeout=5.0)  # the writer is still alive
        assert store.count() == 4
    finally:
        store.close()


def test_store_counts_rows_appended_after_close(tmp_path: Path) -> None:
    """A row appended once the writer has stopped is never written: it is counted as dropped."""
    store = RecordStore(tmp_path / "s.db", ("ts", "v"))
    store.append((time.time(), 1))
    store.close()
    store.append((time.time(), 2))
    assert store.stats()["dropped"] == 1
    assert store.stats()["queued"] == 0


def test_store_row_bound_holds_with_two_writers_on_one_file(tmp_path: Path) -> None:
    """Each writer counted only its own rows, so N processes on one file kept N x max_rows."""
    a = RecordStore(tmp_path / "s.db", ("ts", "v"), max_rows=100, flush_interval=60.0)
    b = RecordStore(tmp_path / "s.db", ("ts", "v"), max_rows=100, flush_interval=60.0)
    try:
        now = time.time()
        for store in (a, b):
            for j in range(90):
                store.append((now, j))
            assert store.flush()
        assert a.count() == 100
    finally:
        a.close()
        b.close()


def test_store_path_that_is_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        RecordStore(tmp_path, ("ts", "a"))


# --- numbers a context may hold ------------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [{"limit": float("inf")}, {"limit": float("nan")}, {"size": 10**400}, {"size": float("-inf")}],
)
def test_non_finite_or_huge_context_numbers_read_unknown(context: dict[str, Any]) -> None:
    """They raised OverflowError/ValueError from inside the bucketing (int(inf), float(10**400))."""
    learner = _learner()
    try:
        learner.record_operation_result("bot", context, had_error=False)
        key, _ = learner.context_key("bot", context)
        assert key[FEATURES.index("limit_n")] is None and key[FEATURES.index("x0")] is None
        assert learner.store.count() == 1
    finally:
        learner.close()


@pytest.mark.parametrize("breaker", [{"state": "open"}, 10**30, 7, float("nan"), [1]])
def test_a_context_breaker_that_is_no_state_is_refused(breaker: Any) -> None:
    """It went into the key as it was: a dict made it unhashable, an int past 64 bits stopped the
    store's writer thread (and with it every later outcome)."""
    learner = _learner()
    try:
        with pytest.raises(ValueError, match="'breaker'"):
            learner.record_operation_result("bot", {"breaker": breaker}, had_error=False)
        learner.record_operation_result("bot", {"breaker": "half_open"}, had_error=False)
        learner.record_operation_result("bot", {"breaker": 2}, had_error=False)
        breakers = [r[1 + FEATURES.index("breaker")] for r in learner.store.rows()]
        assert breakers == [1, 2]
    finally:
        learner.close()


# --- a model file that cannot be used -----------------------------------------------------------


def _saved_model(tmp_path: Path) -> Path:
    clock = Clock()
    learner = _learner(clock=clock, model_path=tmp_path / "m.joblib")
    try:
        _feed_symbol_pattern(learner, clock)
        learner.train()
    finally:
        learner.close()
    return tmp_path / "m.joblib"


def test_a_corrupt_model_file_is_refused_not_fatal(tmp_path: Path) -> None:
    """A truncated model (valid schema file beside it) made the learner's construction, and so a
    client's, fail with an UnpicklingError."""
    path = _saved_model(tmp_path)
    with path.open("r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelVersionError, match="cannot be read"):
        GateModel.load(path)
    learner = ErrorLearner(None, model_path=path, background=False)
    try:
        assert learner.model is None  # the gate waits for data, as for a model of another version
    finally:
        learner.close()


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_a_model_file_other_users_can_write_is_not_loaded(tmp_path: Path) -> None:
    """Loading a joblib file runs the code it holds: one every user can write was loaded silently."""
    path = _saved_model(tmp_path)
    assert not path.stat().st_mode & 0o022  # saved writable by its owner only
    path.chmod(0o666)
    with pytest.raises(ModelVersionError, match="writable by every user"):
        GateModel.load(path)
    path.chmod(0o644)
    tmp_path.chmod(0o777)  # a folder anyone can write to (no sticky bit): anyone could replace it
    try:
        with pytest.raises(ModelVersionError, match="folder every user can write to"):
            GateModel.load(path)
    finally:
        tmp_path.chmod(0o755)
    if os.geteuid() == 0:  # only root can hand the file to another user here
        os.chown(path, 12345, -1)
        with pytest.raises(ModelVersionError, match="owned by another user"):
            GateModel.load(path)
    learner = ErrorLearner(None, model_path=path, background=False)
    try:
        assert learner.model is None
    finally:
        learner.close()


def test_train_on_calls_it_cannot_hold_out_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls all recorded at one time (or fewer than 20) ended 'hardened train' in a traceback."""
    from hardened.cli import main

    monkeypatch.setenv("HARDENED_GATE_MIN_SAMPLES", "10")
    store = tmp_path / "one-instant.db"
    learner = ErrorLearner(store, background=False, clock=Clock(time.time()))
    for i in range(30):
        learner.record_operation_result("bot", {"symbol": "BTC/USDT"}, had_error=i % 3 == 0)
    learner.close()
    assert main(["train", "--store", str(store), "--no-save"]) == 1
    assert "too little time to hold some out" in capsys.readouterr().err


def test_the_store_masks_secrets_in_the_named_context_texts(tmp_path: Path) -> None:
    """exchange, endpoint, symbol and timeframe (and the component name) were stored as given: an
    endpoint passed as a signed URL kept its key and signature in the store."""
    learner = _learner(tmp_path)
    context = {
        "endpoint": "https://api.x.com/v1/order?apiKey=SECRETkey1&signature=SECRETsig2",
        "symbol": "token=SECRETtok3",
        "exchange": "binance",
    }
    learner.record_operation_result("token=SECRETtok4", context, had_error=True)
    learner.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
        (exchange, endpoint), *_ = db.execute("SELECT exchange, endpoint FROM calls")
    assert "SECRET" not in dump
    assert exchange == "binance" and endpoint.startswith("https://api.x.com/v1/order?apiKey=***")


def test_store_leaves_another_applications_database_untouched(tmp_path: Path) -> None:
    """A store path naming another application's SQLite file had our tables added to it and was
    switched to WAL, silently."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match="not a hardened record store"):
        RecordStore(path, ("ts", "a"))
    db = sqlite3.connect(path)
    try:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["users"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        db.close()
    # a store of a newer hardened is refused rather than misread
    newer = tmp_path / "newer.db"
    RecordStore(newer, ("ts", "a")).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer hardened"):
        RecordStore(newer, ("ts", "a"))


def test_train_with_a_bad_configuration_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad HARDENED_* variable ended 'hardened train' in a ConfigError traceback."""
    from hardened.cli import main

    monkeypatch.setenv("HARDENED_GATE_THRESHOLD", "5")
    assert main(["train", "--store", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardened train: invalid hardened configuration: gate_threshold")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("tau", 0.0),
        ("tau", -5.0),
        ("tau", float("nan")),
        ("retrain_every", 0),
        ("train_rows", 0),
        ("anomaly_every", 0.0),
    ],
)
def test_learner_refuses_settings_it_would_fail_on_later(argument: str, value: Any) -> None:
    """tau=0 constructed, then every record raised ZeroDivisionError; the others retrained or
    scanned for anomalies on every outcome (a thread each), or never trained."""
    with pytest.raises(ValueError, match=argument):
        ErrorLearner(None, background=False, **{argument: value})


@pytest.mark.parametrize(
    ("argument", "value"),
    [("flush_interval", 0.0), ("max_rows", 0), ("max_queue", 0), ("retention", -1.0), ("batch_max", 0)],
)
def test_store_refuses_bounds_that_keep_nothing_or_spin(argument: str, value: Any) -> None:
    """flush_interval=0 made the writer spin a core; max_rows=0, max_queue=0 or a negative
    retention kept no row at all, without a word."""
    with pytest.raises(StoreError, match=argument):
        RecordStore(None, ("ts", "v"), **{argument: value})


def test_two_openers_upgrading_one_old_store_both_start(tmp_path: Path) -> None:
    """Both read the old columns, both added the new ones, and the second failed to start
    ('duplicate column name'); before the fix about one attempt in five failed."""
    import threading

    for attempt in range(30):
        path = tmp_path / f"old-{attempt}.db"
        RecordStore(path, ("ts", "component")).close()  # a store of an earlier schema
        barrier = threading.Barrier(2)
        errors: list[Exception] = []

        def open_it(
            store_path: Path = path, start: threading.Barrier = barrier, seen: list[Exception] = errors
        ) -> None:
            start.wait()
            try:
                RecordStore(store_path, ROW_COLUMNS).close()
            except Exception as exc:  # collected for the assertion below
                seen.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, f"attempt {attempt}: {errors[0]}"


def test_two_learners_saving_one_model_at_once_leave_a_usable_model(tmp_path: Path) -> None:
    """Two learners on one store (two processes) saved through one shared '.tmp' name: one save
    failed (FileNotFoundError) and the file left was corrupt or did not match its schema file."""
    import threading

    first = GateModel.load(_saved_model(tmp_path))
    second = GateModel.load(tmp_path / "m.joblib")
    second.schema = {**second.schema, "samples": second.schema["samples"] + 1}  # a later training
    target = tmp_path / "shared.joblib"
    for _ in range(10):
        barrier = threading.Barrier(2)
        errors: list[Exception] = []

        def save(
            model: GateModel, start: threading.Barrier = barrier, seen: list[Exception] = errors
        ) -> None:
            start.wait()
            try:
                model.save(target)
            except Exception as exc:  # collected for the assertion below
                seen.append(exc)

        threads = [threading.Thread(target=save, args=(m,)) for m in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert GateModel.load(target).schema["samples"] in (first.schema["samples"], second.schema["samples"])
    assert sorted(p.name for p in tmp_path.iterdir() if "shared" in p.name) == [
        "shared.joblib",
        "shared.joblib.json",
    ]  # no temporary file left behind


def test_a_context_with_keys_of_mixed_types_is_recorded() -> None:
    """An int key among string keys raised "'<' not supported between 'int' and 'str'"."""
    variant, numbers = generic_parts({"symbol": "BTC/USDT", 1: 0.5, "size": 2, "mode": "live"})
    assert variant == "mode=live" and numbers == (0.5, 2.0, None, None)  # "1" sorts before "size"


def test_store_on_a_full_disk_counts_rows_and_says_so_once(tmp_path: Path) -> None:
    """A full disk ('database or disk is full', forced with max_page_count): the rows are counted
    as dropped, the writer survives and resumes once there is room, and the error is said once a
    minute rather than for every batch (four a second)."""
    from structlog.testing import capture_logs

    store = RecordStore(tmp_path / "s.db", ("ts", "v"), flush_interval=60.0)
    try:
        store.append((time.time(), "x"))
        assert store.flush()
        with store._db_lock:
            pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
            store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with capture_logs() as logs:
            for _ in range(20):
                store.append((time.time(), "y" * 5_000))
                assert store.flush()
        assert store.dropped == 20
        assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
            "record_store_write_failed"
        ]
        with store._db_lock:
            store._conn.execute("PRAGMA max_page_count = 1000000")
        store.append((time.time(), "z"))
        assert store.flush()
        assert [r[1] for r in store.rows()] == ["x", "z"]
    finally:
        store.close()


def test_train_suggests_no_threshold_when_none_kept_good_calls_within_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BTC/USDT failed throughout the older time and succeeds in the most recent quarter, with
    nothing in its features to tell them apart: every candidate skips a third of the good calls
    there, and 'hardened train' suggested 0.95 as 'the lowest that skipped at most 1 %'."""
    from hardened.cli import main

    store = tmp_path / "recovered.db"
    t0 = time.time() - 3_600.0
    learner = ErrorLearner(store, background=False)
    n = 900
    for i in range(n):
        symbol = ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3]
        key, _ = learner.call_key("exchange", "binance", "ticker", symbol, now=t0)
        failed = symbol == "BTC/USDT" and i < int(n * 0.72)
        learner.store.append((t0 + i * 0.5, *key, int(failed), None, None, 1, 0.02, False, None))
    learner.close()
    assert main(["train", "--store", str(store), "--no-save", "--json"]) == 0
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n") :])
    assert out["threshold_suggested"] is None
    assert out["threshold_candidates"][-1]["good_skipped_share"] > 0.01
    assert main(["train", "--store", str(store), "--no-save"]) == 0
    text = capsys.readouterr().out
    assert "suggested gate_threshold" not in text and "no gate_threshold suggested" in text


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf"])
def test_report_refuses_hours_that_are_not_a_positive_finite_number(
    hours: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--hours inf`` printed ``Infinity`` in the JSON report (not JSON); nan compared as allowed."""
    from hardened.cli import main

    store = tmp_path / "r.db"
    ErrorLearner(store, background=False).close()
    assert main(["report", "--store", str(store), "--hours", hours, "--json"]) == 2
    assert "--hours must be a positive finite number" in capsys.readouterr().err
