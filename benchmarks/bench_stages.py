"""What each stage costs where it runs: right after a real HTTP answer, not in a tight loop.

Run: ``python benchmarks/bench_stages.py [--calls 1000] [--exchange binance]``. Wraps the hooks of
the record, breaker, rate-limit and validation stages with a nanosecond timer, sends ``--calls``
``fetch_ticker`` calls through a default hardened client (cache TTL 0, stale-if-error 0 so the
cache stage does nothing, pacing unbound) against the simulator in its own process, and prints
the median and p90 of each hook. In a tight loop (``bench_hotpath.py``) the same hooks cost several
times less: after each network wait the CPU's caches are cold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from hardened.benchmark.contenders import ENDPOINTS, build_sync, symbol_for, unbind_pacing
from hardened.benchmark.simproc import simulator_process
from hardened.pipeline.breaker_stage import BreakerStage
from hardened.pipeline.ratelimit_stage import RateLimitStage
from hardened.pipeline.record import RecordStage
from hardened.pipeline.validate import ValidateStage
from hardened.sim import attach_url
from hardened.telemetry.logging import configure_logging

HOOKS = [
    (RecordStage, "on_done"),
    (BreakerStage, "on_attempt"),
    (BreakerStage, "on_result"),
    (RateLimitStage, "on_attempt"),
    (RateLimitStage, "on_result"),
    (ValidateStage, "on_result"),
]


def timed(cls: type, hook: str, into: list[int]) -> Callable[..., Any]:
    """``cls.hook`` with its duration (ns) appended to ``into`` at each call."""
    original = getattr(cls, hook)
    clock = time.perf_counter_ns

    def hook_timed(self: Any, *args: Any) -> Any:
        t0 = clock()
        try:
            return original(self, *args)
        finally:
            into.append(clock() - t0)

    return hook_timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--exchange", default="binance", choices=["binance", "kucoin", "bitvavo"])
    args = parser.parse_args(argv)
    configure_logging("CRITICAL")
    times: dict[str, list[int]] = {}
    for cls, hook in HOOKS:
        times[f"{cls.__name__}.{hook}"] = samples = []
        setattr(cls, hook, timed(cls, hook, samples))
    spec = ENDPOINTS["fetch_ticker"]
    symbol = symbol_for(args.exchange)
    with simulator_process(args.exchange) as url:
        contender = build_sync(
            "hardened",
            args.exchange,
            lambda ex: attach_url(ex, url),
            hardened_overrides={"cache_ttl": 0, "stale_if_error": 0},
        )
        unbind_pacing(contender.client)
        contender.client.load_markets()
        for _ in range(50):
            contender.call(spec, symbol)
        for samples in times.values():
            samples.clear()
        for _ in range(args.calls):
            contender.call(spec, symbol)
        contender.close()
    for name, samples in times.items():
        ordered = sorted(samples)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{name:<28} median {statistics.median(ordered) / 1000:7.1f} us   p90 {p90 / 1000:7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
