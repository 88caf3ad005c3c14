"""Another bot process for tests/test_shared_state.py: a hardened client on the same simulator and Redis.

    python tests/shared_worker.py ROLE '{"sim_url": ..., "redis_url": ..., ...}'

Prints one ``REPORT {json}`` line per report on stdout (``{"ready": true}`` first) so the test can follow it.
Roles:
- ``follower``: waits until its ``binance_ticker`` breaker opens (tripped by another process),
  reports when, tries one ticker (it must be refused without a request), counts three errors
  of its own in the tracker and flushes them to the group's counters.
- ``burst``: at the epoch second ``go``, ``threads`` threads each ask for ``calls`` tickers;
  reports how many were answered and how many were refused for the budget.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import ccxt

from hardened import CircuitOpenError, HardenedClient, RateLimitBackoff
from hardened.sim.server import attach_url
from hardened.telemetry.tracker import tracker

NO_CACHE = {"cache_ttl": 0.0, "stale_if_error": 0.0, "quality_policy": "off", "max_retries": 0}


def say(**fields: Any) -> None:
    print("REPORT " + json.dumps(fields), flush=True)  # log lines go to stdout too


def client(args: dict[str, Any], **settings: Any) -> HardenedClient:
    exchange = attach_url(ccxt.binance({"enableRateLimit": False, "timeout": 3000}), args["sim_url"])
    return HardenedClient(exchange, redis_url=args.get("redis_url"), **{**NO_CACHE, **settings})


def follower(args: dict[str, Any]) -> None:
    ex = client(args)
    ex.load_markets()
    say(ready=True)
    breaker = ex.breakers["binance_ticker"]
    deadline = time.monotonic() + args.get("wait_s", 10.0)
    while breaker.state != "open" and time.monotonic() < deadline:
        time.sleep(0.002)
    say(seen_at=time.time(), state=breaker.state)
    try:
        ex.fetch_ticker("BTC/USDT")
        refused = False
    except CircuitOpenError:
        refused = True
    for _ in range(3):
        tracker.record("SharedWorkerError", "ticker")
    ex._hd.shared.counters.flush()
    say(refused=refused)


def burst(args: dict[str, Any]) -> None:
    ex = client(args, rate_limit_headroom=args["headroom"], max_delay=0.3, initial_delay=0.01)
    ex.inner.set_markets(args["markets"])  # no exchangeInfo request: only tickers spend the budget
    say(ready=True)
    time.sleep(max(0.0, args["go"] - time.time()))
    counts = {"ok": 0, "refused": 0, "other": 0}
    lock = threading.Lock()

    def run() -> None:
        for _ in range(args["calls"]):
            try:
                ex.fetch_ticker("BTC/USDT")
                outcome = "ok"
            except RateLimitBackoff:
                outcome = "refused"
            except ccxt.BaseError:
                outcome = "other"
            with lock:
                counts[outcome] += 1

    threads = [threading.Thread(target=run) for _ in range(args["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    say(**counts)


if __name__ == "__main__":
    {"follower": follower, "burst": burst}[sys.argv[1]](json.loads(sys.argv[2]))
