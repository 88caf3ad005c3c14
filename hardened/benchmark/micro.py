"""Two figures of the hardened client alone: a cache hit against a raw call, and a refusal of an
open breaker (the fail-fast path), each timed call by call against the simulator."""

from __future__ import annotations

import time
from typing import Any

import ccxt

from hardened.benchmark.contenders import ENDPOINTS, benchmark_config, symbol_for, unbind_pacing
from hardened.benchmark.stats import summarize
from hardened.client import HardenedClient
from hardened.errors import CircuitOpenError
from hardened.sim import attach_url

__all__ = ["run_micro"]


def run_micro(exchange: str, base_url: str, calls: int = 1000) -> dict[str, Any]:
    """Cache hit vs raw ``fetch_ticker`` (target: 50x faster or more) and the time an open breaker
    takes to refuse a call (target: well under a millisecond), both in microseconds."""
    spec = ENDPOINTS["fetch_ticker"]
    symbol = symbol_for(exchange)
    raw = attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base_url)
    cached = HardenedClient(
        attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base_url), config=benchmark_config()
    )
    refusing = HardenedClient(
        attach_url(getattr(ccxt, exchange)({"enableRateLimit": False}), base_url), config=benchmark_config()
    )
    unbind_pacing(cached)  # the simulator's weight count is shared by every client on loopback
    unbind_pacing(refusing)
    perf = time.perf_counter
    try:
        for client in (raw, cached, refusing):
            client.load_markets()
        raw_times: list[float] = []
        hit_times: list[float] = []
        cached.fetch_ticker(symbol)
        ttl = cached._hd.runtime(spec.endpoint).ttl
        for _ in range(calls):  # interleaved; the few calls that find the entry aged out (TTL) are misses
            t0 = perf()
            raw.fetch_ticker(symbol)
            raw_times.append(perf() - t0)
            t0 = perf()
            cached.fetch_ticker(symbol)
            hit_times.append(perf() - t0)
        hits = cached._hd.stats_by_endpoint[spec.endpoint].cache_hits
        refusing._hd.runtime(spec.endpoint).breaker.force_open()
        refused: list[float] = []
        for _ in range(calls):
            t0 = perf()
            try:
                refusing.fetch_ticker(symbol)
            except CircuitOpenError:
                refused.append(perf() - t0)
        raw_summary = summarize(raw_times)
        hit_summary = summarize(hit_times)
        return {
            "raw": raw_summary,
            "cache_hit": hit_summary,
            "cache_hits": hits,
            "cache_ttl_s": ttl,
            "cache_speedup": raw_summary["p50_us"] / hit_summary["p50_us"],
            "open_breaker": summarize(refused),
            "open_breaker_refusals": len(refused),
        }
    finally:
        for client in (raw, cached, refusing):
            client.close()
