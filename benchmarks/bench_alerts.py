"""What the alerts cost the code that publishes events, and how fast a burst is decided.

Run: ``.venv/bin/python benchmarks/bench_alerts.py [--n 200000]``.

1. ``bus.publish`` of an event the alert rules do not read (``stale_served``) and of one they do
   (``call_failed``), with no subscriber, with a no-op subscriber (the bus then builds the event
   dict, as it does for the status server), then with a running alert dispatcher subscribed (log
   channel to a null logger; the difference printed is to the no-op subscriber), in nanoseconds
   per publish (best of 5 rounds): the cost on the caller's thread.
2. The same while the dispatcher's only channel is stuck (its send never returns): publishing must
   not slow down; what does not fit is dropped and counted.
3. A burst of 10,000 ``breaker_transition`` opens for 100 breakers: time for the dispatcher thread to
   decide all of them, and what came out (fired, held back).

A plain script: exits 0 and prints its figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from hardened.alerts import Alert, AlertConfig, AlertDispatcher
from hardened.alerts.channels import Channel, LogChannel
from hardened.telemetry.events import EventBus


class _NullLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _Stuck(Channel):
    kind = "log"

    def __init__(self) -> None:
        super().__init__("stuck")
        self.gate = threading.Event()

    def send(self, alert: Alert) -> None:
        self.gate.wait()


def per_publish_ns(bus: EventBus, kind: str, n: int, **fields: Any) -> float:
    """The best of 5 rounds of ``n // 5`` publishes (other processes on the machine add noise)."""
    publish = bus.publish
    rounds = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n // 5):
            publish(kind, **fields)
        rounds.append((time.perf_counter_ns() - start) / (n // 5))
    return min(rounds)


FAILED = {"exchange": "binance", "endpoint": "ticker", "error": "NetworkError", "message": "reset"}
STALE = {"exchange": "binance", "endpoint": "ticker", "age_s": 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="publishes per measurement")
    args = parser.parse_args()
    n = args.n
    config = AlertConfig(alert_channels=["log"], health_interval=0, inbox_size=10_000)

    bus = EventBus()
    base_stale = per_publish_ns(bus, "stale_served", n, **STALE)
    base_failed = per_publish_ns(bus, "call_failed", n, **FAILED)
    print(
        f"1. no subscriber:            stale_served {base_stale:7.0f} ns   call_failed {base_failed:7.0f} ns"
    )
    unsubscribe = bus.subscribe(lambda event: None)  # what any subscriber costs: the bus builds the event
    noop_stale = per_publish_ns(bus, "stale_served", n, **STALE)
    noop_failed = per_publish_ns(bus, "call_failed", n, **FAILED)
    unsubscribe()
    print(
        f"   a no-op subscriber:        stale_served {noop_stale:7.0f} ns   call_failed {noop_failed:7.0f} ns"
    )
    base_stale, base_failed = noop_stale, noop_failed
    with AlertDispatcher(config, channels=[LogChannel(logger=_NullLogger())], event_bus=bus) as dispatcher:
        stale = per_publish_ns(bus, "stale_served", n, **STALE)
        failed = per_publish_ns(bus, "call_failed", n, **FAILED)
        dispatcher.wait_idle(30)
        stats = dispatcher.stats()
    print(
        f"   alert dispatcher running:  stale_served {stale:7.0f} ns   call_failed {failed:7.0f} ns"
        f"   (+{stale - base_stale:.0f} / +{failed - base_failed:.0f} ns; {stats['events']} events decided,"
        f" {stats['inbox_dropped']} refused by the full inbox)"
    )

    stuck = _Stuck()
    bus = EventBus()
    quiet = AlertConfig(
        alert_channels=["log"],
        health_interval=0,
        alert_cooldown=0.0,
        rate_limits={"critical": None, "error": None, "warning": None},
    )
    with AlertDispatcher(quiet, channels=[stuck], event_bus=bus) as dispatcher:
        publish = bus.publish
        begin = time.perf_counter_ns()
        for i in range(n):  # every one a new breaker: every one fires, none fits the stuck channel
            publish(
                "breaker_transition",
                exchange="x",
                endpoint=f"e{i}",
                breaker=f"x_e{i}",
                old="closed",
                new="open",
            )
        stuck_ns = (time.perf_counter_ns() - begin) / n
        dispatcher.wait_idle(2)
        stats = dispatcher.stats()
        stuck.gate.set()
    print(
        f"2. channel stuck, {n} alerts: {stuck_ns:7.0f} ns per publish; fired {stats['fired']}, "
        f"inbox refused {stats['inbox_dropped']}, channel dropped {stats['channels']['stuck']['dropped']}, "
        f"queued {stats['channels']['stuck']['queued']}"
    )

    bus = EventBus()
    channel = LogChannel(logger=_NullLogger())
    with AlertDispatcher(config, channels=[channel], event_bus=bus) as dispatcher:
        start = time.perf_counter()
        for i in range(10_000):
            breaker = f"binance_e{i % 100}"
            bus.publish(
                "breaker_transition",
                exchange="binance",
                endpoint=f"e{i % 100}",
                breaker=breaker,
                old="closed",
                new="open",
            )
        dispatcher.wait_idle(60)
        elapsed = time.perf_counter() - start
        stats = dispatcher.stats()
    print(
        f"3. 10,000 breaker opens (100 breakers): decided in {elapsed * 1000:.0f} ms; "
        f"fired {stats['fired']}, held back {stats['suppressed']}, inbox refused {stats['inbox_dropped']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
