"""``hardened bench``: what the pipeline costs, measured against raw ccxt in the same run.

Two figures:
- over HTTP: the median latency of ``fetch_ticker`` against the simulator (run in a separate
  process so it does not share our GIL), raw ccxt and hardened interleaved round by round, ccxt's
  own rate limiter off on both sides. Target: at most 2 % added.
- in process: the pipeline's own cost per successful call, with the exchange call replaced by a
  function returning a constant, so only the wrapper is timed (microseconds added).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


def _attach(exchange: Any, base: str) -> Any:
    from hardened.sim.dialect import dialect_class
    from hardened.sim.venue import Venue

    dialect = dialect_class(exchange.id)(Venue(exchange.id, seed=0))
    exchange.urls = dict(exchange.urls)
    exchange.urls["api"] = dialect.api_urls(f"{base}/{exchange.id}")
    dialect.configure(exchange)
    return exchange


def _time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    perf = time.perf_counter
    out = []
    for _ in range(n):
        t0 = perf()
        fn()
        out.append(perf() - t0)
    return out


def bench_http(exchange: str = "binance", rounds: int = 20, calls: int = 100) -> dict[str, float]:
    """Median fetch_ticker latency, raw vs hardened, against a simulator in another process."""
    with simulator_process(exchange) as base:
        raw = _attach(getattr(ccxt, exchange)({"enableRateLimit": False}), base)
        wrapped = HardenedClient(_attach(getattr(ccxt, exchange)({"enableRateLimit": False}), base))
        symbol = {"bitvavo": "BTC/EUR"}.get(exchange, "BTC/USDT")
        raw.load_markets()
        wrapped.load_markets()
        _time_calls(lambda: raw.fetch_ticker(symbol), 50)  # warm both connections
        _time_calls(lambda: wrapped.fetch_ticker(symbol), 50)
        raw_times: list[float] = []
        wrapped_times: list[float] = []
        for i in range(rounds):  # interleaved, alternating who goes first, so drift hits both
            order = [(raw, raw_times), (wrapped, wrapped_times)]
            for client, sink in order if i % 2 == 0 else reversed(order):
                sink.extend(_time_calls(lambda c=client: c.fetch_ticker(symbol), calls))
        wrapped.close()
        raw.close()
    raw_median = statistics.median(raw_times)
    wrapped_median = statistics.median(wrapped_times)
    return {
        "raw_median_us": raw_median * 1e6,
        "hardened_median_us": wrapped_median * 1e6,
        "added_us": (wrapped_median - raw_median) * 1e6,
        "ratio": wrapped_median / raw_median,
        "samples": len(raw_times),
    }


def bench_overhead(calls: int = 50_000) -> dict[str, float]:
    """The pipeline's own cost per successful call: the exchange call returns a constant."""
    ticker = {"symbol": "BTC/USDT", "last": 1.0}
    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: ticker
    wrapped = HardenedClient(raw)
    wrapped.fetch_ticker("BTC/USDT")
    raw_times = []
    wrapped_times = []
    for _ in range(5):
        raw_times.append(min(_batch(lambda: raw.fetch_ticker("BTC/USDT"), calls)))
        wrapped_times.append(min(_batch(lambda: wrapped.fetch_ticker("BTC/USDT"), calls)))
    wrapped.close()
    raw_per = min(raw_times) / calls
    wrapped_per = min(wrapped_times) / calls
    return {
        "raw_call_us": raw_per * 1e6,
        "hardened_call_us": wrapped_per * 1e6,
        "added_us": (wrapped_per - raw_per) * 1e6,
    }


def _batch(fn: Callable[[], Any], n: int) -> list[float]:
    perf = time.perf_counter
    t0 = perf()
    for _ in range(n):
        fn()
    return [perf() - t0]


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
    overhead = bench_overhead()
    http = bench_http(args.exchange, args.rounds, args.calls)
    if args.json:
        print(json.dumps({"overhead": overhead, "http": http}, indent=2))
        return 0
    print("pipeline overhead, in process (exchange call replaced by a constant):")
    print(f"  raw call            {overhead['raw_call_us']:8.2f} us")
    print(f"  hardened call       {overhead['hardened_call_us']:8.2f} us")
    print(f"  added per call      {overhead['added_us']:8.2f} us")
    print(
        f"fetch_ticker over HTTP against the simulator ({args.exchange}, {http['samples']:.0f} calls each):"
    )
    print(f"  raw ccxt median     {http['raw_median_us']:8.1f} us")
    print(f"  hardened median     {http['hardened_median_us']:8.1f} us")
    print(f"  ratio               {http['ratio']:8.4f}  ({(http['ratio'] - 1) * 100:+.2f} %; target <= +2 %)")
    verdict = "PASS" if http["ratio"] <= 1.02 else "FAIL"
    print(f"  {verdict}")
    return 0
