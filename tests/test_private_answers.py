"""Garbage 200 answers on private endpoints: an HTML page or JSON cut short is a failed attempt.

ccxt hands a bot an order with ``id=None``, empty balances, ``[]`` open orders or an
``AttributeError`` when a private endpoint answers 200 with garbage. The hardened client raises a
``ccxt.BadResponse`` instead (retried where that is safe), and a garbage answer to ``create_order``
is a lost answer: the order is looked up by its client order id, returned if it went in, and sent
again with the same id if it did not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient
from hardened.sim import Simulator

EXCHANGES = ("binance", "kucoin", "bitvavo")
SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}
FAST = {
    "initial_delay": 0.01,
    "jitter": 0.0,
    "rate_limit_delay": 0.0,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "order_lookup_lag_ms": 0,
}
GARBAGE = ("html_200", "malformed_json")

pytestmark = pytest.mark.usefixtures("calm")  # `sim` and `calm` come from conftest.py


def only(endpoint: str, kind: str) -> dict[str, Any]:
    return {"name": f"test-{kind}", "faults": [{"endpoints": [endpoint], "kind": kind}]}


def hardened(sim: Simulator, exchange_id: str, **settings: Any) -> HardenedClient:
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
    ex = HardenedClient(raw, **{**FAST, **settings})
    ex.load_markets()
    return ex


def requests_to(sim: Simulator, exchange_id: str, endpoint: str) -> int:
    return sum(1 for r in sim.ground_truth() if r["exchange"] == exchange_id and r["endpoint"] == endpoint)


def ours(sim: Simulator, exchange_id: str, cid: str) -> list[Any]:
    return [o for o in sim.orders(exchange_id) if o.client_order_id == cid]


def heal_before_lookups(sim: Simulator, inner: Any) -> None:
    """Switch the simulator to calm when the first lookup starts: deterministic, no timing."""
    fetch = inner.fetch_order

    if asyncio.iscoroutinefunction(fetch):

        async def healing_async(*args: Any, **kwargs: Any) -> Any:
            sim.set_profile("calm")
            return await fetch(*args, **kwargs)

        inner.fetch_order = healing_async
    else:

        def healing(*args: Any, **kwargs: Any) -> Any:
            sim.set_profile("calm")
            return fetch(*args, **kwargs)

        inner.fetch_order = healing


# --- create_order ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_garbage_create_answer_is_a_lost_answer_settled_by_lookup(
    sim: Simulator, exchange_id: str, kind: str
) -> None:
    ex = hardened(sim, exchange_id)
    heal_before_lookups(sim, ex.inner)
    sim.set_profile(only("create_order", kind))
    sim.clear_ground_truth()
    order = ex.create_order(SYMBOL[exchange_id], "limit", "buy", 0.01, 10_000)
    cid = order["clientOrderId"]
    placed = ours(sim, exchange_id, cid)
    assert len(placed) == 1, "exactly one order, whatever the garbage"
    assert order["id"] == placed[0].id
    # html_200 answers before the order is taken: looked up, absent, sent again with the same id;
    # malformed_json cuts the answer of an order that went in: looked up and found.
    assert requests_to(sim, exchange_id, "create_order") == (2 if kind == "html_200" else 1)
    assert requests_to(sim, exchange_id, "fetch_order") >= 1
    ex.cancel_order(order["id"], SYMBOL[exchange_id])


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_async_garbage_create_answer_is_a_lost_answer_settled_by_lookup(
    sim: Simulator, exchange_id: str, kind: str
) -> None:
    inner = sim.attach(getattr(accxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
    async with AsyncHardenedClient(inner, **FAST) as ex:
        await ex.load_markets()
        heal_before_lookups(sim, inner)
        sim.set_profile(only("create_order", kind))
        sim.clear_ground_truth()
        order = await ex.create_order(SYMBOL[exchange_id], "limit", "buy", 0.01, 10_000)
        placed = ours(sim, exchange_id, order["clientOrderId"])
        assert len(placed) == 1 and order["id"] == placed[0].id
        assert requests_to(sim, exchange_id, "create_order") == (2 if kind == "html_200" else 1)
        await ex.cancel_order(order["id"], SYMBOL[exchange_id])


def test_garbage_create_answers_that_never_heal_end_in_order_state_unknown(sim: Simulator) -> None:
    from hardened import OrderStateUnknown

    ex = hardened(sim, "binance", order_resends=1)
    sim.set_profile(only("create_order", "html_200"))
    sim.clear_ground_truth()
    with pytest.raises(OrderStateUnknown) as info:
        ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    assert not ours(sim, "binance", info.value.client_order_id)
    assert requests_to(sim, "binance", "create_order") == 2  # never resent blindly


# --- balance and open orders ----------------------------------------------------------------


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_garbage_balance_is_a_bad_response_not_empty_totals(
    sim: Simulator, exchange_id: str, kind: str
) -> None:
    ex = hardened(sim, exchange_id, max_retries=0)
    sim.set_profile(only("balance", kind))
    with pytest.raises(ccxt.BadResponse, match="balance"):
        ex.fetch_balance()


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_garbage_balance_is_retried_into_the_real_one(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(sim, exchange_id, max_retries=2)
    expected = ex.fetch_balance()["total"]
    sim.set_profile({"name": "once", "faults": [{"endpoints": ["balance"], "kind": "html_200"}]})
    fetch = ex.inner.fetch_balance
    calls: list[int] = []

    def heal_after_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            sim.set_profile("calm")
        return fetch(*args, **kwargs)

    ex.inner.fetch_balance = heal_after_first
    assert ex.fetch_balance()["total"] == expected
    assert len(calls) == 2


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_garbage_open_orders_is_a_bad_response_never_an_empty_list(
    sim: Simulator, exchange_id: str, kind: str
) -> None:
    ex = hardened(sim, exchange_id, max_retries=0)
    sim.set_profile(only("open_orders", kind))
    with pytest.raises(ccxt.BadResponse, match="open_orders"):
        ex.fetch_open_orders(SYMBOL[exchange_id])


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_real_empty_list_of_open_orders_passes(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(sim, exchange_id)
    symbol = "XRP/EUR" if exchange_id == "bitvavo" else "XRP/USDT"
    for order in ex.fetch_open_orders(symbol):
        ex.cancel_order(order["id"], symbol)
    assert ex.fetch_open_orders(symbol) == []


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_async_garbage_balance_and_open_orders_are_bad_responses(
    sim: Simulator, exchange_id: str
) -> None:
    inner = sim.attach(getattr(accxt, exchange_id)({"enableRateLimit": False, "timeout": 3000}))
    async with AsyncHardenedClient(inner, **{**FAST, "max_retries": 0}) as ex:
        await ex.load_markets()
        sim.set_profile(
            {"name": "t", "faults": [{"endpoints": ["balance", "open_orders"], "kind": "html_200"}]}
        )
        with pytest.raises(ccxt.BadResponse):
            await ex.fetch_balance()
        with pytest.raises(ccxt.BadResponse):
            await ex.fetch_open_orders(SYMBOL[exchange_id])


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_garbage_fetch_order_is_a_bad_response(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(sim, exchange_id, max_retries=0)
    order = ex.create_order(SYMBOL[exchange_id], "limit", "buy", 0.01, 10_000)
    sim.set_profile(only("fetch_order", "malformed_json"))
    with pytest.raises(ccxt.BadResponse):
        ex.fetch_order(order["id"], SYMBOL[exchange_id])
    sim.set_profile("calm")
    ex.cancel_order(order["id"], SYMBOL[exchange_id])


def test_a_garbage_market_list_is_a_bad_response_not_an_empty_one(sim: Simulator) -> None:
    raw = sim.attach(ccxt.binance({"enableRateLimit": False}))
    ex = HardenedClient(raw, **{**FAST, "max_retries": 0})
    sim.set_profile(only("markets", "html_200"))
    with pytest.raises(ccxt.BadResponse):
        ex.load_markets()


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_json_of_the_wrong_shape_is_not_an_empty_list(sim: Simulator, exchange_id: str) -> None:
    ex = hardened(sim, exchange_id, max_retries=0)
    symbol = "XRP/EUR" if exchange_id == "bitvavo" else "XRP/USDT"
    assert ex.fetch_open_orders(symbol) == []
    # valid JSON that passes the exchange's error check, but holds no list where orders would be
    wrong = {"code": "200000", "data": None} if exchange_id == "kucoin" else {"data": None}
    ex.inner.parse_json = lambda text: wrong
    with pytest.raises(ccxt.BadResponse, match="wrong_shape"):
        ex.fetch_open_orders(symbol)


# --- the checks themselves --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "parsed", "garbage"),
    [
        ("<!DOCTYPE html><html>...</html>", None, True),
        ('{"orderId": 12', None, True),
        ("  [1, 2", None, True),
        ("[]", [], False),
        ('{"data": []}', {"data": []}, False),
        ("", None, False),  # an empty body is some endpoints' real answer: the parser decides
        ("pong", None, False),
    ],
)
def test_garbled_body(body: str, parsed: Any, garbage: bool) -> None:
    from hardened.quality import garbled_body

    assert (garbled_body(body, parsed) is not None) is garbage


@pytest.mark.parametrize(
    ("parsed", "garbage"),
    [
        ([], False),
        ({"data": []}, False),
        ({"data": {"items": []}}, False),
        ({}, True),
        ({"data": None}, True),
        ({"code": "200000", "data": {"currentPage": 1, "items": None}}, True),
    ],
)
def test_an_empty_list_must_come_from_a_json_list(parsed: Any, garbage: bool) -> None:
    from hardened.quality import list_answer_issue

    assert (list_answer_issue("open_orders", [], parsed) is not None) is garbage
    # a non-empty result is judged elsewhere
    assert list_answer_issue("open_orders", [{"id": "1"}], {}) is None
    # an empty 2xx body parses to nothing: garbage when an answer arrived, unknowable when none did
    assert list_answer_issue("open_orders", [], None, answered=True) is not None
    assert list_answer_issue("open_orders", [], None, answered=False) is None


def test_order_checks_name_what_is_missing() -> None:
    from hardened.quality import validate_order, validate_orders

    good = {"id": "1", "status": "open", "info": {"orderId": 1}}
    assert validate_order(good) == []
    assert validate_order({"id": "1", "status": None, "info": {}}, require_status=False) == []
    (issue,) = validate_order({"id": None, "status": None, "info": "<html>"})
    assert issue.code == "malformed_order" and "no order id" in issue.message and "no status" in issue.message
    (issue,) = validate_order({"id": "1", "status": 3, "info": {}})
    assert "status 3" in issue.message
    # a status ccxt does not unify stays the exchange's word: still a status
    assert validate_order({"id": "1", "status": "canceling", "info": {}}) == []
    (issue,) = validate_orders([good, {"id": None, "status": "open", "info": {}}])
    assert issue.count == 1 and issue.where == (1,) and issue.extent == 0.5
    assert validate_orders("<html>")[0].code == "malformed"


def test_balance_checks() -> None:
    from hardened.quality import validate_balance

    good = {"info": {"balances": []}, "free": {"BTC": 1.0}, "used": {"BTC": 0.5}, "total": {"BTC": 1.5}}
    assert validate_balance(good) == []
    assert {i.code for i in validate_balance({**good, "info": "<html>"})} == {"wrong_shape"}
    assert {i.code for i in validate_balance({"info": {}, "free": {}})} == {"malformed"}
    negative = {**good, "free": {"BTC": -2.0}, "total": {"BTC": -1.5}}
    assert {i.code for i in validate_balance(negative)} == {"negative_balance"}
    off = {**good, "total": {"BTC": 9.0}}
    assert {i.code for i in validate_balance(off)} == {"balance_inconsistent"}
    assert {i.code for i in validate_balance({**good, "free": {"BTC": "1"}})} == {"malformed"}


def test_only_parser_crashes_on_an_answer_become_bad_responses() -> None:
    from types import SimpleNamespace

    from hardened.pipeline.validate import parser_failure

    ctx: Any = SimpleNamespace(http_status=200, endpoint=SimpleNamespace(name="open_orders"), quality=None)
    ex = ccxt.binance()
    with pytest.raises(AttributeError) as info:
        ex.parse_orders("<html>")  # what Binance's fetch_open_orders does with an HTML body
    converted = parser_failure(ctx, info.value)
    assert isinstance(converted, ccxt.BadResponse) and converted.__cause__ is info.value
    assert "AttributeError" in str(converted) and ctx.quality == 0.0
    bad_argument = TypeError("amount must be a number")  # raised by the caller's arguments, not a parser
    assert parser_failure(ctx, bad_argument) is bad_argument
    ctx.http_status = 502
    assert parser_failure(ctx, info.value) is info.value  # no 2xx answer: not this stage's business


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_create_answer_of_json_without_an_order_is_a_lost_answer(sim: Simulator, exchange_id: str) -> None:
    # The order goes in, but ccxt reads "{}" for the answer: Binance and Bitvavo parse an order
    # without an id, KuCoin raises its catch-all ExchangeError (no "200000" code). Either way the
    # order may exist: it is looked up, found and returned, never sent twice.
    ex = hardened(sim, exchange_id)
    parse_json = ex.inner.parse_json
    spoiled: list[int] = []

    def spoil_first_answer(text: Any) -> Any:
        if not spoiled and "orderId" in text:  # the create answer, on all three exchanges
            spoiled.append(1)
            return {}
        return parse_json(text)

    ex.inner.parse_json = spoil_first_answer
    sim.clear_ground_truth()
    order = ex.create_order(SYMBOL[exchange_id], "limit", "buy", 0.01, 10_000)
    assert spoiled, "the create answer was not spoiled"
    placed = ours(sim, exchange_id, order["clientOrderId"])
    assert len(placed) == 1 and order["id"] == placed[0].id
    assert requests_to(sim, exchange_id, "create_order") == 1
    ex.cancel_order(order["id"], SYMBOL[exchange_id])
