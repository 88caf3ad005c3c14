"""ccxt's order shortcuts (``create_limit_buy_order``, ``create_market_order``, ...) place their order
through the hardened ``create_order``: a client order id, a lookup after a lost answer, one pipeline
run. ``create_orders`` and ``edit_order`` have no exactly-once plan, and are never retried."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient, OrderStateUnknown
from hardened.shortcuts import order_shortcut, routed_shortcuts
from hardened.sim import Simulator

FAST: dict[str, Any] = {
    "initial_delay": 0.0,
    "jitter": 0.0,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "learning_record": False,
    "order_lookup_lag_ms": 0,
}
DROP = {"name": "drop", "faults": [{"kind": "accept_then_drop", "endpoints": ["create_order"]}]}

# name -> (call, side, type) for BTC/USDT at a price far from the market (limit orders rest)
SHORTCUTS: dict[str, tuple[Callable[[Any], Any], str, str]] = {
    "create_limit_buy_order": (
        lambda ex: ex.create_limit_buy_order("BTC/USDT", 0.01, 10_000),
        "buy",
        "limit",
    ),
    "createLimitBuyOrder": (lambda ex: ex.createLimitBuyOrder("BTC/USDT", 0.01, 10_000), "buy", "limit"),
    "create_limit_sell_order": (
        lambda ex: ex.create_limit_sell_order("BTC/USDT", 0.001, 900_000),
        "sell",
        "limit",
    ),
    "create_limit_order": (lambda ex: ex.create_limit_order("BTC/USDT", "buy", 0.01, 10_000), "buy", "limit"),
    "create_market_order": (lambda ex: ex.create_market_order("BTC/USDT", "buy", 0.001), "buy", "market"),
    "create_market_buy_order": (lambda ex: ex.create_market_buy_order("BTC/USDT", 0.001), "buy", "market"),
    "createMarketSellOrder": (lambda ex: ex.createMarketSellOrder("BTC/USDT", 0.001), "sell", "market"),
    "create_market_sell_order": (lambda ex: ex.create_market_sell_order("BTC/USDT", 0.001), "sell", "market"),
    "create_market_buy_order_with_cost": (
        lambda ex: ex.create_market_buy_order_with_cost("BTC/USDT", 20),
        "buy",
        "market",
    ),
    "create_post_only_order": (
        lambda ex: ex.create_post_only_order("BTC/USDT", "limit", "buy", 0.01, 10_000),
        "buy",
        "limit",
    ),
}


def _ours(sim: Simulator, exchange_id: str, order: Any) -> list[Any]:
    """The exchange's orders under the client order id the call returned."""
    return [o for o in sim.orders(exchange_id) if o.client_order_id == order["clientOrderId"]]


@pytest.mark.usefixtures("calm")
@pytest.mark.parametrize("name", sorted(SHORTCUTS))
def test_a_shortcut_whose_answer_is_lost_returns_the_order_it_placed_once(sim: Simulator, name: str) -> None:
    call, side, kind = SHORTCUTS[name]
    raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **FAST)
    ex.load_markets()
    sim.set_profile(DROP)
    try:
        order = call(ex)
    finally:
        sim.set_profile("calm")
    (held,) = _ours(sim, "binance", order)  # carries our client order id, placed once
    assert str(held.id) == str(order["id"]) and (held.side, held.type) == (side, kind)
    endpoints = ex.stats()["endpoints"]
    assert endpoints["create_order"]["calls"] == 1  # one pipeline run, on create_order's endpoint
    assert not any(endpoint.startswith("create_") and endpoint != "create_order" for endpoint in endpoints)
    assert "create_order" not in vars(raw)  # the shared exchange is never patched
    if held.status == "open":
        ex.cancel_order(order["id"], "BTC/USDT")
    ex.close()


@pytest.mark.usefixtures("calm")
def test_a_shortcut_whose_fate_is_unknowable_raises_order_state_unknown_with_the_id(sim: Simulator) -> None:
    ex = HardenedClient(
        sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 300})), **FAST, order_lookups=1
    )
    ex.load_markets()
    sim.set_profile(
        {
            "name": "lost",
            "faults": [
                {"kind": "accept_then_drop", "endpoints": ["create_order"]},
                {"kind": "timeout", "endpoints": ["fetch_order"], "hold": 0.4},
            ],
        }
    )
    try:
        with pytest.raises(OrderStateUnknown) as caught:
            ex.create_limit_buy_order("BTC/USDT", 0.01, 10_000)
    finally:
        sim.set_profile("calm")
    held = [o for o in sim.orders("binance") if o.client_order_id == caught.value.client_order_id]
    assert len(held) == 1
    ex.cancel_order(held[0].id, "BTC/USDT")
    ex.close()


@pytest.mark.usefixtures("calm")
@pytest.mark.parametrize("exchange_id", ["binance", "kucoin"])
async def test_async_shortcuts_go_through_the_plan(sim: Simulator, exchange_id: str) -> None:
    inner = sim.attach(getattr(accxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
    async with AsyncHardenedClient(inner, **FAST) as ex:
        await ex.load_markets()
        sim.set_profile(DROP)
        try:
            limit = await ex.create_limit_buy_order("BTC/USDT", 0.01, 10_000)
            market = await ex.createMarketBuyOrder("BTC/USDT", 0.001)
        finally:
            sim.set_profile("calm")
        for order in (limit, market):
            (held,) = _ours(sim, exchange_id, order)
            assert str(held.id) == str(order["id"])
        assert ex.stats()["endpoints"]["create_order"]["calls"] == 2
        await ex.cancel_order(limit["id"], "BTC/USDT")


@pytest.mark.usefixtures("calm")
def test_threads_sharing_a_client_each_place_their_own_shortcut_order(sim: Simulator) -> None:
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    placed: list[Any] = []
    lock = threading.Lock()

    def place(price: float) -> None:
        order = ex.create_limit_buy_order("BTC/USDT", 0.01, price)
        with lock:
            placed.append(order)

    threads = [threading.Thread(target=place, args=(10_000 + i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(o["price"] for o in placed) == [10_000 + i for i in range(6)]
    assert len({o["clientOrderId"] for o in placed}) == 6
    for order in placed:
        ex.cancel_order(order["id"], "BTC/USDT")
    ex.close()


# --- which methods are routed -----------------------------------------------------------------


def test_every_ccxt_shortcut_that_calls_create_order_is_routed() -> None:
    expected = {
        "create_limit_buy_order",
        "create_limit_order",
        "create_limit_sell_order",
        "create_market_buy_order",
        "create_market_order",
        "create_market_sell_order",
        "create_post_only_order",
        "create_reduce_only_order",
        "create_stop_limit_order",
        "create_stop_market_order",
        "create_stop_order",
        "create_market_order_with_cost",
        "create_market_buy_order_with_cost",
        "create_market_sell_order_with_cost",
        "create_trigger_order",
        "create_stop_loss_order",
        "create_take_profit_order",
        "create_trailing_amount_order",
        "create_trailing_percent_order",
        "create_order_with_take_profit_and_stop_loss",
    }
    for cls in (ccxt.binance, ccxt.kucoin, ccxt.bitvavo, accxt.binance, accxt.kucoin, accxt.bitvavo):
        assert set(routed_shortcuts(cls)) == expected, cls
    for name in ("create_order", "create_orders", "create_order_ws", "create_limit_order_ws", "edit_order"):
        assert order_shortcut(ccxt.binance, name) is None


class OwnEndpoint(ccxt.binance):
    """An exchange class whose shortcut sends on an endpoint of its own, not via create_order."""

    def create_limit_buy_order(self, symbol: str, amount: float, price: float, params: dict = {}) -> Any:  # noqa: B006
        return self.privatePostOrder(self.extend({"symbol": symbol}, params))


class ThroughCreateOrder(ccxt.binance):
    """An exchange class whose shortcut is its own, and still places through create_order."""

    def create_limit_buy_order(self, symbol: str, amount: float, price: float, params: dict = {}) -> Any:  # noqa: B006
        self.load_markets()
        return self.create_order(
            symbol, "limit", "buy", amount, price, self.extend({"timeInForce": "GTC"}, params)
        )


class Dynamic(ccxt.binance):
    """A shortcut that picks its method at run time: its calls cannot be read, so it is not routed."""

    def create_limit_buy_order(self, symbol: str, amount: float, price: float, params: dict = {}) -> Any:  # noqa: B006
        return getattr(self, "create_order")(symbol, "limit", "buy", amount, price, params)  # noqa: B009


def test_only_shortcuts_that_place_through_create_order_alone_are_routed() -> None:
    assert order_shortcut(OwnEndpoint, "create_limit_buy_order") is None
    assert (
        order_shortcut(ThroughCreateOrder, "create_limit_buy_order")
        is ThroughCreateOrder.create_limit_buy_order
    )
    assert order_shortcut(Dynamic, "create_limit_buy_order") is None
    assert order_shortcut(OwnEndpoint, "create_limit_order") is not None  # ccxt's own, untouched


# --- no plan, never retried -------------------------------------------------------------------


class Script:
    """A patched method: raises, then answers."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("edit_order", ("42", "BTC/USDT", "limit", "buy", 0.01, 10_000)),
        ("create_orders", ([{"symbol": "BTC/USDT", "type": "limit", "side": "buy", "amount": 0.01}],)),
    ],
)
def test_order_methods_without_a_plan_are_never_retried(method: str, args: tuple[Any, ...]) -> None:
    raw = ccxt.binance()
    script = Script(ccxt.RequestTimeout("lost answer"), {"id": "42"})
    setattr(raw, method, script)
    ex = HardenedClient(raw, **FAST, max_retries=5, quality_policy="off", rate_limit_pacing=False)
    with pytest.raises(ccxt.RequestTimeout):
        getattr(ex, method)(*args)
    assert script.calls == 1
    ex.close()


@pytest.mark.parametrize("method", ["edit_order", "create_orders"])
async def test_async_order_methods_without_a_plan_are_never_retried(method: str) -> None:
    raw = accxt.binance()
    calls = 0

    async def lost(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ccxt.NetworkError("connection reset")

    setattr(raw, method, lost)
    async with AsyncHardenedClient(
        raw, **FAST, max_retries=5, quality_policy="off", rate_limit_pacing=False
    ) as ex:
        with pytest.raises(ccxt.NetworkError):
            await getattr(ex, method)("42")
    assert calls == 1


def test_a_shortcut_patched_on_the_exchange_is_honoured() -> None:
    raw = ccxt.binance()
    script = Script({"id": "7", "status": "open"})
    raw.create_limit_buy_order = script
    ex = HardenedClient(raw, **FAST, quality_policy="off", rate_limit_pacing=False)
    assert ex.create_limit_buy_order("BTC/USDT", 0.01, 10_000)["id"] == "7"
    assert script.calls == 1
    ex.close()


def test_a_client_that_ran_a_shortcut_is_freed_as_soon_as_it_is_dropped() -> None:
    """No reference cycle through the cached shortcut wrapper: the registry forgets the client
    at once, not at the next garbage collection."""
    raw = ccxt.binance()
    raw.create_order = Script({"id": "1", "symbol": "BTC/USDT", "status": "open"})
    ex = HardenedClient(raw, **FAST, quality_policy="off", rate_limit_pacing=False)
    assert ex.create_limit_buy_order("BTC/USDT", 0.01, 10_000)["id"] == "1"
    gc.disable()
    try:
        ref = weakref.ref(ex)
        del ex
        assert ref() is None
    finally:
        gc.enable()


def test_a_shortcut_taken_from_a_client_outlives_the_name_it_was_taken_by() -> None:
    raw = ccxt.binance()
    raw.create_order = Script({"id": "2", "symbol": "BTC/USDT", "status": "open"})
    buy = HardenedClient(raw, **FAST, quality_policy="off", rate_limit_pacing=False).create_limit_buy_order
    assert buy("BTC/USDT", 0.01, 10_000)["id"] == "2"


@pytest.mark.usefixtures("calm")
def test_a_shortcut_calling_another_shortcut_still_places_once_through_the_plan(sim: Simulator) -> None:
    """KuCoin's create_market_buy_order_with_cost calls its create_market_order_with_cost, which
    calls create_order: both run with the stand-in self, the order goes through the plan once."""
    raw = sim.attach(ccxt.kucoin({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **FAST)
    ex.load_markets()
    sim.set_profile(DROP)
    try:
        order = ex.create_market_buy_order_with_cost("BTC/USDT", 20)
    finally:
        sim.set_profile("calm")
    (held,) = _ours(sim, "kucoin", order)
    assert str(held.id) == str(order["id"]) and held.side == "buy"
    assert ex.stats()["endpoints"]["create_order"]["calls"] == 1
    ex.close()
