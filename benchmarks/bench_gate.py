"""What the learning gate costs on the hot path, in microseconds per call.

Run: ``python benchmarks/bench_gate.py``. Measures, in one run on this machine:

- ``store_append``: queueing one record (the only work a call does for the record store);
- ``call_key``: describing a call in feature buckets (hour, headroom, recent error shares, ...);
- ``decide_cached``: the skip decision when the bucket's probability is cached (the usual case);
- ``decide_miss``: the same on a bucket not seen since the last training (one scikit-learn call);
- ``finish``: recording an outcome (queue + recent statistics);
- the whole pipeline per successful call (exchange call stubbed out) with the gate stage absent,
  recording only (the default), recording with the writer thread held back (the caller's own
  share: in a tight loop of ~20,000 calls a second the writer's SQLite inserts compete with the
  caller for the GIL and the two cores; a bot making tens of calls a second does not see that),
  and deciding with a trained model.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccxt

from hardened import HardenedClient
from hardened.learning import ErrorLearner


def per_call_us(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` batches of ``n`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def trained_learner(**kw: Any) -> ErrorLearner:
    """A learner with a model: BTC/USDT tickers fail, the others do not."""
    clock_t = [1_800_000_000.0]
    learner = ErrorLearner(None, background=False, min_samples=200, clock=lambda: clock_t[0], **kw)
    for i in range(900):
        symbol = ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3]
        key, call = learner.call_key("exchange", "binance", "ticker", symbol)
        learner.finish(key, call, symbol == "BTC/USDT", 0.02)
        clock_t[0] += 0.5
    learner.train()
    return learner


def pipeline_us(calls: int, writer_idle: bool = False, **settings: Any) -> float:
    ticker = {"symbol": "ETH/USDT", "last": 1.0}
    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: ticker
    client = HardenedClient(
        raw, cache_ttl=0, stale_if_error=0, rate_limit_pacing=False, quality_policy="off", **settings
    )
    try:
        if client.pipeline.names()[1] == "gate":
            learner = client.pipeline.stages[1].learner
            # retraining (every 5,000 calls) runs in a thread and competes for the GIL: measured
            # apart (fit_seconds in the training log), not in the per-call figure
            learner.background = False
            if writer_idle:  # the caller's own cost: the writer thread's batches held back
                learner.store.flush_interval = 3_600.0
                learner.store.max_queue = 10 * calls
            if settings.get("gate_enabled"):
                learner.use_model(trained_learner().model, [])
        client.fetch_ticker("ETH/USDT")
        if settings.get("gate_enabled"):
            learner.score_pending()
        return per_call_us(lambda: client.fetch_ticker("ETH/USDT"), calls)
    finally:
        client.close()
        if client.pipeline.names()[1] == "gate":
            client.pipeline.stages[1].learner.close()


def main() -> int:
    n = 20_000
    learner = trained_learner()
    results: dict[str, float] = {}
    store = learner.store
    row = (0.0,) * len(store.columns)
    results["store_append"] = per_call_us(lambda: store.append(row), n)
    store.flush()
    key, call = learner.call_key("exchange", "binance", "ticker", "ETH/USDT")
    results["call_key"] = per_call_us(
        lambda: learner.call_key("exchange", "binance", "ticker", "ETH/USDT"), n
    )
    learner.decide(key, call)
    results["decide_cached"] = per_call_us(lambda: learner.decide(key, call), n)

    def miss() -> None:
        learner._cache.clear()
        learner.decide(key, call)

    results["decide_miss"] = per_call_us(miss, 200, repeats=3)
    results["finish"] = per_call_us(lambda: learner.finish(key, call, False, 0.02), n)
    learner.close()
    with tempfile.TemporaryDirectory() as folder:
        store_file = str(Path(folder) / "bench.db")
        results["pipeline_without_gate"] = pipeline_us(n, learning_record=False, learning_store=":memory:")
        results["pipeline_recording"] = pipeline_us(n, learning_store=store_file)
        results["pipeline_recording_writer_idle"] = pipeline_us(
            n, writer_idle=True, learning_store=str(Path(folder) / "idle.db")
        )
        results["pipeline_gate_deciding"] = pipeline_us(
            n, learning_store=str(Path(folder) / "gate.db"), gate_enabled=True, gate_min_samples=200
        )
    results = {k: round(v, 2) for k, v in results.items()}
    results["added_by_recording"] = round(results["pipeline_recording"] - results["pipeline_without_gate"], 2)
    results["added_on_callers_thread"] = round(
        results["pipeline_recording_writer_idle"] - results["pipeline_without_gate"], 2
    )
    results["added_by_gate"] = round(results["pipeline_gate_deciding"] - results["pipeline_without_gate"], 2)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
