"""Helpers for testing bots against the simulator with pytest, as hardened tests itself.

    pytest_plugins = ["hardened.testing"]     # in your conftest.py: the fixtures below

    def test_my_bot_survives_a_storm(exchange_sim, make_exchange):
        ex = make_exchange("binance")          # a HardenedClient attached to the simulator
        exchange_sim.set_profile("storm")
        run_my_bot(ex)

``capture_events()`` records what the client publishes (breaker transitions, stale answers,
quality failures), like ``structlog.testing.capture_logs`` does for log lines.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ccxt

from hardened.client import HardenedClient
from hardened.sim import Simulator
from hardened.telemetry.events import bus

__all__ = ["capture_events", "exchange_sim", "exchange_sim_server", "heal_after_first_fault", "make_exchange"]


@contextlib.contextmanager
def capture_events(kinds: Iterable[str] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Collect the events published while the block runs (only ``kinds`` if given)."""
    wanted = set(kinds) if kinds is not None else None
    events: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> None:
        if wanted is None or event["kind"] in wanted:
            events.append(event)

    unsubscribe = bus.subscribe(keep)
    try:
        yield events
    finally:
        unsubscribe()


def heal_after_first_fault(
    sim: Simulator, exchange_id: str, endpoint: str, timeout: float = 10.0
) -> threading.Thread:
    """Switch the simulator to ``calm`` as soon as one faulted request of ``endpoint`` was answered.

    Makes "fails once, then recovers" deterministic whatever the timing: start it, then make the
    call; join the returned thread afterwards. Only requests made after it started count.
    """
    started = time.time()

    def faulted(record: dict[str, Any]) -> bool:
        return (
            record["ts"] >= started
            and record["exchange"] == exchange_id
            and record["endpoint"] == endpoint
            and bool(record["fault_kind"])
        )

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(faulted(record) for record in sim.ground_truth()):
                sim.set_profile("calm")
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, name="heal-after-first-fault", daemon=True)
    thread.start()
    return thread


try:  # the fixtures need pytest; capture_events and heal_after_first_fault do not
    import pytest
except ImportError:  # pragma: no cover - pytest is a test dependency
    pytest = None  # type: ignore[assignment]


def _fixture(*args: Any, **kwargs: Any) -> Any:
    if pytest is None:
        return lambda fn: fn
    return pytest.fixture(*args, **kwargs)


@_fixture(scope="module")
def exchange_sim_server() -> Iterator[Simulator]:
    """The simulator behind ``exchange_sim``: Binance, KuCoin and Bitvavo on a free loopback port,
    started once per module."""
    with Simulator(exchanges=["binance", "kucoin", "bitvavo"], seed=1) as sim:
        yield sim


@_fixture()
def exchange_sim(exchange_sim_server: Simulator) -> Iterator[Simulator]:
    """A calm simulator for each test: the module's server, set back to the default profile before
    and after the test (a storm one test sets ends with it); its orders and balances carry over."""
    exchange_sim_server.set_profile(None)
    yield exchange_sim_server
    exchange_sim_server.set_profile(None)


@_fixture()
def make_exchange(exchange_sim: Simulator) -> Iterator[Callable[..., HardenedClient]]:
    """Build HardenedClients attached to ``exchange_sim``; they are closed after the test."""
    made: list[HardenedClient] = []

    def make(exchange_id: str = "binance", **settings: Any) -> HardenedClient:
        raw = exchange_sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
        client = HardenedClient(raw, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
