"""A cancel that answers "order not found" is checked once by the order's id: a cancelled order means
the cancel's goal holds (the answer may be to a silent resend of this very cancel), anything else
keeps the exchange's ``OrderNotFound``."""

from __future__ import annotations

from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient, OrderStateUnknown
from hardened.adapters import load_profile
from hardened.orders import OrderRecovery
from hardened.placement import Deadline, cancel_plan, run_plan_sync
from hardened.sim import Simulator
from hardened.testing import heal_after_first_fault

UNKNOWN_ORDER = 'binance {"code":-2011,"msg":"Unknown order sent."}'
FAST = {
    "initial_delay": 0.01,
    "jitter": 0.0,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "learning_record": False,
}


class Scripted:
    """cancel_order and fetch_order answer, in order, what they were given (a value or an error)."""

    id = "binance"

    def __init__(self, cancel: list[Any], fetch: list[Any]) -> None:
        self.script = {"cancel_order": cancel, "fetch_order": fetch}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _next(self, name: str, args: tuple[Any, ...]) -> Any:
        self.calls.append((name, args))
        outcome = self.script[name].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._next("cancel_order", args)

    def fetch_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._next("fetch_order", args)


def cancel(ex: Scripted, deadline: Deadline | None = None) -> Any:
    profile = load_profile("binance")
    plan = cancel_plan(ex, profile, OrderRecovery(profile, lag_ms=0), ("42", "BTC/USDT"), {}, deadline)
    return run_plan_sync(plan)


@pytest.mark.parametrize("status", ["canceled", "cancelled"])
def test_not_found_but_cancelled_returns_the_cancelled_order(status: str) -> None:
    cancelled = {"id": "42", "symbol": "BTC/USDT", "status": status}
    ex = Scripted(cancel=[ccxt.OrderNotFound(UNKNOWN_ORDER)], fetch=[cancelled])
    assert cancel(ex) is cancelled
    assert ex.calls == [("cancel_order", ("42", "BTC/USDT", {})), ("fetch_order", ("42", "BTC/USDT", {}))]


@pytest.mark.parametrize(
    "lookup",
    [
        {"id": "42", "status": "closed"},  # filled: the cancel did not take
        {"id": "42", "status": "open"},
        ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}'),  # absent
        ccxt.RequestTimeout("binance fetch_order timed out"),  # unknowable
    ],
)
def test_not_found_and_not_cancelled_raises_the_original_error(lookup: Any) -> None:
    original = ccxt.OrderNotFound(UNKNOWN_ORDER)
    ex = Scripted(cancel=[original], fetch=[lookup])
    with pytest.raises(ccxt.OrderNotFound) as info:
        cancel(ex)
    assert info.value is original
    assert [name for name, _ in ex.calls] == ["cancel_order", "fetch_order"]  # looked up once


def test_not_found_past_the_deadline_is_not_looked_up() -> None:
    ex = Scripted(cancel=[ccxt.OrderNotFound(UNKNOWN_ORDER)], fetch=[])
    with pytest.raises(ccxt.OrderNotFound):
        cancel(ex, Deadline(0.0, 1.0, clock=lambda: 5.0))
    assert [name for name, _ in ex.calls] == ["cancel_order"]


def test_other_refusals_are_raised_without_a_lookup() -> None:
    ex = Scripted(cancel=[ccxt.InvalidOrder("binance -1102 Mandatory parameter")], fetch=[])
    with pytest.raises(ccxt.InvalidOrder):
        cancel(ex)
    assert [name for name, _ in ex.calls] == ["cancel_order"]


def test_a_cancel_by_client_order_id_left_unknown_names_no_exchange_id() -> None:
    """ccxt cancels by client order id with ``cancel_order(None, symbol, {"origClientOrderId": ...})``:
    given up, the error carries that id and no exchange id (it carried the text "None")."""
    lost = ccxt.RequestTimeout("binance DELETE https://api.binance.com/api/v3/order")
    ex = Scripted(cancel=[lost], fetch=[ccxt.RequestTimeout("lookup lost")] * 2)
    profile = load_profile("binance")
    args = (None, "BTC/USDT", {"origClientOrderId": "bot-7"})
    plan = cancel_plan(ex, profile, OrderRecovery(profile, max_lookups=2, lag_ms=0), args, {})
    with pytest.raises(OrderStateUnknown) as info:
        run_plan_sync(plan, sleep=lambda seconds: None)
    assert info.value.order_id is None
    assert info.value.client_order_id == "bot-7"
    assert "None" not in str(info.value)


# --- against the simulator --------------------------------------------------------------------


@pytest.mark.usefixtures("calm")
def test_cancelling_a_cancelled_order_returns_it_and_a_filled_one_still_raises(sim: Simulator) -> None:
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    placed = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    ex.cancel_order(placed["id"], "BTC/USDT")
    again = ex.cancel_order(placed["id"], "BTC/USDT")  # the exchange answers "unknown order"
    assert again["id"] == placed["id"] and again["status"] == "canceled"
    filled = ex.create_order("BTC/USDT", "market", "buy", 0.001)
    assert filled["status"] == "closed"
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(filled["id"], "BTC/USDT")
    ex.close()


@pytest.mark.usefixtures("calm")
def test_a_cancel_settled_by_absence_returns_ccxts_order_structure(sim: Simulator) -> None:
    """A cancel whose answer was lost and whose order no lookup finds is done; what it returns has
    every key of the order ccxt's cancel_order returns (it was a bare id/symbol/status dict)."""
    ex = HardenedClient(
        sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})),
        **FAST,
        order_lookup_lag_ms=0,
    )
    ex.load_markets()
    placed = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    answered = ex.cancel_order(placed["id"], "BTC/USDT")
    sim.set_profile({"name": "drop", "faults": [{"kind": "accept_then_drop", "endpoints": ["cancel_order"]}]})
    heal = heal_after_first_fault(sim, "binance", "cancel_order")
    try:
        settled = ex.cancel_order("987654321", "BTC/USDT")  # no such order: absent after the lag
    finally:
        heal.join()
        sim.set_profile("calm")
    assert set(answered) <= set(settled)
    assert settled["id"] == "987654321" and settled["status"] == "canceled"
    assert settled["filled"] is None and settled["info"] == {}
    ex.close()


async def test_async_cancel_whose_answer_was_dropped_and_resent_is_not_order_not_found() -> None:
    """aiohttp resends a DELETE whose answer was dropped on a kept-alive connection; the resend
    answers "unknown order" although this call cancelled the order. Seeded: the scenario happens."""
    with Simulator(exchange="binance", seed=5) as sim:
        inner = sim.attach(accxt.binance({"enableRateLimit": False, "timeout": 3000}))
        async with AsyncHardenedClient(inner, **FAST, order_lookup_lag_ms=50) as ex:
            await ex.load_markets()
            orders = [await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000) for _ in range(8)]
            sim.clear_ground_truth()
            sim.set_profile(
                {
                    "name": "drop",
                    "faults": [
                        {"kind": "accept_then_drop", "endpoints": ["cancel_order"], "probability": 0.5}
                    ],
                }
            )
            results = [await ex.cancel_order(o["id"], "BTC/USDT") for o in orders]
            sim.set_profile("calm")
            deletes = [
                (g["path"], g["outcome"], g["status"])
                for g in sim.ground_truth()
                if g["endpoint"] == "cancel_order"
            ]
        status = {o.id: o.status for o in sim.orders("binance")}
    assert all(status[o["id"]] == "canceled" for o in orders)
    assert all(r["status"] == "canceled" for r in results)
    resent = [
        o["id"]
        for o in orders
        if [(outcome, code) for path, outcome, code in deletes if f"orderId={o['id']}" in path]
        == [("dropped", None), ("ok", 400)]
    ]
    assert resent, deletes  # at least one cancel met "unknown order" on its silent resend
