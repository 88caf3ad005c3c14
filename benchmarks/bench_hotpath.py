"""Success path in a tight loop: what each stage costs per call, with the network taken out.

Run: ``python benchmarks/bench_hotpath.py [--calls 20000] [--profile]``.

ccxt's HTTP layer (``exchange.fetch``) is replaced by a canned Binance ``ticker/24hr`` answer
(captured from the simulator once, with its usage headers), so everything else runs as in
production: ccxt signs nothing but still builds the request, parses the answer into a ticker,
calls ``handle_errors`` (where hardened reads the status and headers), and hardened runs record,
cache (TTL 0), breaker, rate-limit bookkeeping and validation around it. Both sides get the same
canned answer, so the difference is the wrapper's cost per call.

Variants, each against raw ccxt in the same run (batches interleaved round by round, the
fastest batch of each, thread CPU microseconds per call), each turning one more part off:
``default`` (cache TTL 0 so every call reaches the exchange, everything else default),
``no_learning`` (no learning record: no gate stage), ``no_stale_copy`` (stale-if-error off too:
the cache stage then does nothing), ``no_pacing`` (rate-limit bookkeeping off), ``core``
(validation off too: record, breaker and the retry stage's first attempt) and ``driver`` (no
stage at all: the wrapper, the call context and the exchange's header hook).
``--profile`` prints cProfile's top functions for the ``default`` variant.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import ccxt
from requests.structures import CaseInsensitiveDict

from hardened.client import HardenedClient
from hardened.sim import Simulator


def canned_exchange(answer: dict[str, Any], headers: dict[str, str], markets: Any) -> Any:
    """A ccxt binance whose HTTP layer answers every request with ``answer`` at once."""
    ex = ccxt.binance({"enableRateLimit": False})
    ex.set_markets(markets)
    answer = dict(answer)
    usage = CaseInsensitiveDict(headers)

    def fetch(url: str, method: str = "GET", request_headers: Any = None, body: Any = None) -> Any:
        answer["closeTime"] = ex.milliseconds()  # fresh, or validation would call the ticker stale
        ex.handle_errors(200, "OK", url, method, usage, "", answer, request_headers, body)
        return answer

    ex.fetch = fetch
    return ex


def capture() -> tuple[dict[str, Any], dict[str, str], Any]:
    """One real ``fetch_ticker`` answer (JSON and headers) and the markets, from the simulator."""
    with Simulator("binance") as sim:
        ex = sim.attach(ccxt.binance({"enableRateLimit": False}))
        ex.load_markets()
        seen: list[Any] = []
        original = ex.fetch

        def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            seen.append(original(url, method, headers, body))
            return seen[-1]

        ex.fetch = fetch
        ex.fetch_ticker("BTC/USDT")
        usage = {k: v for k, v in ex.last_response_headers.items() if k.lower().startswith("x-mbx")}
        return seen[-1], usage, ex.markets


def per_call(contenders: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, float]:
    """CPU seconds per call of each contender: batches of ``calls`` interleaved round by round (the
    order rotating), then the fastest batch of each. Thread CPU time, not wall time: on a shared
    machine the wall clock also counts the time other processes hold the core."""
    perf = time.thread_time
    names = list(contenders)
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = contenders[name]
            t0 = perf()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], perf() - t0)
    return {name: seconds / calls for name, seconds in best.items()}


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"cache_ttl": 0},
    "no_learning": {"cache_ttl": 0, "learning_record": False},
    "no_stale_copy": {"cache_ttl": 0, "learning_record": False, "stale_if_error": 0},
    "no_pacing": {"cache_ttl": 0, "learning_record": False, "stale_if_error": 0, "rate_limit_pacing": False},
    "core": {
        "cache_ttl": 0,
        "learning_record": False,
        "stale_if_error": 0,
        "rate_limit_pacing": False,
        "quality_policy": "off",
    },
    "driver": {"stages": []},
}


def unbind_pacing(client: HardenedClient) -> None:
    """Raise the client's rate-limit pools far above what a tight loop spends.

    A loop that sends tens of thousands of calls a second would (rightly) be paced down to
    Binance's 6000 weight/min; the bookkeeping still runs on every call, only the wait never comes.
    """
    for pool in client._hd.rate_limits._pools.values():
        pool.headroom = 1e9  # survives a limit the exchange publishes in its headers
        pool.set_limit(pool.limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per batch")
    parser.add_argument("--rounds", type=int, default=40, help="batches per contender, interleaved")
    parser.add_argument("--profile", action="store_true", help="cProfile the default variant")
    args = parser.parse_args(argv)
    answer, headers, markets = capture()
    raw = canned_exchange(answer, headers, markets)
    clients = {}
    for name, overrides in VARIANTS.items():
        client = HardenedClient(canned_exchange(answer, headers, markets), **overrides)
        unbind_pacing(client)
        clients[name] = client
    contenders: dict[str, Callable[[], Any]] = {"raw": lambda: raw.fetch_ticker("BTC/USDT")}
    for name, client in clients.items():
        contenders[name] = lambda c=client: c.fetch_ticker("BTC/USDT")
    figures = per_call(contenders, args.calls, args.rounds)
    raw_us = figures.pop("raw") * 1e6
    print(f"raw ccxt fetch_ticker (canned answer): {raw_us:7.2f} us/call")
    for name, seconds in figures.items():
        us = seconds * 1e6
        print(f"hardened {name:<14} {us:7.2f} us/call, +{us - raw_us:6.2f} us over raw")
    if args.profile:
        client = clients["default"]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls * 10):
            client.fetch_ticker("BTC/USDT")
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
