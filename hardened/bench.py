"""``hardened bench``: what the pipeline costs, measured against raw ccxt in the same run.

Figures:
- over HTTP: the median latency of ``fetch_ticker`` against the simulator (run in a separate
  process so it does not share our GIL), raw ccxt and hardened interleaved round by round, ccxt's
  own rate limiter off on both sides, the cache off so every call goes through every stage to the
  exchange. Target: at most 2 % added.
- in process: the pipeline's own cost per successful call, with the exchange call replaced by a
  function returning a constant, so only the wrapper is timed (microseconds added).
- the cache: a cache hit against the raw call (target: 50x faster or better), and how many
  exchange requests a realistic polling bot loop saves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ccxt

from hardened.client import HardenedClient
from hardened.sim import attach_url

__all__ = ["bench_http", "bench_overhead", "main_argv"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def simulator_process(exchange: str, profile: str = "calm") -> Iterator[str]:
    """Run ``hardened sim`` in a child process; yields its base URL once it answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "hardened.cli", "sim", "--exchange", exchange, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--profile", profile], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=1):
                    break
            except OSError as exc:  # refused until it listens; an HTTP error means it is up
                if getattr(exc, "code", None):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"simulator did not start: {err[-500:]}") from exc
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    perf = time.perf_counter
    out = []
    for _ in range(n):
        t0 = perf()
        fn()
        out.append(perf() - t0)
    return out


def bench_http(exchange: str = "binance", rounds: int = 20, calls: int = 100) -> dict[str, Any]:
    """Median fetch_ticker latency against a simulator in another process: raw ccxt, the core
    pipeline (record, breaker, retry) and the full pipeline (plus validation of every ticker).

    No rate limiter on any side (ccxt's is off too), and the cache is off so each call reaches the
    exchange: at this call rate pacing would (rightly) slow hardened down to Binance's 6000
    weight/min while raw ccxt heads for a ban.
    """
    common = {"cache_ttl": 0, "stale_if_error": 0, "rate_limit_pacing": False}
    with simulator_process(exchange) as base:

        def attached() -> Any:
            return attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base)

        clients = {
            "raw": attached(),
            "core": HardenedClient(attached(), quality_policy="off", **common),
            "full": HardenedClient(attached(), **common),
        }
        symbol = {"bitvavo": "BTC/EUR"}.get(exchange, "BTC/USDT")
        for client in clients.values():
            client.load_markets()
            _time_calls(lambda c=client: c.fetch_ticker(symbol), 50)  # warm the connection
        times: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        perf = time.perf_counter
        # Call by call, rotating who goes first: the simulator's latency drifts over seconds, and
        # blocks of calls would hand that drift to one side (seen here: +/-6 % between runs).
        for i in range(rounds * calls):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                t0 = perf()
                clients[name].fetch_ticker(symbol)
                times[name].append(perf() - t0)
        for client in clients.values():
            client.close()
    raw_times = times["raw"]
    raw_median = statistics.median(raw_times)
    result: dict[str, Any] = {"raw_median_us": raw_median * 1e6, "samples": len(raw_times)}
    for name in ("core", "full"):
        median = statistics.median(times[name])
        paired = statistics.median(w - r for w, r in zip(times[name], raw_times, strict=True))
        result[name] = {"median_us": median * 1e6, "added_us": paired * 1e6, "ratio": median / raw_median}
    return result


def bench_cache(exchange: str = "binance", calls: int = 300, loop_seconds: float = 5.0) -> dict[str, float]:
    """Cache-hit latency against raw ccxt, and exchange requests saved by a polling bot loop."""
    with simulator_process(exchange) as base:
        raw = attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base)
        cached = HardenedClient(
            attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base), rate_limit_pacing=False
        )
        symbol = {"bitvavo": "BTC/EUR"}.get(exchange, "BTC/USDT")
        raw.load_markets()
        cached.load_markets()
        raw_median = statistics.median(_time_calls(lambda: raw.fetch_ticker(symbol), calls))
        cached.fetch_ticker(symbol)
        hit_median = statistics.median(_time_calls(lambda: cached.fetch_ticker(symbol), calls))
        plain_requests = _bot_loop(raw, loop_seconds)
        hardened_requests = _bot_loop(cached, loop_seconds)
        cached.close()
        raw.close()
    return {
        "raw_median_us": raw_median * 1e6,
        "hit_median_us": hit_median * 1e6,
        "speedup": raw_median / hit_median,
        "loop_raw_requests_per_s": plain_requests[0] / loop_seconds,
        "loop_raw_iterations_per_s": plain_requests[1] / loop_seconds,
        "loop_hardened_requests_per_s": hardened_requests[0] / loop_seconds,
        "loop_hardened_iterations_per_s": hardened_requests[1] / loop_seconds,
    }


def _bot_loop(client: Any, seconds: float) -> tuple[int, int]:
    """A strategy loop as bots write them: markets, tickers, candles and a book, polled every 50 ms.

    Returns (HTTP requests sent, loop iterations done); requests are counted at ccxt's ``fetch``.
    """
    inner = getattr(client, "inner", client)
    sent = [0]
    original = inner.fetch

    def counting_fetch(*args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return original(*args, **kwargs)

    inner.fetch = counting_fetch
    symbols = list(client.symbols)[:3]
    deadline = time.monotonic() + seconds
    iterations = 0
    try:
        while time.monotonic() < deadline:
            client.load_markets(True) if iterations % 20 == 0 else None  # bots reload markets often
            for symbol in symbols:
                client.fetch_ticker(symbol)
                client.fetch_ohlcv(symbol, "1m", limit=100)
            client.fetch_order_book(symbols[0], 20)
            iterations += 1
            time.sleep(0.05)
    finally:
        inner.fetch = original
    return sent[0], iterations


def bench_overhead(calls: int = 50_000) -> dict[str, float]:
    """The core pipeline's own cost per successful call: the exchange call returns a constant.

    Cache, pacing and validation are off so every call runs record, breaker and the retry stage
    around the call (validation's cost is ``benchmarks/bench_quality.py``'s, the cache's below).
    """
    ticker = {"symbol": "BTC/USDT", "last": 1.0}
    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: ticker
    wrapped = HardenedClient(
        raw, cache_ttl=0, stale_if_error=0, rate_limit_pacing=False, quality_policy="off"
    )
    wrapped.fetch_ticker("BTC/USDT")
    raw_times = []
    wrapped_times = []
    for _ in range(5):
        raw_times.append(_batch(lambda: raw.fetch_ticker("BTC/USDT"), calls))
        wrapped_times.append(_batch(lambda: wrapped.fetch_ticker("BTC/USDT"), calls))
    wrapped.close()
    raw_per = min(raw_times) / calls
    wrapped_per = min(wrapped_times) / calls
    return {
        "raw_call_us": raw_per * 1e6,
        "hardened_call_us": wrapped_per * 1e6,
        "added_us": (wrapped_per - raw_per) * 1e6,
    }


def _batch(fn: Callable[[], Any], n: int) -> float:
    """Seconds for ``n`` calls of ``fn`` in a row."""
    perf = time.perf_counter
    t0 = perf()
    for _ in range(n):
        fn()
    return perf() - t0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The benchmark's command-line options."""
    parser = parser or argparse.ArgumentParser(prog="hardened bench", description=__doc__)
    parser.add_argument("--exchange", default="binance", choices=["binance", "kucoin", "bitvavo"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``hardened bench``; prints the figures, always exits 0 unless it cannot run."""
    args = build_parser().parse_args(argv)
    # simulated calls never reach the learning store of the user's real ones (a model trained on
    # them would skip real calls): memory only, unless the environment names a store
    os.environ.setdefault("HARDENED_LEARNING_STORE", ":memory:")
    overhead = bench_overhead()
    http = bench_http(args.exchange, args.rounds, args.calls)
    cache = bench_cache(args.exchange)
    if args.json:
        print(json.dumps({"overhead": overhead, "http": http, "cache": cache}, indent=2))
        return 0
    print("core pipeline overhead, in process (exchange call replaced by a constant):")
    print(f"  raw call            {overhead['raw_call_us']:8.2f} us")
    print(f"  hardened call       {overhead['hardened_call_us']:8.2f} us")
    print(f"  added per call      {overhead['added_us']:8.2f} us")
    print(f"fetch_ticker over HTTP against the simulator ({args.exchange}, {http['samples']} calls each):")
    print(f"  raw ccxt median        {http['raw_median_us']:8.1f} us")
    for name, label in (("core", "record+breaker+retry"), ("full", "+ ticker validation")):
        fig = http[name]
        verdict = "PASS" if fig["ratio"] <= 1.02 else "FAIL"
        print(
            f"  {label:<22} {fig['median_us']:8.1f} us, +{fig['added_us']:.1f} us (median paired difference)"
        )
        print(
            f"  {'':<22} ratio {fig['ratio']:.4f} ({(fig['ratio'] - 1) * 100:+.2f} %; target +2 %) {verdict}"
        )
    print("cache (default TTLs):")
    print(f"  raw fetch_ticker    {cache['raw_median_us']:8.1f} us median")
    print(f"  cache hit           {cache['hit_median_us']:8.1f} us median")
    verdict = "PASS" if cache["speedup"] >= 50 else "FAIL"
    print(f"  speedup             {cache['speedup']:8.1f} x  (target >= 50 x)  {verdict}")
    raw_rate, raw_it = cache["loop_raw_requests_per_s"], cache["loop_raw_iterations_per_s"]
    ours_rate, ours_it = cache["loop_hardened_requests_per_s"], cache["loop_hardened_iterations_per_s"]
    print(f"  bot loop, raw       {raw_rate:8.1f} requests/s at {raw_it:.1f} loops/s")
    print(f"  bot loop, hardened  {ours_rate:8.1f} requests/s at {ours_it:.1f} loops/s")
    saved = 1 - (cache["loop_hardened_requests_per_s"] / cache["loop_hardened_iterations_per_s"]) / (
        cache["loop_raw_requests_per_s"] / cache["loop_raw_iterations_per_s"]
    )
    print(f"  requests saved per loop iteration: {saved:.0%}")
    return 0
