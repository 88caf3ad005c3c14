"""What sharing state through Redis adds to a call: hardened with ``redis_url`` vs without, same run.

Run: ``python benchmarks/bench_redis.py`` (needs ``redis-server`` on the PATH; it starts its own
on a free port). Prints, call by call with the two clients alternating:

- in process, the exchange call replaced by a constant (only the pipeline is timed);
- ``fetch_ticker`` over HTTP against the simulator in another process;

the median per call with Redis off and on, the added microseconds (median of the paired
differences) and the ratio, and how many Redis round trips the calls made on the caller's thread
(the budget's leases; a closed breaker never asks Redis). Target: under 100 us added at the median.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ccxt
import redis

from hardened import HardenedClient
from hardened.bench import simulator_process
from hardened.shared import disconnect_all
from hardened.shared.budget import SharedBudget
from hardened.shared.connection import RedisLink
from hardened.sim.server import attach_url

SETTINGS = {"cache_ttl": 0, "stale_if_error": 0, "quality_policy": "off", "rate_limit_headroom": 1.0}


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away ``redis-server`` on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def _paired(off: Callable[[], Any], on: Callable[[], Any], calls: int) -> tuple[list[float], list[float]]:
    """Time ``calls`` calls of each, alternating who goes first (drift is shared fairly)."""
    perf = time.perf_counter
    t_off: list[float] = []
    t_on: list[float] = []
    for i in range(calls):
        for name in ("off", "on") if i % 2 else ("on", "off"):
            fn, out = (off, t_off) if name == "off" else (on, t_on)
            t0 = perf()
            fn()
            out.append(perf() - t0)
    return t_off, t_on


def _report(title: str, t_off: list[float], t_on: list[float], round_trips: int) -> dict[str, float]:
    off, on = statistics.median(t_off), statistics.median(t_on)
    diffs = [b - a for a, b in zip(t_off, t_on, strict=True)]
    added = statistics.median(diffs)
    # Standard error of a median, from the spread of the differences (MAD scaled to a sigma):
    # over HTTP the call-to-call jitter is milliseconds, so the added figure carries this much noise.
    spread = statistics.median(abs(d - added) for d in diffs) * 1.4826
    noise = 1.2533 * spread / len(diffs) ** 0.5
    result = {
        "off_us": off * 1e6,
        "on_us": on * 1e6,
        "added_us": added * 1e6,
        "ratio": on / off,
        "noise_us": noise * 1e6,
        "redis_round_trips_per_call": round_trips / len(t_on),
    }
    print(f"{title}:")
    print(f"  median per call, Redis off: {result['off_us']:9.1f} us")
    print(f"  median per call, Redis on:  {result['on_us']:9.1f} us")
    print(
        f"  added (median of paired differences): {result['added_us']:+.1f} us"
        f" +/- {result['noise_us']:.1f} us (standard error), ratio {result['ratio']:.3f}"
        f" (target < 100 us: {_verdict(result['added_us'], result['noise_us'])})"
    )
    print(
        f"  Redis round trips on the caller's thread: {round_trips} in {len(t_on)} calls"
        f" ({result['redis_round_trips_per_call']:.4f} per call: budget leases; breakers none)"
    )
    return result


def _verdict(added_us: float, noise_us: float) -> str:
    if added_us < 100:
        return "met"
    if added_us < 100 + 2 * noise_us:
        return "not decided: the difference is within this run's noise"
    return "NOT met"


def bench_stub(url: str, calls: int = 1200) -> dict[str, float]:
    """In process: the exchange call returns a constant, so only what hardened adds is timed."""
    ticker = {"symbol": "BTC/USDT", "last": 1.0}

    def stubbed() -> Any:
        exchange = ccxt.binance()
        exchange.fetch_ticker = lambda symbol, params=None: ticker
        return exchange

    off = HardenedClient(stubbed(), **SETTINGS)
    on = HardenedClient(stubbed(), redis_url=url, **SETTINGS)
    _paired(lambda: off.fetch_ticker("BTC/USDT"), lambda: on.fetch_ticker("BTC/USDT"), 100)  # warm up
    before = on._hd.shared.budget.refills
    t_off, t_on = _paired(lambda: off.fetch_ticker("BTC/USDT"), lambda: on.fetch_ticker("BTC/USDT"), calls)
    trips = on._hd.shared.budget.refills - before
    return _report("in process, exchange call replaced by a constant", t_off, t_on, trips)


def bench_breakers_only(url: str, calls: int = 5000) -> int:
    """Redis commands the server processed while a client with ``redis_url`` and no rate-limit
    pacing made ``calls`` successful calls: what the shared breakers cost on the success path."""
    exchange = ccxt.binance()
    exchange.fetch_ticker = lambda symbol, params=None: {"symbol": symbol, "last": 1.0}
    client = HardenedClient(exchange, redis_url=url, **{**SETTINGS, "rate_limit_pacing": False})
    client.fetch_ticker("BTC/USDT")
    time.sleep(0.2)  # let the link's thread finish registering the breakers
    stats = redis.Redis.from_url(url)
    before = int(stats.info("stats")["total_commands_processed"])
    for _ in range(calls):
        client.fetch_ticker("BTC/USDT")
    during = int(stats.info("stats")["total_commands_processed"]) - before - 1  # minus our INFO
    print(f"Redis commands during {calls} successful calls through a closed shared breaker: {during}")
    return during


def bench_sim(url: str, calls: int = 600) -> dict[str, float]:
    """fetch_ticker over HTTP against the simulator in its own process."""
    with simulator_process("binance") as base:

        def attached() -> Any:
            return attach_url(ccxt.binance({"enableRateLimit": False}), base)

        off = HardenedClient(attached(), **SETTINGS)
        on = HardenedClient(attached(), redis_url=url, **SETTINGS)
        for client in (off, on):
            client.load_markets()
        _paired(lambda: off.fetch_ticker("BTC/USDT"), lambda: on.fetch_ticker("BTC/USDT"), 50)
        before = on._hd.shared.budget.refills
        t_off, t_on = _paired(
            lambda: off.fetch_ticker("BTC/USDT"), lambda: on.fetch_ticker("BTC/USDT"), calls
        )
        trips = on._hd.shared.budget.refills - before
        result = _report("fetch_ticker over HTTP against the simulator", t_off, t_on, trips)
        off.close()
        on.close()
    return result


def bench_lease(url: str, calls: int = 500) -> float:
    """The round trip a call pays when it needs a new lease (about one call in 50 at Binance's
    limits): the budget script, timed on the caller's thread."""
    link = RedisLink(url, 0.1)
    budget = SharedBudget(link, "binance", "bench-key", lease_share=1e-12)  # a new lease every call
    charge = [("request_weight", 1e9, 60.0, 1.0)]
    perf = time.perf_counter
    times = []
    for _ in range(calls):
        t0 = perf()
        budget.delay_before(charge, time.time())
        times.append(perf() - t0)
    link.close()
    median = statistics.median(times) * 1e6
    print("a call that takes a new budget lease (one Redis round trip, Lua script):")
    print(f"  median {median:.1f} us, p99 {sorted(times)[int(0.99 * len(times))] * 1e6:.1f} us")
    return median


def main() -> int:
    with redis_server() as url:
        bench_lease(url)
        bench_stub(url)
        disconnect_all()
        bench_breakers_only(url)
        disconnect_all()  # a fresh link and fresh leases for the second run
        bench_sim(url)
        disconnect_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
