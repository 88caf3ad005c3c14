"""Benchmark of the data-quality checks on the pipeline's hot path: median microseconds per call.

Run ``python benchmarks/bench_quality.py``. It times ``quality.check`` (what the pipeline calls
once per successful answer) on 1,000 clean candles, 1,000 candles with defects (validation and
repair), a ticker, a 100-level order book and 1,000 trades, each over many repetitions with
``time.perf_counter_ns``, then compares the clean 1,000-candle case with its target. It always
exits 0: the PASS/FAIL line is information, not a gate.
"""

from __future__ import annotations

import gc
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import structlog

from hardened.quality import DEFAULT_THRESHOLDS, QualityMonitor

TARGET_US_PER_1000_CANDLES = 1000.0
# What a Binance client's validation adds (its adapter profile's [market_data]).
EXCHANGE_FACTS = replace(DEFAULT_THRESHOLDS, ticker_prices=("bid", "ask", "last"), continuous_candles=True)
MINUTE = 60_000
NOW = 1_750_000_000_000 // MINUTE * MINUTE + 20_000


def clean_candles(n: int = 1000, seed: int = 7) -> list[list[Any]]:
    """A realistic minute series ending at NOW: random-walk closes, wicks, volumes."""
    rng = random.Random(seed)
    first = NOW // MINUTE * MINUTE - (n - 1) * MINUTE
    rows: list[list[Any]] = []
    price = 65_000.0
    for i in range(n):
        close = price * math.exp(rng.gauss(0, 0.0006))
        high = max(price, close) * (1 + abs(rng.gauss(0, 0.0003)))
        low = min(price, close) * (1 - abs(rng.gauss(0, 0.0003)))
        rows.append([first + i * MINUTE, price, high, low, close, rng.uniform(0.5, 50)])
        price = close
    return rows


def defective_candles() -> list[list[Any]]:
    """The clean series with the usual faults: high < low, a duplicate, a swap, a gap, a spike."""
    rows = [list(r) for r in clean_candles()]
    rows[100][2] = rows[100][3] * 0.9
    rows[200][4] = 0.0
    rows.insert(300, list(rows[300]))
    rows[400], rows[401] = rows[401], rows[400]
    rows[500][1:5] = [x * 3 for x in rows[500][1:5]]
    del rows[600:610]
    return rows


TICKER = {
    "symbol": "BTC/USDT",
    "timestamp": NOW - 800,
    "datetime": "2025-06-15T15:06:39.200Z",
    "high": 66_000.0,
    "low": 64_000.0,
    "bid": 65_000.0,
    "bidVolume": 1.2,
    "ask": 65_000.1,
    "askVolume": 0.7,
    "vwap": 65_010.0,
    "open": 64_500.0,
    "close": 65_000.05,
    "last": 65_000.05,
    "previousClose": None,
    "change": 500.05,
    "percentage": 0.775,
    "average": 64_750.02,
    "baseVolume": 12_345.6,
    "quoteVolume": 802_000_000.0,
    "info": {},
}

BOOK = {
    "symbol": "BTC/USDT",
    "bids": [[65_000.0 - i * 0.1, 0.01 + i * 0.003] for i in range(100)],
    "asks": [[65_000.1 + i * 0.1, 0.02 + i * 0.002] for i in range(100)],
    "timestamp": NOW - 300,
    "datetime": None,
    "nonce": 123_456_789,
}

TRADES = [
    {
        "id": str(1_000_000 + i),
        "timestamp": NOW - 60_000 + i * 50,
        "datetime": None,
        "symbol": "BTC/USDT",
        "order": None,
        "type": None,
        "side": "buy" if i % 3 else "sell",
        "takerOrMaker": None,
        "price": 65_000.0 + (i % 7) * 0.1,
        "amount": 0.001 * (1 + i % 5),
        "cost": 65.0,
        "fee": None,
        "fees": [],
        "info": {},
    }
    for i in range(1000)
]


def median_us(fn: Callable[[], Any], reps: int, warmup: int = 20) -> float:
    """Median wall time of ``fn`` in microseconds over ``reps`` calls, garbage collector paused."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(reps):
            start = clock()
            fn()
            samples.append(clock() - start)
    finally:
        gc.enable()
    return statistics.median(samples) / 1000


def main() -> int:
    # A repair logs a warning each time; the figures are the checks' cost, not console output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    monitor = QualityMonitor()
    clean = clean_candles()
    broken = defective_candles()
    check = monitor.check
    assert check("ohlcv", clean, policy="raise", min_score=50, timeframe="1m", now_ms=NOW)[1].score == 100
    # validate, not check: the defects include impossible candles, which raise under any policy but warn
    broken_report = monitor.validate("ohlcv", broken, timeframe="1m", now_ms=NOW)
    assert broken_report is not None
    assert check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW)[1].score == 100
    assert check("order_book", BOOK, policy="raise", min_score=50, now_ms=NOW)[1].score == 100
    assert check("trades", TRADES, policy="raise", min_score=50, now_ms=NOW)[1].score == 100

    cases: list[tuple[str, Callable[[], Any], int]] = [
        (
            "ohlcv 1,000 candles, clean",
            lambda: check("ohlcv", clean, policy="raise", min_score=50, timeframe="1m", now_ms=NOW),
            1500,
        ),
        (
            "ohlcv 1,000 candles, defects (validate)",
            lambda: monitor.validate("ohlcv", broken, timeframe="1m", now_ms=NOW),
            400,
        ),
        (
            "ohlcv 1,000 candles, defects (repair)",
            lambda: check("ohlcv", broken, policy="repair", min_score=0, timeframe="1m", now_ms=NOW),
            200,
        ),
        (
            "ticker",
            lambda: check("ticker", TICKER, policy="raise", min_score=50, now_ms=NOW, symbol="BTC/USDT"),
            20000,
        ),
        (
            "order book 100 levels a side",
            lambda: check("order_book", BOOK, policy="raise", min_score=50, now_ms=NOW, symbol="BTC/USDT"),
            5000,
        ),
        (
            "trades 1,000",
            lambda: check("trades", TRADES, policy="raise", min_score=50, now_ms=NOW, symbol="BTC/USDT"),
            400,
        ),
        (
            "ticker, an exchange's always-sent prices",
            lambda: check(
                "ticker",
                TICKER,
                policy="raise",
                min_score=50,
                now_ms=NOW,
                symbol="BTC/USDT",
                thresholds=EXCHANGE_FACTS,
            ),
            20000,
        ),
        # an endpoint without checks ("balance" has structure checks since private answers are validated)
        ("other endpoint (pass-through)", lambda: check("markets", {}, policy="raise", min_score=50), 20000),
    ]
    print(f"hardened.quality benchmark: python {platform.python_version()}, numpy {np.__version__}")
    print(f"defective series: {broken_report}")
    print(f"{'case':<44}{'median us':>12}{'reps':>8}")
    results: dict[str, float] = {}
    for name, fn, reps in cases:
        results[name] = median_us(fn, reps)
        print(f"{name:<44}{results[name]:>12.1f}{reps:>8}")
    clean_us = results["ohlcv 1,000 candles, clean"]
    print(f"target: < {TARGET_US_PER_1000_CANDLES:.0f} us per 1,000 candles")
    verdict = "PASS" if clean_us < TARGET_US_PER_1000_CANDLES else "FAIL"
    print(f"{verdict}: clean 1,000 candles validated in {clean_us:.1f} us")
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0)
