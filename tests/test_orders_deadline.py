"""An order's recovery honours ``call_deadline``: it gives up with ``OrderStateUnknown`` (the client
order id in hand) as soon as the deadline has passed or its next wait would end past it, on the sync
and the async client alike; the async pipeline never cuts an order plan off with ``DeadlineExceeded``.

The plan tests run on a fake clock that only the plan's waits move (no real sleeping); the client
tests use a deadline of a fraction of a second against the simulator.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, DeadlineExceeded, HardenedClient, OrderStateUnknown
from hardened.adapters import load_profile
from hardened.orders import OrderRecovery
from hardened.placement import Deadline, cancel_plan, create_plan, run_plan_async, run_plan_sync
from hardened.sim import Simulator
from hardened.testing import capture_events

LIMIT_BUY = ("BTC/USDT", "limit", "buy", 0.01, 10_000.0)


class FakeClock:
    """A clock that only moves when the plan waits: the waits are recorded, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class LostAnswers:
    """Every order call and every lookup times out: the order's fate is unknowable."""

    id = "binance"
    markets: dict[str, Any] = {}

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _lost(self, name: str) -> Any:
        self.calls.append(name)
        raise ccxt.RequestTimeout(f"binance {name} timed out")

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._lost("create_order")

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._lost("cancel_order")

    def fetch_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._lost("fetch_order")


def recovery() -> OrderRecovery:
    # lag 1 s: failed lookups back off 1, 2, 4, 5, 5 s; ten lookups would take 17 s without a deadline
    return OrderRecovery(load_profile("binance"), max_lookups=10, lag_ms=1000)


def test_sync_create_recovery_gives_up_before_a_wait_would_pass_the_deadline() -> None:
    clock, ex = FakeClock(), LostAnswers()
    plan = create_plan(
        ex, load_profile("binance"), recovery(), (*LIMIT_BUY, {}), {}, Deadline(3.0, 3.0, clock)
    )
    with capture_events(["order_state_unknown"]) as events, pytest.raises(OrderStateUnknown) as caught:
        run_plan_sync(plan, sleep=clock.sleep)
    assert clock.waits == [1.0]  # waited 1 s, then a 2 s wait would have ended at 4 s > 3 s
    assert clock.now <= 3.0
    assert ex.calls == ["create_order", "fetch_order", "fetch_order"]
    error = caught.value
    assert error.client_order_id and error.client_order_id.startswith("hd")
    assert "call_deadline of 3s" in str(error)
    assert [e["client_order_id"] for e in events] == [error.client_order_id]


async def test_async_create_recovery_gives_up_before_a_wait_would_pass_the_deadline() -> None:
    clock, ex = FakeClock(), LostAnswers()
    plan = create_plan(
        ex, load_profile("binance"), recovery(), (*LIMIT_BUY, {}), {}, Deadline(3.0, 3.0, clock)
    )
    with pytest.raises(OrderStateUnknown) as caught:
        await run_plan_async(plan, sleep=clock.asleep)
    assert clock.waits == [1.0] and clock.now <= 3.0
    assert ex.calls == ["create_order", "fetch_order", "fetch_order"]
    assert caught.value.client_order_id


def test_a_deadline_passed_during_the_send_looks_nothing_up() -> None:
    clock, ex = FakeClock(), LostAnswers()

    def slow_send(*args: Any, **kwargs: Any) -> Any:
        clock.now = 5.0  # the send itself took longer than the deadline
        return ex._lost("create_order")

    ex.create_order = slow_send  # type: ignore[method-assign]
    plan = create_plan(
        ex, load_profile("binance"), recovery(), (*LIMIT_BUY, {}), {}, Deadline(3.0, 3.0, clock)
    )
    with pytest.raises(OrderStateUnknown, match="passed before it could look the order up"):
        run_plan_sync(plan, sleep=clock.sleep)
    assert ex.calls == ["create_order"] and clock.waits == []


def test_cancel_recovery_honours_the_deadline_too() -> None:
    clock, ex = FakeClock(), LostAnswers()
    plan = cancel_plan(
        ex, load_profile("binance"), recovery(), ("42", "BTC/USDT"), {}, Deadline(2.5, 2.5, clock)
    )
    with pytest.raises(OrderStateUnknown) as caught:
        run_plan_sync(plan, sleep=clock.sleep)
    assert clock.waits == [1.0] and clock.now <= 2.5
    assert caught.value.order_id == "42"


async def test_async_lookups_are_cut_off_at_the_deadline() -> None:
    """A lookup that hangs is cut off when the call's time is up, and the plan gives up with the id."""

    class Hanging(LostAnswers):
        async def create_order(self, *args: Any, **kwargs: Any) -> Any:
            return self._lost("create_order")

        async def fetch_order(self, *args: Any, **kwargs: Any) -> Any:
            self.calls.append("fetch_order")
            await asyncio.Event().wait()  # never answers

    ex = Hanging()
    started = time.perf_counter()
    plan = create_plan(
        ex, load_profile("binance"), recovery(), (*LIMIT_BUY, {}), {}, Deadline(started + 0.2, 0.2)
    )
    with pytest.raises(OrderStateUnknown) as caught:
        await run_plan_async(plan)
    assert time.perf_counter() - started < 2.0
    assert ex.calls == ["create_order", "fetch_order"]
    assert caught.value.client_order_id


# --- the clients against the simulator --------------------------------------------------------

# Every create answer dropped after the order was taken; every lookup answers after a second.
SLOW_LOOKUPS = {
    "name": "slow_lookups",
    "faults": [
        {"kind": "accept_then_drop", "endpoints": ["create_order"], "probability": 1.0},
        {
            "kind": "latency",
            "endpoints": ["fetch_order"],
            "probability": 1.0,
            "latency": {"distribution": "uniform", "low": 1.0, "high": 1.0},
        },
    ],
}
SETTINGS: dict[str, Any] = {
    "learning_record": False,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "endpoints": {"create_order": {"call_deadline": 0.4}},
}


def _held(sim: Simulator, client_order_id: str) -> list[str]:
    return [o.status for o in sim.orders("binance") if o.client_order_id == client_order_id]


@pytest.mark.usefixtures("calm")
def test_sync_client_gives_up_with_the_id_at_the_deadline(sim: Simulator) -> None:
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 10_000})), **SETTINGS)
    ex.load_markets()
    sim.set_profile(SLOW_LOOKUPS)
    started = time.monotonic()
    try:
        with pytest.raises(OrderStateUnknown) as caught:
            ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
        elapsed = time.monotonic() - started
    finally:
        sim.set_profile("calm")
    assert elapsed < 1.5, elapsed  # 0.4 s deadline; the lookup back-off alone would take 12 s
    assert _held(sim, caught.value.client_order_id) == ["open"]
    ex.close()


@pytest.mark.usefixtures("calm")
async def test_async_client_gives_up_with_the_id_not_deadline_exceeded(sim: Simulator) -> None:
    inner = sim.attach(accxt.binance({"enableRateLimit": False, "timeout": 10_000}))
    async with AsyncHardenedClient(inner, **SETTINGS) as ex:
        await ex.load_markets()
        sim.set_profile(SLOW_LOOKUPS)
        started = time.monotonic()
        try:
            with (
                capture_events(["order_state_unknown"]) as events,
                pytest.raises(ccxt.NetworkError) as caught,
            ):
                await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
            elapsed = time.monotonic() - started
        finally:
            sim.set_profile("calm")
        error = caught.value
        assert isinstance(error, OrderStateUnknown), repr(error)
        assert not isinstance(error, DeadlineExceeded)
        assert elapsed < 1.5, elapsed
        assert _held(sim, error.client_order_id) == ["open"]
        assert [e["client_order_id"] for e in events] == [error.client_order_id]
