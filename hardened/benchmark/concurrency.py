"""Async concurrency: 1, 10, 100 callers sharing one async client, raw ccxt beside hardened.

At each level, ``callers`` tasks share one client (one aiohttp session) and take calls from a
common count until ``calls`` are done; throughput is calls per wall second and p99 the latency
one caller saw. Contenders alternate block by block (``rounds`` blocks each) so both meet the
same machine. Hardened runs its default configuration with cache TTL 0 (pacing unbound, see
``contenders.unbind_pacing``); identical calls in flight at once still share one request (its
coalescing), which is why the requests it sends are counted beside its calls, and why a second
hardened row with stale-if-error off too (nothing cacheable, nothing shared) shows the
pipeline's own cost under load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from hardened.benchmark.contenders import ENDPOINTS, Contender, build_async, symbol_for, unbind_pacing
from hardened.benchmark.stats import summarize
from hardened.sim import attach_url

__all__ = ["LEVELS", "run_concurrency"]

LEVELS = (1, 10, 100)
# hardened as configured by default (cache TTL 0 here), and with stale-if-error off as well, so that
# nothing is cacheable and no two calls share a request: the pipeline's own cost under load.
ASYNC_CONTENDERS: dict[str, dict[str, Any] | None] = {
    "raw": None,
    "hardened": {"cache_ttl": 0},
    "hardened_uncoalesced": {"cache_ttl": 0, "stale_if_error": 0},
}


def _count_requests(exchange: Any) -> list[int]:
    sent = [0]
    original = exchange.fetch

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return await original(*args, **kwargs)

    exchange.fetch = fetch
    return sent


def _split(calls: int, rounds: int) -> list[int]:
    """``calls`` shared out over at most ``rounds`` blocks, none empty: every call asked for is
    made (``calls // rounds`` per block would drop the remainder, 8 of 10 with 4 rounds)."""
    rounds = max(1, min(rounds, calls))
    share, extra = divmod(calls, rounds)
    return [share + (1 if r < extra else 0) for r in range(rounds)]


async def _block(
    contender: Contender, spec: Any, symbol: str, callers: int, calls: int
) -> tuple[float, list[float]]:
    """``calls`` calls by ``callers`` tasks; returns (wall seconds, latencies)."""
    left = [calls]
    latencies: list[float] = []
    perf = time.perf_counter

    async def caller() -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = perf()
            await contender.call(spec, symbol)
            latencies.append(perf() - t0)

    t0 = perf()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return perf() - t0, latencies


async def _run(
    exchange: str,
    base_url: str | None,
    endpoint: str,
    levels: Sequence[int],
    calls: int,
    rounds: int,
    advance: Callable[[int], None] | None,
) -> dict[str, Any]:
    attach: Callable[[Any], Any] = (
        (lambda ex: ex) if base_url is None else (lambda ex: attach_url(ex, base_url))
    )
    built: dict[str, Contender] = {}
    sent: dict[str, list[int]] = {}
    try:
        for name, overrides in ASYNC_CONTENDERS.items():
            built[name] = build_async(name, exchange, attach, hardened_overrides=overrides)
            if overrides is not None and base_url is not None:
                unbind_pacing(built[name].client)
            await built[name].client.load_markets()
            sent[name] = _count_requests(built[name].exchange)
        spec = ENDPOINTS[endpoint]
        symbol = symbol_for(exchange)
        for contender in built.values():  # warm: connections open, code paths hot
            await _block(contender, spec, symbol, 10, 50)
        out: dict[str, Any] = {"exchange": exchange, "endpoint": endpoint, "levels": {}}
        blocks = _split(calls, rounds)
        for callers in levels:
            walls = dict.fromkeys(built, 0.0)
            lat: dict[str, list[float]] = {name: [] for name in built}
            before = {name: sent[name][0] for name in built}
            for r, per_block in enumerate(blocks):
                order = list(built) if r % 2 == 0 else list(reversed(built))
                for name in order:
                    wall, latencies = await _block(built[name], spec, symbol, callers, per_block)
                    walls[name] += wall
                    lat[name] += latencies
                    if advance is not None:
                        advance(per_block)
            level: dict[str, Any] = {}
            for name in built:
                summary = summarize(lat[name])
                summary["throughput_per_s"] = len(lat[name]) / walls[name] if walls[name] else None
                summary["requests_sent"] = sent[name][0] - before[name]
                level[name] = summary
            out["levels"][str(callers)] = level
        return out
    finally:
        for contender in built.values():
            await contender.close()


def run_concurrency(
    exchange: str,
    base_url: str | None,
    endpoint: str = "fetch_ticker",
    levels: Sequence[int] = LEVELS,
    calls: int = 1000,
    rounds: int = 4,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Throughput and latency at each concurrency level (``calls`` per contender per level)."""
    return asyncio.run(_run(exchange, base_url, endpoint, levels, calls, rounds, advance))
