"""The success path: every contender calls the same endpoint, call by call, in the same run.

The simulator runs in its own process (it must not share our GIL). Round ``i`` makes one call
per contender, the order rotating from round to round, so a drift of the machine or the server
over seconds lands on every contender alike; the ratio to raw ccxt is then computed on the
paired rounds (``stats.paired_ratio``). Each call's thread CPU time is taken too: on a shared
machine the wall clock also counts the time other processes held the core, while the CPU the
caller's thread spent is what the wrapper itself adds (``added_cpu_us``). The hardened client
runs its default configuration with the cache TTL at 0, or every call after the first would be a
cache hit (those are measured apart, in ``micro.py``), and with rate-limit pacing unbound (see
``contenders.unbind_pacing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardened.benchmark.contenders import (
    CONTENDERS,
    ENDPOINTS,
    Contender,
    build_sync,
    symbol_for,
    unbind_pacing,
)
from hardened.benchmark.stats import paired_ratio, summarize
from hardened.sim import attach_url

__all__ = ["SUCCESS_OVERRIDES", "run_success"]

SUCCESS_OVERRIDES = {"cache_ttl": 0}
WARMUP_CALLS = 20


def _attach(base_url: str | None) -> Callable[[Any], Any]:
    if base_url is None:  # --live: the exchange's real public API, as ccxt ships it
        return lambda exchange: exchange
    return lambda exchange: attach_url(exchange, base_url)


def run_success(
    exchange: str,
    endpoints: Sequence[str],
    calls: int,
    base_url: str | None,
    *,
    contenders: Sequence[str] = CONTENDERS,
    advance: Callable[[int], None] | None = None,
    keep_samples: bool = True,
) -> dict[str, Any]:
    """Interleaved latencies of ``contenders`` on each of ``endpoints`` of ``exchange``.

    ``base_url`` is the simulator's (None: the real exchange, paced to its published rate).
    Returns, per endpoint, each contender's summary and, for all but raw, the ratio to raw.
    ``advance(n)`` is told of every n calls made (a progress bar).
    """
    built: dict[str, Contender] = {}
    live = base_url is None
    try:
        for name in contenders:
            built[name] = build_sync(
                name, exchange, _attach(base_url), hardened_overrides=dict(SUCCESS_OVERRIDES)
            )
            if name == "hardened" and not live:
                unbind_pacing(built[name].client)
        for contender in built.values():
            contender.client.load_markets()
        symbol = symbol_for(exchange)
        pause = 0.0
        if live:  # stay within the exchange's published rate: one call per rateLimit per contender
            pause = float(next(iter(built.values())).exchange.rateLimit) / 1000.0
        out: dict[str, Any] = {}
        for endpoint in endpoints:
            spec = ENDPOINTS[endpoint]
            for contender in built.values():
                for _ in range(WARMUP_CALLS if not live else 2):
                    contender.call(spec, symbol)  # connection up, markets parsed, code paths warm
            samples, cpu = _interleave(built, spec, symbol, calls, pause, advance)
            result: dict[str, Any] = {"calls": calls, "symbol": symbol, "contenders": {}}
            for name, times in samples.items():
                summary = summarize(times)
                summary["cpu_us"] = float(np.median(cpu[name])) * 1e6
                if name != "raw" and "raw" in samples:
                    summary.update(paired_ratio(times, samples["raw"]))
                    summary["added_cpu_us"] = float(np.median(np.subtract(cpu[name], cpu["raw"]))) * 1e6
                if keep_samples:
                    summary["samples_s"] = times
                result["contenders"][name] = summary
            out[endpoint] = result
        return out
    finally:
        for contender in built.values():
            contender.close()


def _interleave(
    built: dict[str, Contender],
    spec: Any,
    symbol: str,
    calls: int,
    pause: float,
    advance: Callable[[int], None] | None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and thread-CPU seconds of every call, per contender."""
    names = list(built)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    perf = time.perf_counter
    thread_cpu = time.thread_time
    for i in range(calls):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            call = built[name].call
            c0 = thread_cpu()
            t0 = perf()
            call(spec, symbol)
            times[name].append(perf() - t0)
            cpu[name].append(thread_cpu() - c0)
        if advance is not None:
            advance(len(names))
        if pause:
            time.sleep(pause * len(names))
    return times, cpu
