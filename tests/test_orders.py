"""Client order ids per exchange rule, and the recovery decisions after an ambiguous order failure."""

from __future__ import annotations

import json
import math
import types
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import ccxt
import pytest

from hardened import HardenedClient, placement
from hardened.adapters import load_profile
from hardened.errors import OrderStateUnknown
from hardened.orders import (
    OrderRecovery,
    RecoveryAction,
    client_order_id_param,
    is_ambiguous_failure,
    new_client_order_id,
    with_client_order_id,
)
from hardened.placement import Deadline, create_plan, run_plan_sync

EXCHANGES = ("binance", "kucoin", "bitvavo")
T0 = 1_700_000_000.0


# -- generating ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", (*EXCHANGES, "okx"))
def test_new_ids_follow_the_exchange_rule_and_never_repeat(exchange: str) -> None:
    spec = load_profile(exchange).client_order_id
    ids = [new_client_order_id(exchange) for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(spec.pattern.fullmatch(cid) and len(cid) <= spec.max_length for cid in ids)


@pytest.mark.parametrize(("exchange", "length"), [("binance", 34), ("kucoin", 34), ("okx", 32)])
def test_token_ids_carry_the_hd_prefix(exchange: str, length: int) -> None:
    cid = new_client_order_id(exchange)
    assert cid.startswith("hd") and len(cid) == length


def test_bitvavo_ids_are_uuids_marked_hd() -> None:
    cid = new_client_order_id("bitvavo")
    parsed = uuid.UUID(cid)
    assert str(parsed) == cid and parsed.version == 4
    assert cid.startswith("6864")  # "hd" in hex


@pytest.mark.parametrize(
    ("exchange", "param"),
    [
        ("binance", "newClientOrderId"),
        ("kucoin", "clientOid"),
        ("bitvavo", "clientOrderId"),
        ("okx", "clientOrderId"),
    ],
)
def test_client_order_id_param(exchange: str, param: str) -> None:
    assert client_order_id_param(exchange) == param


# -- caller-supplied ids ---------------------------------------------------------------------------------


def test_an_id_is_added_when_the_caller_gave_none() -> None:
    caller = {"timeInForce": "GTC"}
    params, cid = with_client_order_id("binance", caller)
    assert params == {"timeInForce": "GTC", "newClientOrderId": cid}
    assert caller == {"timeInForce": "GTC"}  # the caller's dict is left alone
    assert with_client_order_id("kucoin", None)[0].keys() == {"clientOid"}


@pytest.mark.parametrize(
    ("exchange", "given", "canonical"),
    [
        ("binance", {"newClientOrderId": "my.bot:1/a_b-c"}, "newClientOrderId"),
        ("binance", {"clientOrderId": "my.bot:1/a_b-c"}, "newClientOrderId"),
        ("binance", {"clientAlgoId": "my.bot:1/a_b-c"}, "newClientOrderId"),
        ("kucoin", {"clientOrderId": "bot_1-A"}, "clientOid"),
        ("kucoin", {"clientOid": "bot_1-A"}, "clientOid"),
        ("bitvavo", {"clientOrderId": "2be7d0df-d8dc-7b93-a550-8876f3b393e9"}, "clientOrderId"),
    ],
)
def test_a_valid_caller_id_is_kept_under_the_exchange_param(
    exchange: str, given: dict[str, str], canonical: str
) -> None:
    value = next(iter(given.values()))
    params, cid = with_client_order_id(exchange, {**given, "type": "limit"})
    assert cid == value
    assert params == {"type": "limit", canonical: value}


def test_a_numeric_caller_id_is_accepted_as_text() -> None:
    params, cid = with_client_order_id("binance", {"clientOrderId": 12345})
    assert cid == "12345" and params == {"newClientOrderId": "12345"}


@pytest.mark.parametrize(
    ("exchange", "given", "rule"),
    [
        ("binance", {"newClientOrderId": "has space"}, r"\^\[\.A-Z:/a-z0-9_-\]\{1,36\}\$"),
        ("binance", {"clientOrderId": "x" * 37}, r"1 to 36 characters"),
        ("kucoin", {"clientOid": "a" * 41}, r"1 to 40 characters"),
        ("kucoin", {"clientOid": "dots.are.not.allowed"}, r"letters, digits, _ and -"),
        ("bitvavo", {"clientOrderId": "hd123"}, r"a UUID"),
        ("binance", {"newClientOrderId": ""}, r"1 to 36 characters"),
    ],
)
def test_a_bad_caller_id_raises_invalid_order_naming_the_rule(
    exchange: str, given: dict[str, str], rule: str
) -> None:
    with pytest.raises(ccxt.InvalidOrder, match=rule) as caught:
        with_client_order_id(exchange, given)
    assert exchange in str(caught.value)


def test_two_different_ids_are_refused_and_the_same_id_twice_is_fine() -> None:
    with pytest.raises(ccxt.InvalidOrder, match="conflicting client order ids"):
        with_client_order_id("binance", {"newClientOrderId": "a1", "clientOrderId": "b2"})
    params, cid = with_client_order_id("binance", {"newClientOrderId": "a1", "clientOrderId": "a1"})
    assert cid == "a1" and params == {"newClientOrderId": "a1"}


def test_a_non_text_id_is_refused() -> None:
    with pytest.raises(ccxt.InvalidOrder, match="must be a string"):
        with_client_order_id("kucoin", {"clientOid": ["a"]})


def test_a_none_id_counts_as_absent() -> None:
    params, cid = with_client_order_id("bitvavo", {"clientOrderId": None})
    assert params == {"clientOrderId": cid} and uuid.UUID(cid)


# -- the ids reach the exchange (ccxt 4.5.90 request building, no network) -------------------------------


class Sent(Exception):
    """Raised by the fake transport with the request ccxt built."""


MARKETS = {
    "binance": ("BTCUSDT", "BTC/USDT"),
    "kucoin": ("BTC-USDT", "BTC/USDT"),
    "bitvavo": ("BTC-EUR", "BTC/EUR"),
}


def _offline(exchange: str, options: dict[str, Any]) -> tuple[ccxt.Exchange, list[tuple[str, str, Any]]]:
    api = getattr(ccxt, exchange)({"apiKey": "key", "secret": "c2VjcmV0", "password": "pass"})
    market_id, symbol = MARKETS[exchange]
    base, quote = symbol.split("/")
    api.set_markets(
        [
            {
                "id": market_id,
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "baseId": base,
                "quoteId": quote,
                "type": "spot",
                "spot": True,
                "margin": False,
                "swap": False,
                "future": False,
                "option": False,
                "contract": False,
                "active": True,
                "precision": {"amount": 1e-8, "price": 0.01},
                "limits": {},
                "info": {"orderTypes": ["LIMIT", "MARKET"]},
            }
        ]
    )
    api.options.update({"timeDifference": 0, **options})
    sent: list[tuple[str, str, Any]] = []

    def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        sent.append((method, url, body))
        raise Sent(url)

    api.fetch = fetch  # every HTTP request stops here: nothing leaves the process
    return api, sent


CASES = [
    ("binance", {}, "origClientOrderId={cid}", "newClientOrderId={cid}"),
    ("kucoin", {"uta": False, "hf": False}, "/api/v1/order/client-order/{cid}", '"clientOid": "{cid}"'),
    (
        "kucoin",
        {"uta": False, "hf": True},
        "/api/v1/hf/orders/client-order/{cid}?symbol=BTC-USDT",
        '"clientOid": "{cid}"',
    ),
    ("bitvavo", {"operatorId": 1}, "clientOrderId={cid}", '"clientOrderId": "{cid}"'),
]


@pytest.mark.parametrize(("exchange", "options", "lookup", "create"), CASES)
def test_ccxt_sends_our_id_on_create_lookup_and_cancel(
    exchange: str, options: dict[str, Any], lookup: str, create: str
) -> None:
    api, sent = _offline(exchange, options)
    symbol = MARKETS[exchange][1]
    params, cid = with_client_order_id(exchange, {})
    with pytest.raises(Sent):
        api.create_order(symbol, "limit", "buy", 1, 100, params)
    method, url, body = sent[-1]
    assert method == "POST"
    assert create.format(cid=cid) in ((body or "") + url).replace('":"', '": "')
    spec = load_profile(exchange).client_order_id
    for call, verb in ((spec.lookup_call(cid, symbol), "GET"), (spec.cancel_call(cid, symbol), "DELETE")):
        with pytest.raises(Sent):
            getattr(api, call.method)(*call.args, params=call.params)
        method, url, _ = sent[-1]
        assert method == verb
        assert lookup.format(cid=cid) in url
        assert "orderId=" not in url.replace("ClientOrderId=", "").replace("clientOrderId=", "")


# -- ambiguity --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "error", "ambiguous"),
    [
        ("binance", ccxt.RequestTimeout("binance POST https://api.binance.com/api/v3/order"), True),
        ("binance", ccxt.NetworkError("binance POST https://api.binance.com/api/v3/order"), True),
        (
            "binance",
            ccxt.ExchangeNotAvailable("binance POST https://x/api/v3/order 503 Service Unavailable "),
            True,
        ),
        ("binance", ccxt.OperationFailed('binance {"code":-1006,"msg":"Execution status unknown."}'), True),
        ("binance", ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'), False),
        (
            "binance",
            ccxt.DDoSProtection('binance 429 Too Many Requests {"code":-1003,"msg":"Too much."}'),
            False,
        ),
        (
            "bitvavo",
            ccxt.ExchangeError(
                'bitvavo {"errorCode":101,"error":"Operation may or may not have succeeded."}'
            ),
            True,
        ),
        (
            "bitvavo",
            ccxt.InsufficientFunds('bitvavo {"errorCode":216,"error":"Insufficient balance."}'),
            False,
        ),
        ("kucoin", ccxt.RateLimitExceeded('kucoin {"code":"429000","msg":"Too Many Requests"}'), False),
        ("okx", ccxt.RequestTimeout("okx POST https://www.okx.com/api/v5/trade/order"), True),
        ("okx", ccxt.BadSymbol("okx bad symbol"), False),
        (
            "okx",
            ccxt.ExchangeNotAvailable("okx POST https://www.okx.com/api/v5/trade/order 404 Not Found "),
            False,
        ),
        (
            "okx",
            ccxt.RequestTimeout("okx POST https://www.okx.com/api/v5/trade/order 408 Request Timeout "),
            True,
        ),
    ],
)
def test_is_ambiguous_failure(exchange: str, error: Exception, ambiguous: bool) -> None:
    assert is_ambiguous_failure(load_profile(exchange), error) is ambiguous


# -- recovery after an ambiguous create_order ------------------------------------------------------------


def recovery(exchange: str = "binance", **kwargs: Any) -> OrderRecovery:
    return OrderRecovery(load_profile(exchange), **kwargs)


def test_create_found_returns_the_order() -> None:
    rec = recovery()
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    assert rec.first_step(state, T0 + 0.2).action is RecoveryAction.LOOKUP
    order = {"id": "1", "clientOrderId": "hdabc", "status": "open"}
    step = rec.on_found(state, order, T0 + 0.3)
    assert step.action is RecoveryAction.RETURN and step.order is order


def test_create_not_found_within_the_lag_waits_and_looks_again() -> None:
    rec = recovery(lag_ms=1500)
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 0.5)
    step = rec.on_not_found(state, T0 + 0.5)
    assert step.action is RecoveryAction.LOOKUP
    assert step.delay_s == pytest.approx(1.0)  # until sent_at + lag


def test_create_not_found_after_the_lag_resends_with_the_same_id() -> None:
    rec = recovery(lag_ms=1000)
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 5)
    step = rec.on_not_found(state, T0 + 5)
    assert step.action is RecoveryAction.RESEND
    assert rec.lookup_call(state).params == {"origClientOrderId": "hdabc"}  # the same id, not a new one


def test_create_resend_refused_as_duplicate_looks_the_order_up() -> None:
    rec = recovery()
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 5)
    assert rec.on_not_found(state, T0 + 5).action is RecoveryAction.RESEND
    assert rec.on_resend_duplicate(state, T0 + 6).action is RecoveryAction.LOOKUP
    assert rec.on_found(state, {"id": "1"}, T0 + 6).action is RecoveryAction.RETURN


def test_create_gives_up_after_resends_are_spent() -> None:
    rec = recovery(max_resends=1)
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 5)
    assert rec.on_not_found(state, T0 + 5).action is RecoveryAction.RESEND
    assert rec.on_resend_failed(state, T0 + 10).action is RecoveryAction.LOOKUP
    step = rec.on_not_found(state, T0 + 20)
    assert step.action is RecoveryAction.GIVE_UP
    assert isinstance(step.error, OrderStateUnknown)


def test_a_failing_lookup_backs_off_then_gives_up_with_order_state_unknown() -> None:
    rec = recovery(max_lookups=4, lag_ms=1000)
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 10)
    delays = []
    for i in range(3):
        step = rec.on_lookup_failed(
            state, ccxt.RequestTimeout("binance GET https://x/api/v3/order"), T0 + 10 + i
        )
        assert step.action is RecoveryAction.LOOKUP
        delays.append(step.delay_s)
    assert delays == sorted(delays) and delays[0] > 0
    step = rec.on_lookup_failed(state, ccxt.RequestTimeout("binance GET https://x/api/v3/order"), T0 + 20)
    assert step.action is RecoveryAction.GIVE_UP
    error = step.error
    assert isinstance(error, OrderStateUnknown) and isinstance(error, ccxt.NetworkError)
    assert (error.client_order_id, error.symbol) == ("hdabc", "BTC/USDT")
    assert "create_order" in error.reason and "lookups" in error.reason


def test_a_lookup_raising_order_not_found_counts_as_not_found() -> None:
    rec = recovery()
    state = rec.start_create("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 5)
    missing = ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}')
    step = rec.on_lookup_failed(state, missing, T0 + 5)
    assert step.action is RecoveryAction.RESEND
    assert state.failures == 0
    generic = OrderRecovery(load_profile("okx"))
    state = generic.start_create("hdabc", "BTC/USDT", sent_at=T0)
    assert (
        generic.on_lookup_failed(state, ccxt.OrderNotFound("okx no such order"), T0 + 5).action
        is RecoveryAction.RESEND
    )


# -- recovery after an ambiguous cancel_order ------------------------------------------------------------


@pytest.mark.parametrize("status", ["canceled", "closed", "expired", "rejected"])
def test_cancel_of_a_finished_order_is_done(status: str) -> None:
    rec = recovery("kucoin")
    state = rec.start_cancel("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 1)
    order = {"id": "1", "status": status}
    step = rec.on_found(state, order, T0 + 1)
    assert step.action is RecoveryAction.DONE and step.order is order


def test_cancel_of_a_still_open_order_is_sent_again_then_given_up() -> None:
    rec = recovery("bitvavo", max_resends=1)
    state = rec.start_cancel("1", "BTC/EUR", sent_at=T0, client_order_id="hdabc")
    rec.first_step(state, T0 + 1)
    assert rec.on_found(state, {"status": "open"}, T0 + 1).action is RecoveryAction.RESEND
    assert rec.cancel_call(state).params == {"clientOrderId": "hdabc"}
    assert rec.on_resend_failed(state, T0 + 2).action is RecoveryAction.LOOKUP
    step = rec.on_found(state, {"status": "open"}, T0 + 3)
    assert step.action is RecoveryAction.GIVE_UP and "cancel_order" in str(step.error)
    assert isinstance(step.error, OrderStateUnknown)
    assert (step.error.order_id, step.error.client_order_id) == ("1", "hdabc")


def test_a_cancel_given_up_names_the_exchange_order_id_not_a_client_order_id() -> None:
    rec = recovery("binance", max_lookups=1)
    state = rec.start_cancel("4000000001", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0)
    step = rec.on_lookup_failed(state, ccxt.RequestTimeout("lost"), T0 + 1)
    assert step.action is RecoveryAction.GIVE_UP
    error = step.error
    assert isinstance(error, OrderStateUnknown) and isinstance(error, ccxt.NetworkError)
    assert error.order_id == "4000000001" and error.client_order_id is None
    assert "order id 4000000001" in str(error) and "client order id" not in str(error)


def test_order_state_unknown_stays_backwards_compatible() -> None:
    error = OrderStateUnknown("hd1", "BTC/USDT", "lost")
    assert (error.client_order_id, error.order_id, error.symbol) == ("hd1", None, "BTC/USDT")
    assert "client order id hd1" in str(error)


def test_cancel_not_found_after_a_timeout_looks_again_within_the_lag_then_is_done() -> None:
    rec = recovery("binance", lag_ms=2000)
    state = rec.start_cancel("hdabc", "BTC/USDT", sent_at=T0)
    rec.first_step(state, T0 + 0.5)
    step = rec.on_not_found(state, T0 + 0.5)
    assert step.action is RecoveryAction.LOOKUP and step.delay_s == pytest.approx(1.5)
    assert rec.on_not_found(state, T0 + 2.5).action is RecoveryAction.DONE


def test_the_lag_defaults_to_the_profile() -> None:
    assert recovery("kucoin").lag_s == load_profile("kucoin").client_order_id.visibility_lag_ms / 1000


@pytest.mark.parametrize(
    "make",
    [
        lambda: recovery(max_lookups=0),
        lambda: recovery(max_resends=-1),
        lambda: recovery(lag_ms=-5),
    ],
)
def test_bad_recovery_settings_are_refused(make: Callable[[], OrderRecovery]) -> None:
    with pytest.raises(ValueError):
        make()


# -- the lookup asks the endpoint that holds the order (ccxt 4.5.90, no network) ------------------------

ROUTED = [  # (exchange, options, create params, path of the lookup, its query beside the signature)
    ("kucoin", {"uta": False}, {"hf": True}, "/api/v1/hf/orders/client-order/{cid}", {"symbol": "BTC-USDT"}),
    (
        "kucoin",
        {"uta": False},
        {"triggerPrice": 9000},
        "/api/v1/stop-order/queryOrderByClientOid",
        {"clientOid": "{cid}"},
    ),
    (
        "kucoin",
        {"uta": False},
        {"marginMode": "cross"},
        "/hf/margin/orders/client-order/{cid}",
        {"symbol": "BTC-USDT"},
    ),
    ("kucoin", {"uta": False}, {}, "/api/v1/order/client-order/{cid}", {}),
    ("binance", {}, {"marginMode": "cross"}, "/sapi/v1/margin/order", {"origClientOrderId": "{cid}"}),
    ("binance", {}, {"triggerPrice": 9000}, "/api/v3/order", {"origClientOrderId": "{cid}"}),
    ("bitvavo", {"operatorId": 1}, {"triggerPrice": 9000}, "/order", {"clientOrderId": "{cid}"}),
]


@pytest.mark.parametrize(("exchange", "options", "placed_with", "path", "query"), ROUTED)
def test_the_lookup_goes_where_the_create_params_sent_the_order(
    exchange: str, options: dict[str, Any], placed_with: dict[str, Any], path: str, query: dict[str, str]
) -> None:
    """KuCoin keeps hf, margin and stop orders apart from classic ones (Binance margin orders too):
    a lookup by client order id without the create's routing params asks a book that never held the
    order, finds nothing and the order is resent."""
    api, sent = _offline(exchange, options)
    symbol = MARKETS[exchange][1]
    cid = new_client_order_id(exchange)
    call = load_profile(exchange).client_order_id.lookup_call(cid, symbol, placed_with, "spot")
    with pytest.raises(Sent):
        getattr(api, call.method)(*call.args, params=call.params)
    method, url, _ = sent[-1]
    assert method == "GET"
    where, _, asked = url.partition("?")
    assert where.endswith(path.format(cid=cid))
    asked_for = {key: values[0] for key, values in parse_qs(asked).items()}
    assert {key: value.format(cid=cid) for key, value in query.items()}.items() <= asked_for.items()
    assert "trigger" not in asked_for  # no stray flag reaches the exchange


def _fake_kucoin() -> tuple[ccxt.kucoin, list[tuple[str, str]]]:
    """An offline ccxt.kucoin over a tiny KuCoin: classic, hf and stop orders in books of their own,
    each found by clientOid on its own endpoint only; the first order's answer is lost."""
    api, _ = _offline("kucoin", {"uta": False})
    books: dict[str, dict[str, dict[str, Any]]] = {"classic": {}, "hf": {}, "stop": {}}
    placed: list[tuple[str, str]] = []

    def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        path, _, query = url.partition("?")
        if method == "POST":
            req = json.loads(body)
            book = "stop" if path.endswith("/stop-order") else "hf" if "/hf/" in path else "classic"
            oid = f"o{len(placed) + 1}"
            books[book][req["clientOid"]] = {
                **{key: req.get(key) for key in ("clientOid", "symbol", "side", "type", "size", "price")},
                "id": oid,
                "isActive": True,
                "dealSize": "0",
                "createdAt": api.milliseconds(),
            }
            placed.append((book, oid))
            if len(placed) == 1:
                raise ccxt.RequestTimeout(f"kucoin POST {url}")
            return {"code": "200000", "data": {"orderId": oid, "clientOid": req["clientOid"]}}
        if "/stop-order/queryOrderByClientOid" in path:
            found = books["stop"].get(parse_qs(query)["clientOid"][0])
            return {"code": "200000", "data": [found] if found else []}
        book = "hf" if "/hf/orders/client-order/" in path else "classic"
        return {"code": "200000", "data": books[book].get(path.rsplit("/", 1)[-1])}

    api.fetch = fetch
    return api, placed


@pytest.mark.parametrize(
    ("params", "book"), [({"hf": True}, "hf"), ({"triggerPrice": 9000}, "stop"), ({}, "classic")]
)
def test_a_kucoin_hf_or_stop_order_whose_answer_was_lost_is_found_not_placed_twice(
    params: dict[str, Any], book: str
) -> None:
    api, placed = _fake_kucoin()
    ex = HardenedClient(api, order_lookup_lag_ms=0, learning_record=False, jitter=0.0)
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000, params)
    assert placed == [(book, "o1")]
    assert order["id"] == "o1"


# -- the visibility lag runs from the end of the send ----------------------------------------------------


class _SlowTaker:
    """Binance, whose first create_order hangs for ccxt's whole timeout and is taken at its very end
    (visible 0.5 s later); a filled order's id is free again (unique among open orders only)."""

    id = "binance"
    precisionMode = ccxt.TICK_SIZE
    markets: dict[str, Any] = {}

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.book: list[tuple[float, dict[str, Any]]] = []  # (visible from, order)

    def create_order(self, symbol: str, type: str, side: str, amount: float, price: Any, params: Any) -> Any:
        order = {
            "id": str(len(self.book) + 1),
            "symbol": symbol,
            "type": type,
            "side": side,
            "amount": amount,
            "status": "closed",
            "clientOrderId": params["newClientOrderId"],
            "info": {},
        }
        if not self.book:
            self.clock[0] += 10.0
            self.book.append((self.clock[0] + 0.5, order))
            raise ccxt.RequestTimeout("binance POST https://api.binance.com/api/v3/order")
        self.book.append((self.clock[0], order))
        return order

    def fetch_order(self, id: Any, symbol: Any = None, params: Any = None) -> Any:
        for visible, order in self.book:
            if order["clientOrderId"] == params["origClientOrderId"] and self.clock[0] >= visible:
                return order
        raise ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}')


def test_the_lag_runs_from_the_lost_answer_not_the_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send taken by the exchange at the end of ccxt's 10 s timeout is not visible at once: the
    1 s lag counted from the send's start had long passed, so the filled market order was resent."""
    clock = [T0]
    monkeypatch.setattr(placement, "time", types.SimpleNamespace(time=lambda: clock[0]))
    ex, profile = _SlowTaker(clock), load_profile("binance")
    plan = create_plan(
        ex,
        profile,
        OrderRecovery(profile),
        ("BTC/USDT", "market", "buy", 0.001),
        {},
        Deadline(math.inf, math.inf),
    )
    order = run_plan_sync(plan, sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    assert order["id"] == "1"
    assert len(ex.book) == 1
