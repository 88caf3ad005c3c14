"""Recovery checks that the order found by client order id is the order asked for, and one client
never has two create_order calls in flight with the same id."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, ClientOrderIdConflict, ClientOrderIdInUse, HardenedClient
from hardened.adapters import load_profile
from hardened.orders import OrderRecovery
from hardened.placement import cancel_plan, create_plan, run_plan_async, run_plan_sync
from hardened.sim import Simulator
from hardened.testing import heal_after_first_fault

FAST = {
    "initial_delay": 0.01,
    "jitter": 0.0,
    "rate_limit_delay": 0.0,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "order_lookup_lag_ms": 0,
}


# --- the plan against a scripted exchange (no network) ----------------------------------------


class Scripted:
    """A stand-in exchange: each method pops its next outcome (a value, or an exception to raise)."""

    id = "binance"
    precisionMode = ccxt.TICK_SIZE

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.markets = {"BTC/USDT": {"precision": {"amount": 0.00001, "price": 0.01}}}

    def _next(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, args, kwargs))
        outcome = self.script[name].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._next("create_order", args, kwargs)

    def fetch_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._next("fetch_order", args, kwargs)

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._next("cancel_order", args, kwargs)


def order(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "42",
        "symbol": "BTC/USDT",
        "type": "limit",
        "side": "buy",
        "amount": 0.01,
        "price": 10_000.0,
        "status": "open",
        "clientOrderId": "mine-1",
        "info": {"orderId": 42},
    }
    return {**base, **fields}


def place(exchange: Scripted, *args: Any, cid: str = "mine-1") -> Any:
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    params = {"newClientOrderId": cid}
    return run_plan_sync(create_plan(exchange, load_profile("binance"), recovery, (*args, params), {}))


LIMIT_BUY = ("BTC/USDT", "limit", "buy", 0.01, 10_000.0)


def test_a_found_order_that_matches_is_returned() -> None:
    ex = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(amount=0.0100000001)])
    assert place(ex, *LIMIT_BUY)["id"] == "42"


@pytest.mark.parametrize(
    ("found", "fields"),
    [
        (order(side="sell"), {"side"}),
        (order(amount=0.02), {"amount"}),
        (order(price=10_500.0), {"price"}),
        (order(symbol="ETH/USDT"), {"symbol"}),
        (order(side="sell", price=9_000.0), {"side", "price"}),
    ],
)
def test_a_found_order_of_another_request_is_a_conflict_naming_the_fields(
    found: dict[str, Any], fields: set[str]
) -> None:
    ex = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[found])
    with pytest.raises(ClientOrderIdConflict) as info:
        place(ex, *LIMIT_BUY)
    assert isinstance(info.value, ccxt.InvalidOrder)
    assert set(info.value.mismatched) == fields
    for name in fields:
        assert name in str(info.value)


def test_amounts_are_compared_within_the_markets_precision() -> None:
    within = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(amount=0.012345)])
    assert place(within, "BTC/USDT", "limit", "buy", 0.0123456, 10_000.0)["id"] == "42"
    beyond = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(amount=0.01232)])
    with pytest.raises(ClientOrderIdConflict, match="amount"):
        place(beyond, "BTC/USDT", "limit", "buy", 0.0123456, 10_000.0)


def test_the_price_of_a_market_order_is_not_compared() -> None:
    ex = Scripted(
        create_order=[ccxt.RequestTimeout("lost")],
        fetch_order=[order(type="market", price=10_123.0, status="closed")],
    )
    assert place(ex, "BTC/USDT", "market", "buy", 0.01, None)["id"] == "42"


@pytest.mark.parametrize("param", ["cost", "quoteOrderQty"])
def test_an_order_sized_by_its_cost_is_not_compared_by_amount(param: str) -> None:
    """create_market_buy_order_with_cost passes the cost as the amount: the order found holds the
    base amount it bought, which is no mismatch."""
    ex = Scripted(
        create_order=[ccxt.RequestTimeout("lost")],
        fetch_order=[order(type="market", amount=0.0004, price=49_000.0, status="closed")],
    )
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    args = ("BTC/USDT", "market", "buy", 20.0, None, {param: 20.0})
    assert run_plan_sync(create_plan(ex, load_profile("binance"), recovery, args, {}))["id"] == "42"
    wrong_side = Scripted(
        create_order=[ccxt.RequestTimeout("lost")],
        fetch_order=[order(type="market", side="sell", amount=0.0004, status="closed")],
    )
    with pytest.raises(ClientOrderIdConflict, match="side"):
        run_plan_sync(create_plan(wrong_side, load_profile("binance"), recovery, args, {}))


def test_a_resend_refused_as_a_repeated_id_never_returns_another_requests_order() -> None:
    ex = Scripted(
        create_order=[
            ccxt.RequestTimeout("lost"),
            ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'),
        ],
        fetch_order=[ccxt.OrderNotFound("binance -2013 Order does not exist."), order(price=12_000.0)],
    )
    with pytest.raises(ClientOrderIdConflict, match="price"):
        place(ex, *LIMIT_BUY)
    assert [name for name, _, _ in ex.calls] == ["create_order", "fetch_order", "create_order", "fetch_order"]


def test_a_create_answer_without_an_order_id_is_a_lost_answer() -> None:
    ex = Scripted(create_order=[order(id=None, status=None, info={})], fetch_order=[order()])
    assert place(ex, *LIMIT_BUY)["id"] == "42"
    assert [name for name, _, _ in ex.calls] == ["create_order", "fetch_order"]


def test_a_lookup_answer_without_an_order_id_is_not_an_order() -> None:
    ex = Scripted(
        create_order=[ccxt.RequestTimeout("lost")],
        fetch_order=[order(id=None, info="<html>"), order()],
    )
    assert place(ex, *LIMIT_BUY)["id"] == "42"
    assert [name for name, _, _ in ex.calls] == ["create_order", "fetch_order", "fetch_order"]


# --- an earlier order that reused the id ----------------------------------------------------


def now_ms() -> float:
    return time.time() * 1000.0


def test_a_found_order_stamped_before_the_send_is_an_earlier_order_not_resent_over() -> None:
    earlier = order(status="closed", timestamp=now_ms() - 60_000)
    ex = Scripted(
        create_order=[ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")], fetch_order=[earlier]
    )
    with pytest.raises(ClientOrderIdConflict, match="an earlier order: its timestamp") as info:
        place(ex, *LIMIT_BUY)
    assert isinstance(info.value, ccxt.DuplicateOrderId)
    assert info.value.earlier and info.value.order_id == "42"
    not_before, stamp = info.value.mismatched["timestamp"]
    assert stamp == round(earlier["timestamp"]) and not_before > stamp
    assert [name for name, _, _ in ex.calls] == ["create_order", "fetch_order"]  # never resent


def test_a_found_order_stamped_within_the_clock_skew_allowance_is_ours() -> None:
    ex = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(timestamp=now_ms() - 2_000)])
    assert place(ex, *LIMIT_BUY)["id"] == "42"


def test_a_found_order_without_a_timestamp_is_judged_by_its_fields_as_before() -> None:
    ex = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(timestamp=None)])
    assert place(ex, *LIMIT_BUY)["id"] == "42"


def test_the_exchanges_time_difference_moves_the_line() -> None:
    """Our clock 20 s ahead of the exchange's (ccxt's timeDifference after a resync): the order this
    call placed carries a timestamp 20 s before our send, and is ours."""
    stamped = now_ms() - 20_000
    ahead = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(timestamp=stamped)])
    ahead.options = {"timeDifference": 20_000}
    assert place(ahead, *LIMIT_BUY)["id"] == "42"
    unknown = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order(timestamp=stamped)])
    unknown.options = {"timeDifference": 0}
    with pytest.raises(ClientOrderIdConflict, match="an earlier order"):
        place(unknown, *LIMIT_BUY)


def test_bitvavo_allows_for_its_whole_request_window() -> None:
    """ccxt signs Bitvavo requests with our raw clock, and Bitvavo accepts any skew within the
    window (widened to 60 s after a clock error): an order 30 s "early" may be this call's."""
    profile = load_profile("bitvavo")
    ex = Scripted(
        create_order=[ccxt.RequestTimeout("lost")],
        fetch_order=[order(symbol="BTC/EUR", timestamp=now_ms() - 30_000)],
    )
    ex.id = "bitvavo"
    ex.markets = {"BTC/EUR": {"precision": {"amount": 0.00001, "price": 0.01}}}
    ex.options = {"recvWindow": 60_000}
    recovery = OrderRecovery(profile, lag_ms=0)
    args = ("BTC/EUR", "limit", "buy", 0.01, 10_000.0, {})
    assert run_plan_sync(create_plan(ex, profile, recovery, args, {}))["id"] == "42"
    ex.script = {
        "create_order": [ccxt.RequestTimeout("lost")],
        "fetch_order": [order(timestamp=now_ms() - 90_000)],
    }
    ex.script["fetch_order"][0]["symbol"] = "BTC/EUR"
    with pytest.raises(ClientOrderIdConflict, match="an earlier order"):
        run_plan_sync(create_plan(ex, profile, recovery, args, {}))


def test_an_order_an_earlier_call_of_this_client_returned_is_an_earlier_order_however_recent() -> None:
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    profile = load_profile("binance")
    args = (*LIMIT_BUY, {"clientOrderId": "bot-1"})
    first = order(status="closed", timestamp=now_ms(), clientOrderId="bot-1")
    ex = Scripted(create_order=[first, ccxt.RequestTimeout("lost")], fetch_order=[dict(first)])
    assert run_plan_sync(create_plan(ex, profile, recovery, args, {}))["id"] == "42"
    with pytest.raises(
        ClientOrderIdConflict, match="an earlier create_order of this client returned it"
    ) as info:
        run_plan_sync(create_plan(ex, profile, recovery, args, {}))
    assert info.value.earlier and info.value.order_id == "42"
    assert [name for name, _, _ in ex.calls] == ["create_order", "create_order", "fetch_order"]
    # a new order under the reused id (another exchange id) is this call's
    ex.script = {
        "create_order": [ccxt.RequestTimeout("lost")],
        "fetch_order": [order(id="43", timestamp=now_ms())],
    }
    assert run_plan_sync(create_plan(ex, profile, recovery, args, {}))["id"] == "43"


# --- two calls with the same id in flight ---------------------------------------------------


class Blocking(Scripted):
    """create_order blocks until released, so a second call surely overlaps the first."""

    def __init__(self) -> None:
        super().__init__(create_order=[order()])
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        assert self.release.wait(5)
        return super().create_order(*args, **kwargs)


def test_a_second_call_with_an_id_in_flight_is_refused_and_the_id_freed_after() -> None:
    ex = Blocking()
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    profile = load_profile("binance")

    def send() -> Any:
        return run_plan_sync(create_plan(ex, profile, recovery, (*LIMIT_BUY, {"clientOrderId": "same"}), {}))

    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(send()))
    first.start()
    assert ex.entered.wait(5)
    with pytest.raises(ClientOrderIdInUse, match="same") as info:
        send()
    assert isinstance(info.value, ccxt.InvalidOrder)
    ex.release.set()
    first.join(5)
    assert results[0]["id"] == "42"
    ex.script["create_order"].append(order(id="43"))
    assert send()["id"] == "43"  # released when the first call ended


def test_an_id_is_freed_when_the_call_fails() -> None:
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    profile = load_profile("binance")
    ex = Scripted(create_order=[ccxt.InsufficientFunds("no money"), order()])
    args = (*LIMIT_BUY, {"clientOrderId": "again"})
    with pytest.raises(ccxt.InsufficientFunds):
        run_plan_sync(create_plan(ex, profile, recovery, args, {}))
    assert run_plan_sync(create_plan(ex, profile, recovery, args, {}))["id"] == "42"


async def test_async_tasks_with_the_same_id_do_not_share_an_order() -> None:
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    profile = load_profile("binance")
    release = asyncio.Event()

    class Slow(Scripted):
        async def create_order(self, *args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return Scripted.create_order(self, *args, **kwargs)

    ex = Slow(create_order=[order()])
    args = (*LIMIT_BUY, {"clientOrderId": "same"})
    first = asyncio.create_task(run_plan_async(create_plan(ex, profile, recovery, args, {})))
    await asyncio.sleep(0)
    with pytest.raises(ClientOrderIdInUse):
        await run_plan_async(create_plan(ex, profile, recovery, args, {}))
    release.set()
    assert (await first)["id"] == "42"


async def test_a_cancelled_task_frees_its_id() -> None:
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    profile = load_profile("binance")

    class Never(Scripted):
        async def create_order(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.Event().wait()

    args = (*LIMIT_BUY, {"clientOrderId": "same"})
    task = asyncio.create_task(run_plan_async(create_plan(Never(), profile, recovery, args, {})))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ex = Scripted(create_order=[order()])
    assert (await run_plan_async(create_plan(ex, profile, recovery, args, {})))["id"] == "42"


# --- against the simulator --------------------------------------------------------------------

SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}
USER_ID = {
    "binance": "user-order-7",
    "kucoin": "user-order-7",
    "bitvavo": "a1b2c3d4-0000-4000-8000-00000000abcd",
}


@pytest.mark.usefixtures("calm")
@pytest.mark.parametrize("exchange_id", ("binance", "kucoin", "bitvavo"))
def test_a_lost_answer_never_returns_the_order_another_request_placed_under_the_id(
    sim: Simulator, exchange_id: str
) -> None:
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **FAST)
    ex.load_markets()
    symbol = SYMBOL[exchange_id]
    cid = USER_ID[exchange_id]
    first = ex.create_order(symbol, "limit", "buy", 0.01, 10_000, {"clientOrderId": cid})
    try:
        # The same id again for another price, and its answer lost: the lookup finds the first order.
        sim.set_profile(
            {"name": "drop", "faults": [{"kind": "accept_then_drop", "endpoints": ["create_order"]}]}
        )
        with pytest.raises(ClientOrderIdConflict, match="price") as info:
            ex.create_order(symbol, "limit", "buy", 0.01, 10_500, {"clientOrderId": cid})
        assert info.value.order_id == first["id"]
        assert len([o for o in sim.orders(exchange_id) if o.client_order_id == cid]) == 1
    finally:
        sim.set_profile("calm")
        ex.cancel_order(first["id"], symbol)


def _create_requests(sim: Simulator) -> int:
    return sum(
        1 for r in sim.ground_truth() if r["exchange"] == "binance" and r["endpoint"] == "create_order"
    )


SERVER_ERROR = {
    "name": "5xx",
    "faults": [{"kind": "http_5xx", "endpoints": ["create_order"], "status": [503]}],
}


@pytest.mark.usefixtures("calm")
def test_reusing_the_id_of_a_filled_order_never_returns_that_order(sim: Simulator) -> None:
    """Binance wants an id unique among open orders only: a filled order's id may be reused. The
    reuse answers 503 (nothing placed); the lookup finds the filled order; it is not this call's."""
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    first = ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "reused-1"})
    assert first["status"] == "closed"
    sim.clear_ground_truth()
    sim.set_profile(SERVER_ERROR)
    try:
        with pytest.raises(ClientOrderIdConflict) as info:
            ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "reused-1"})
    finally:
        sim.set_profile("calm")
    assert info.value.earlier and info.value.order_id == first["id"]
    assert _create_requests(sim) == 1  # not resent
    assert [o.id for o in sim.orders("binance") if o.client_order_id == "reused-1"] == [first["id"]]
    ex.close()


@pytest.mark.usefixtures("calm")
def test_an_earlier_order_of_another_process_is_known_by_its_timestamp(sim: Simulator) -> None:
    """The earlier order was placed by another process (this client never saw it) a minute ago."""
    other = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
    other.load_markets()
    sim.clock_offset_ms = -60_000  # placed "a minute ago": the exchange's clock, and ccxt's estimate
    other.options["timeDifference"] = 60_000
    first = other.create_order("BTC/USDT", "market", "buy", 0.001, None, {"newClientOrderId": "reused-2"})
    sim.clock_offset_ms = 0
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    sim.clear_ground_truth()
    sim.set_profile(SERVER_ERROR)
    try:
        with pytest.raises(ClientOrderIdConflict, match="its timestamp") as info:
            ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "reused-2"})
    finally:
        sim.set_profile("calm")
    assert info.value.order_id == first["id"] and "timestamp" in info.value.mismatched
    assert _create_requests(sim) == 1
    ex.close()


@pytest.mark.usefixtures("calm")
def test_threads_of_one_client_never_share_an_order(sim: Simulator) -> None:
    raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **FAST)
    ex.load_markets()
    inner_create: Callable[..., Any] = raw.create_order
    entered, release = threading.Event(), threading.Event()

    def slow_create(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(5)
        return inner_create(*args, **kwargs)

    raw.create_order = slow_create
    got: list[Any] = []
    worker = threading.Thread(
        target=lambda: got.append(
            ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000, {"clientOrderId": "thread-shared"})
        )
    )
    worker.start()
    assert entered.wait(5)
    with pytest.raises(ClientOrderIdInUse):
        ex.create_order("BTC/USDT", "limit", "sell", 0.02, 90_000, {"clientOrderId": "thread-shared"})
    release.set()
    worker.join(5)
    assert got and got[0]["side"] == "buy"
    ex.cancel_order(got[0]["id"], "BTC/USDT")


@pytest.mark.usefixtures("calm")
async def test_async_tasks_of_one_client_never_share_an_order(sim: Simulator) -> None:
    inner = sim.attach(accxt.kucoin({"enableRateLimit": False, "timeout": 3000}))
    async with AsyncHardenedClient(inner, **FAST) as ex:
        await ex.load_markets()
        results = await asyncio.gather(
            ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000, {"clientOid": "task-shared"}),
            ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_001, {"clientOid": "task-shared"}),
            return_exceptions=True,
        )
        placed = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(placed) == 1 and len(refused) == 1
        assert isinstance(refused[0], ClientOrderIdInUse), refused[0]
        await ex.cancel_order(placed[0]["id"], "BTC/USDT")


# --- arguments refused before anything is sent -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((*LIMIT_BUY, {}, "surplus"), {}, r"at most 6 positional arguments.*#7 \(str\)"),
        ((*LIMIT_BUY, {}, "a", 7), {}, r"#7 \(str\), #8 \(int\)"),
        (LIMIT_BUY, {"price": 11_000.0}, r"multiple values for argument 'price'"),
        (
            ("BTC/USDT", "limit"),
            {"symbol": "ETH/USDT", "side": "buy", "amount": 1},
            r"multiple values.*'symbol'",
        ),
        (LIMIT_BUY, {"prize": 1}, r"unexpected keyword argument 'prize'"),
    ],
)
def test_create_arguments_ccxt_would_refuse_raise_type_error_before_sending(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    ex = Scripted(create_order=[order()])
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    with pytest.raises(TypeError, match=match) as info:
        run_plan_sync(create_plan(ex, load_profile("binance"), recovery, args, kwargs))
    assert "'surplus'" not in str(info.value)  # named by position and type, never echoed
    assert ex.calls == []
    assert recovery.in_flight() == frozenset()


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("42", "BTC/USDT", {}, "surplus"), {}, r"cancel_order\(\) takes at most 3 positional.*#4 \(str\)"),
        (("42", "BTC/USDT"), {"symbol": "ETH/USDT"}, r"multiple values for argument 'symbol'"),
        (("42",), {"id": "43"}, r"multiple values for argument 'id'"),
    ],
)
def test_cancel_arguments_ccxt_would_refuse_raise_type_error_before_sending(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    ex = Scripted(cancel_order=[{"id": "42", "status": "canceled"}])
    recovery = OrderRecovery(load_profile("binance"), lag_ms=0)
    with pytest.raises(TypeError, match=match):
        run_plan_sync(cancel_plan(ex, load_profile("binance"), recovery, args, kwargs))
    assert ex.calls == []


@pytest.mark.usefixtures("calm")
def test_a_surplus_argument_places_no_order_through_the_client(sim: Simulator) -> None:
    raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **FAST)
    ex.load_markets()
    before = len(sim.orders("binance"))
    with pytest.raises(TypeError, match="surplus"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000, {}, "surplus")
    with pytest.raises(TypeError, match="surplus"):
        ex.cancel_order("1", "BTC/USDT", {}, "surplus")
    assert len(sim.orders("binance")) == before
    ex.close()


MARKET_ID = {"binance": "BTCUSDT", "kucoin": "BTC-USDT", "bitvavo": "BTC-EUR"}
DROP_CREATE = {"name": "drop", "faults": [{"kind": "accept_then_drop", "endpoints": ["create_order"]}]}


@pytest.mark.usefixtures("calm")
@pytest.mark.parametrize("exchange_id", ("binance", "kucoin", "bitvavo"))
def test_an_order_placed_by_market_id_is_recovered_as_ours(sim: Simulator, exchange_id: str) -> None:
    """ccxt takes a market id ("BTCUSDT") where a symbol goes; the order found after a lost answer
    carries the unified symbol and is still this call's order, not a conflict."""
    ex = HardenedClient(
        sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 3000})), **FAST
    )
    ex.load_markets()
    sim.set_profile(DROP_CREATE)
    heal = heal_after_first_fault(sim, exchange_id, "create_order")
    try:
        placed = ex.create_order(MARKET_ID[exchange_id], "limit", "buy", 0.01, 10_000)
    finally:
        heal.join()
        sim.set_profile("calm")
    assert placed["symbol"] == SYMBOL[exchange_id]
    assert [o.id for o in sim.orders(exchange_id) if o.client_order_id == placed["clientOrderId"]] == [
        placed["id"]
    ]
    ex.cancel_order(placed["id"], SYMBOL[exchange_id])


@pytest.mark.usefixtures("calm")
def test_a_binance_id_given_as_client_algo_id_is_the_one_looked_up(sim: Simulator) -> None:
    """ccxt's Binance reads a caller's id from clientAlgoId before newClientOrderId: that id is the
    one sent, so it is the one looked up after a lost answer. Looking up an id of our own found
    nothing and resent a filled market order: two orders."""
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    sim.set_profile(DROP_CREATE)
    heal = heal_after_first_fault(sim, "binance", "create_order")
    try:
        placed = ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientAlgoId": "algo-bot-1"})
    finally:
        heal.join()
        sim.set_profile("calm")
    assert placed["clientOrderId"] == "algo-bot-1"
    assert [o.id for o in sim.orders("binance") if o.client_order_id == "algo-bot-1"] == [placed["id"]]


@pytest.mark.usefixtures("calm")
def test_a_kucoin_resend_refused_as_a_duplicate_finds_the_order_instead_of_raising(sim: Simulator) -> None:
    """KuCoin's classic endpoint refuses a clientOid an active order holds with 400100
    "clientOidDuplicated". An order still unseen by the first lookup (KuCoin processes classic
    orders asynchronously) is resent and refused so: that is a duplicate, so the order is looked up
    and returned; it was raised as a BadRequest, as if nothing had been placed."""
    inner = sim.attach(ccxt.kucoin({"enableRateLimit": False, "timeout": 3000}))
    lookup = inner.fetch_order
    unseen = [1]

    def lagging_lookup(id: Any, symbol: Any = None, params: Any = None) -> Any:
        if unseen[0]:  # the exchange's "no such order yet", as ccxt parses it
            unseen[0] -= 1
            return lookup(id, symbol, {**(params or {}), "clientOid": "not-processed-yet"})
        return lookup(id, symbol, params or {})

    inner.fetch_order = lagging_lookup
    ex = HardenedClient(inner, **FAST)
    ex.load_markets()
    sim.clear_ground_truth()
    sim.set_profile(DROP_CREATE)
    heal = heal_after_first_fault(sim, "kucoin", "create_order")
    try:
        placed = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    finally:
        heal.join()
        sim.set_profile("calm")
    creates = [r for r in sim.ground_truth() if r["exchange"] == "kucoin" and r["endpoint"] == "create_order"]
    assert len(creates) == 2  # the first (answer dropped) and the resend refused as a duplicate
    assert [o.id for o in sim.orders("kucoin") if o.client_order_id == placed["clientOrderId"]] == [
        placed["id"]
    ]
    ex.cancel_order(placed["id"], "BTC/USDT")


@pytest.mark.usefixtures("calm")
def test_a_binance_test_order_returns_ccxts_answer_without_lookups(sim: Simulator) -> None:
    """ccxt's params test=True sends a spot order to POST /api/v3/order/test: validated, never placed,
    answered {}. That answer is ccxt's, as it is; taken for a lost answer, it was looked up, resent
    three times and ended in OrderStateUnknown (and a critical alert) for an order never meant to be."""
    ex = HardenedClient(sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000})), **FAST)
    ex.load_markets()
    sim.clear_ground_truth()
    answer = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000, {"test": True})
    assert answer["id"] is None and answer["info"] == {}
    assert [r["path"].split("?")[0] for r in sim.ground_truth()] == ["/binance/api/v3/order/test"]


def test_an_answer_with_an_id_to_a_test_flag_is_an_order_like_any_other() -> None:
    """Where ccxt ignores the flag (Binance contracts) the order is placed: its answer is checked as
    any other, and a lost one still looked up."""
    ex = Scripted(create_order=[ccxt.RequestTimeout("lost")], fetch_order=[order()])
    profile = load_profile("binance")
    args = (*LIMIT_BUY, {"newClientOrderId": "mine-1", "test": True})
    assert run_plan_sync(create_plan(ex, profile, OrderRecovery(profile, lag_ms=0), args, {}))["id"] == "42"
    assert [name for name, *_ in ex.calls] == ["create_order", "fetch_order"]
