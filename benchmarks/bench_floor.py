"""How close to raw ccxt any pipeline can get over HTTP, and what each real stage adds to that floor.

Run: ``python benchmarks/bench_floor.py [--calls 3000] [--exchange binance]``. Sends
``fetch_ticker`` through these contenders against the simulator in its own process, one call each
per round with the order rotating (machine drift lands on all alike), and prints each one's median
latency as a ratio to raw ccxt's with its median added CPU (paired, this thread only):

- ``empty``: a hardened client with no stages (the driver, the call context, the deadline watch);
- ``floor``: one stage doing the least a resilience layer must do on a success: read the breaker's
  state, check the ticker (``ticker_is_clean``), count the call and queue its outcome;
- ``floor+<stage>``: the floor with one real default stage added (``record``, ``gate``, ``cache``,
  ``breaker``, ``rate_limit``, ``validate``);
- ``default``: the default pipeline (cache TTL 0, rate-limit pools out of reach as in
  ``hardened bench``).

It answers "is the 1.02x target a matter of trimming": if ``floor`` already reads about 1.02, the
target leaves no room for the default stages' work (pacing, coalescing, stale-if-error, stats, the
learning record), whatever their shape.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HARDENED_LEARNING_STORE", ":memory:")

from hardened.benchmark.contenders import ENDPOINTS, Contender, build_sync, symbol_for, unbind_pacing
from hardened.benchmark.simproc import simulator_process
from hardened.pipeline import CallContext, Stage
from hardened.quality.ticker import ticker_is_clean
from hardened.sim import attach_url
from hardened.telemetry.logging import configure_logging

REAL = ("record", "gate", "cache", "breaker", "rate_limit", "validate")


class FloorStage(Stage):
    """The least work a success needs: is the circuit closed, is the ticker sane, count and queue it."""

    name = "floor"

    def __init__(self) -> None:
        self.outcomes: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=10_000)

    def on_attempt(self, ctx: CallContext) -> None:
        if ctx.rt.breaker.state != "closed":
            raise RuntimeError("the floor measures the success path only")

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        if ctx.endpoint.name == "ticker" and ctx.args:
            ticker_is_clean(result, int(time.time() * 1000), ctx.args[0])
        return result

    def on_done(self, ctx: CallContext, result: Any, error: BaseException | None) -> tuple[Any, Any]:
        ctx.rt.stats.calls += 1
        self.outcomes.append((ctx.endpoint.name, time.perf_counter() - ctx.started, error))
        return result, error


def _stages(name: str) -> Any:
    """The ``stages=`` argument of a contender (None: the defaults)."""
    if name == "empty":
        return []
    if name == "floor":
        return [FloorStage()]
    if name.startswith("floor+"):
        added = name.removeprefix("floor+")
        return lambda default: [FloorStage(), *(s for s in default if s.name == added)]
    return None


def _contender(name: str, exchange: str, url: str) -> Contender:
    if name == "raw":
        return build_sync("raw", exchange, lambda ex: attach_url(ex, url))
    overrides: dict[str, Any] = {"cache_ttl": 0}
    stages = _stages(name)
    if stages is not None:
        overrides["stages"] = stages
    built = build_sync("hardened", exchange, lambda ex: attach_url(ex, url), hardened_overrides=overrides)
    unbind_pacing(built.client)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="calls per contender")
    parser.add_argument("--exchange", default="binance", choices=["binance", "kucoin", "bitvavo"])
    args = parser.parse_args(argv)
    if args.calls < 100:
        parser.error(f"--calls must be at least 100 for a stable median, got {args.calls}")
    configure_logging("CRITICAL")
    spec = ENDPOINTS["fetch_ticker"]
    symbol = symbol_for(args.exchange)
    names = ["raw", "empty", "floor", *(f"floor+{s}" for s in REAL), "default"]
    with simulator_process(args.exchange) as url:
        built = {name: _contender(name, args.exchange, url) for name in names}
        for contender in built.values():
            contender.client.load_markets()
            for _ in range(30):
                contender.call(spec, symbol)
        wall: dict[str, list[int]] = {n: [] for n in names}
        cpu: dict[str, list[int]] = {n: [] for n in names}
        for i in range(args.calls):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                call = built[name].call
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                call(spec, symbol)
                wall[name].append(time.perf_counter_ns() - t0)
                cpu[name].append(time.thread_time_ns() - c0)
        for contender in built.values():
            contender.close()
    raw = statistics.median(wall["raw"])
    print(f"raw ccxt p50 {raw / 1000:.0f} us ({args.calls} calls each, {args.exchange} fetch_ticker)")
    for name in names[1:]:
        added = statistics.median(a - b for a, b in zip(cpu[name], cpu["raw"], strict=True))
        print(f"{name:<20} {statistics.median(wall[name]) / raw:6.3f}x   {added / 1000:+6.0f} us CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
