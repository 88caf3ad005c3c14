"""Client order ids and the decisions that get an order placed (or cancelled) exactly once.

An order carries a client order id that follows the exchange's rule (``newClientOrderId`` on Binance,
``clientOid`` on KuCoin, ``clientOrderId`` on Bitvavo). When create_order or cancel_order fails after the
request may have left (timeout, dropped connection), ``OrderRecovery`` says what to do next from what a
lookup by that id returned: return the order, wait out the exchange's visibility lag and look again,
resend with the same id, or give up with ``OrderStateUnknown``. Pure decisions, no I/O: the client
makes the calls and the waits.
"""

from __future__ import annotations

import enum
import math
import os
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ccxt

from hardened.adapters import ExchangeProfile, FailureKind, LookupCall, load_profile
from hardened.errors import (
    ClientOrderIdConflict,
    ClientOrderIdInUse,
    ErrorKind,
    OrderStateUnknown,
    classify,
    http_status_of,
)

__all__ = [
    "OrderRecovery",
    "OrderRequest",
    "RecoveryAction",
    "RecoveryState",
    "RecoveryStep",
    "client_order_id_param",
    "is_ambiguous_failure",
    "is_order_not_found",
    "market_of",
    "new_client_order_id",
    "order_mismatch",
    "with_client_order_id",
]

# Order statuses (ccxt unified) after which there is nothing left to cancel.
_FINISHED = frozenset({"closed", "canceled", "cancelled", "expired", "rejected"})
_UUID_MARKER = b"hd"  # 0x6864: Bitvavo ids (UUIDs) made here start with "6864"
# create_order params that size an order by its cost in the quote currency: ccxt's unified one,
# Binance's, KuCoin's and Bitvavo's own
_COST_PARAMS = ("cost", "quoteOrderQty", "funds", "amountQuote")
_PLACED_KEPT = 10_000  # client order ids whose returned order a client remembers (about 2 MB at most)


def new_client_order_id(exchange_id: str) -> str:
    """A fresh client order id valid for ``exchange_id``'s rule, recognisable by its ``hd`` prefix.

    Token ids are the prefix and up to 32 random hex digits (128 bits); UUID ids are random v4 UUIDs
    whose first two bytes spell ``hd`` (``6864....``).
    """
    spec = load_profile(exchange_id).client_order_id
    if spec.format == "uuid":
        raw = bytearray(os.urandom(16))
        raw[0:2] = _UUID_MARKER
        return str(uuid.UUID(bytes=bytes(raw), version=4))
    digits = min(32, spec.max_length - len(spec.prefix))
    return spec.prefix + secrets.token_hex((digits + 1) // 2)[:digits]


def client_order_id_param(exchange_id: str) -> str:
    """The create_order parameter that carries the client order id on ``exchange_id``."""
    return load_profile(exchange_id).client_order_id.param


def with_client_order_id(exchange_id: str, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Params for create_order carrying a client order id, and that id.

    A caller-supplied id under any accepted name is kept (moved to the exchange's own parameter) after
    checking it against the exchange's rule; otherwise a new one is made. The caller's mapping is not
    modified.

    Raises:
        ccxt.InvalidOrder: the supplied id breaks the exchange's rule, or two names carry different ids.
    """
    spec = load_profile(exchange_id).client_order_id
    result = dict(params) if params else {}
    supplied: dict[str, Any] = {}
    for name in spec.names:
        if name in result:
            value = result.pop(name)
            if value is not None:
                supplied[name] = value
    if not supplied:
        client_order_id = new_client_order_id(exchange_id)
    else:
        values = {str(value) for value in supplied.values()}
        if len(values) > 1:
            names = ", ".join(spec.names)
            raise ccxt.InvalidOrder(
                f"{exchange_id}: conflicting client order ids {supplied!r}; pass one of {names}"
            )
        (name, value), *_ = supplied.items()
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ccxt.InvalidOrder(
                f"{exchange_id}: client order id in {name!r} must be a string, got {value!r}"
            )
        client_order_id = str(value)
        if not spec.is_valid(client_order_id):
            raise ccxt.InvalidOrder(
                f"{exchange_id}: client order id {client_order_id!r} in {name!r} breaks the exchange's rule: "
                f"{spec.rule}"
            )
    result[spec.param] = client_order_id
    return result, client_order_id


def is_ambiguous_failure(profile: ExchangeProfile, exc: BaseException) -> bool:
    """Whether a failed order call may still have been executed, so it must be looked up, not resent.

    Timeouts and dropped connections are ambiguous; so are the exchange answers the profile marks
    ``ambiguous`` (Binance -1006/-1007/5xx, Bitvavo 101/109, ...). Refusals (rate limits, bans,
    validation, funds) are not: the exchange did not take the order.
    """
    rule = profile.classify_exception(exc)
    status = http_status_of(exc)
    if rule is not None and (rule.code is not None or rule.message is not None):
        return rule.ambiguous  # the exchange itself said what happened, in its own words
    if status is not None and status >= 500:
        # A bare 5xx (an HTML page from a proxy or load balancer) says nothing about whether the
        # matching engine took the order: look it up rather than trust a status-only rule.
        return True
    if rule is not None:
        return rule.ambiguous
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.OnMaintenance)):
        return False
    if status is not None and 400 <= status < 500 and status != 408:
        return False  # the exchange answered and refused the request
    return isinstance(exc, (ccxt.RequestTimeout, ccxt.NetworkError, ccxt.BadResponse))


def is_order_not_found(profile: ExchangeProfile, error: BaseException) -> bool:
    """Whether ``error`` is the exchange saying it has no such order: its profile's
    ORDER_NOT_FOUND codes first, else ccxt's ``OrderNotFound``."""
    rule = profile.classify_exception(error)
    if rule is not None:
        return rule.kind is FailureKind.ORDER_NOT_FOUND
    return isinstance(error, ccxt.OrderNotFound)


def is_clock_skew(profile: ExchangeProfile, error: BaseException) -> bool:
    """Whether ``error`` is the exchange refusing a request for its timestamp (Binance -1021,
    "outside of the recvWindow"): refused before it was looked at, so nothing was placed or
    cancelled. Its profile's CLOCK_SKEW codes first, else ccxt's class and wording."""
    rule = profile.classify_exception(error)
    if rule is not None:
        return rule.kind is FailureKind.CLOCK_SKEW
    return classify(error) is ErrorKind.CLOCK_SKEW


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a create_order asked for, and the market's steps to compare amounts and prices with.

    ``amount_step``/``price_step`` are the market's precision as a step size (an exchange may round
    the amount or price it books to them); None compares with a relative tolerance of 1e-9.
    """

    symbol: str | None
    type: str | None
    side: str | None
    amount: float | None
    price: float | None
    amount_step: float | None = None
    price_step: float | None = None

    @classmethod
    def of(
        cls,
        exchange: Any,
        symbol: Any,
        type: Any,
        side: Any,
        amount: Any,
        price: Any,
        params: Mapping[str, Any] | None = None,
    ) -> OrderRequest:
        """The request as sent, with the steps of ``symbol``'s market if the markets are loaded.

        An order sized by what it costs (``params`` with ccxt's ``cost`` or an exchange's own quote
        amount: ``create_market_buy_order_with_cost`` passes the cost as the amount) has no amount
        to compare: the order found holds the base amount the cost bought.
        """
        market = market_of(exchange, symbol)
        if isinstance(market, Mapping) and isinstance(market.get("symbol"), str):
            symbol = market["symbol"]  # a market id ("BTCUSDT") names the order found by its symbol
        precision = market.get("precision") if isinstance(market, Mapping) else None
        mode = getattr(exchange, "precisionMode", ccxt.TICK_SIZE)
        by_cost = isinstance(params, Mapping) and any(params.get(key) is not None for key in _COST_PARAMS)
        return cls(
            symbol if isinstance(symbol, str) else None,
            type.lower() if isinstance(type, str) else None,
            side.lower() if isinstance(side, str) else None,
            None if by_cost else _number(amount),
            _number(price),
            _step(precision, "amount", mode),
            _step(precision, "price", mode),
        )


def market_of(exchange: Any, symbol: Any) -> Any:
    """The loaded market ``symbol`` names, as ccxt's ``create_order`` resolves it (a unified symbol
    or an exchange market id such as ``BTCUSDT``); None when the markets are not loaded or it is
    unknown. Without it an order placed by market id is found under its unified symbol and taken
    for another request's order."""
    if not isinstance(symbol, str):
        return None
    markets = getattr(exchange, "markets", None)
    if not isinstance(markets, Mapping) or not markets:
        return None
    market = markets.get(symbol)
    if market is None and callable(getattr(exchange, "market", None)):
        try:
            market = exchange.market(symbol)  # ccxt's own resolution: ids, and its defaultType
        except Exception:  # an unknown symbol: ccxt refuses it when it sends
            return None
    return market


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _step(precision: Any, key: str, mode: Any) -> float | None:
    """A market precision as a step size: ccxt gives a tick size, or a number of decimal places."""
    value = _number(precision.get(key)) if isinstance(precision, Mapping) else None
    if value is None or value <= 0:
        return None
    if mode == ccxt.DECIMAL_PLACES:
        return 10.0**-value
    if mode == ccxt.TICK_SIZE:
        return value
    return None  # significant digits: no fixed step, compare relatively


def _close(asked: float, found: float, step: float | None) -> bool:
    """Equal within one step of the market's precision (rounding), else within 1e-9 relative."""
    tolerance = 1e-9 * max(abs(asked), abs(found))
    if step is not None:
        tolerance = max(tolerance, step * (1 + 1e-9))
    return abs(asked - found) <= tolerance


def order_mismatch(request: OrderRequest, order: Any) -> dict[str, tuple[Any, Any]]:
    """The fields in which ``order`` (unified) differs from ``request``: field -> (asked, found).

    Symbol, side and amount always; price for limit orders. A field the order leaves empty cannot
    disagree (some lookups answer sparsely); an order that is not a mapping differs in everything.
    """
    if not isinstance(order, Mapping):
        return {"order": (request.symbol, order)}
    mismatched: dict[str, tuple[Any, Any]] = {}
    found_symbol = order.get("symbol")
    if request.symbol is not None and found_symbol is not None and found_symbol != request.symbol:
        mismatched["symbol"] = (request.symbol, found_symbol)
    found_side = order.get("side")
    if request.side is not None and isinstance(found_side, str) and found_side.lower() != request.side:
        mismatched["side"] = (request.side, found_side)
    found_amount = _number(order.get("amount"))
    if (
        request.amount is not None
        and found_amount is not None
        and not _close(request.amount, found_amount, request.amount_step)
    ):
        mismatched["amount"] = (request.amount, found_amount)
    if request.type == "limit" and request.price is not None:
        found_price = _number(order.get("price"))
        if found_price is not None and not _close(request.price, found_price, request.price_step):
            mismatched["price"] = (request.price, found_price)
    return mismatched


def _stamped_before(order: Any, not_before_ms: float | None) -> tuple[int, int] | None:
    """``(not_before_ms, timestamp)`` when ``order`` carries an exchange timestamp earlier than
    ``not_before_ms``; None when it is not earlier, or carries no timestamp (nothing to judge by)."""
    if not_before_ms is None or not isinstance(order, Mapping):
        return None
    stamp = _number(order.get("timestamp"))
    if stamp is None or stamp >= not_before_ms:
        return None
    return round(not_before_ms), round(stamp)


class RecoveryAction(enum.Enum):
    """The next move after an ambiguous failure."""

    LOOKUP = "lookup"  # wait delay_s, then fetch the order by its client order id
    RETURN = "return"  # the order exists: return it as the result of create_order
    RESEND = "resend"  # the exchange does not have it: wait delay_s, send again with the same id
    DONE = "done"  # cancel: nothing is left open (order finished or absent)
    GIVE_UP = "give_up"  # raise step.error (OrderStateUnknown)


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """One decision: the action, the wait before it, and the order or error it carries."""

    action: RecoveryAction
    delay_s: float = 0.0
    order: Any = None
    error: ccxt.BaseError | None = None  # OrderStateUnknown, or ClientOrderIdConflict
    reason: str = ""


class RecoveryState:
    """What one recovery has seen so far; created by ``OrderRecovery.start_create/start_cancel``."""

    __slots__ = (
        "client_order_id",
        "failures",
        "lookups",
        "market_type",
        "not_before_ms",
        "operation",
        "order_id",
        "placed_with",
        "request",
        "resends",
        "sent_at",
        "symbol",
    )

    def __init__(
        self,
        operation: str,
        client_order_id: str | None,
        symbol: str | None,
        sent_at: float,
        request: OrderRequest | None = None,
        *,
        order_id: str | None = None,
    ) -> None:
        self.operation = operation
        self.client_order_id = client_order_id  # create: the id the order was sent under
        self.order_id = order_id  # cancel: the exchange's id the caller cancels by
        self.symbol = symbol
        # the visibility lag runs from here: when the last send ended without an answer (the
        # exchange may take an order as late as that), not when it started
        self.sent_at = sent_at
        self.request = request  # create: what was asked, to check the order found is ours
        # create: an order found with an exchange timestamp before this (ms) predates this call
        self.not_before_ms: float | None = None
        # create: the params it was sent with and its market's type, to look it up where it lives
        self.placed_with: Mapping[str, Any] | None = None
        self.market_type: str | None = None
        self.lookups = 0
        self.failures = 0
        self.resends = 0

    def __repr__(self) -> str:
        return (
            f"RecoveryState({self.operation} {self.client_order_id or self.order_id} {self.symbol}: "
            f"lookups={self.lookups} "
            f"failures={self.failures} resends={self.resends})"
        )


class OrderRecovery:
    """Decides how to learn the fate of an order after an ambiguous create_order or cancel_order failure.

    create: look the order up by its client order id; found -> return it; not found while still within
    the exchange's visibility lag -> wait and look again; not found after the lag -> resend with the same
    id (the exchange refuses a duplicate, so a resend cannot double the order); lookups failing
    ``max_lookups`` times -> give up with ``OrderStateUnknown``.
    cancel: look the order up; finished (closed/canceled/expired/rejected) -> done; still open -> send
    the cancel again; absent after the lag -> done (nothing open to cancel).

    Args:
        profile: the exchange profile (client order id lookups, visibility lag).
        max_lookups: most lookups in one recovery before giving up.
        lag_ms: visibility lag to allow after sending; defaults to the profile's.
        max_resends: most resends of a create or cancel before giving up.
        max_backoff_s: cap on the wait between failed lookups.
        clock_skew_ms: how far before our first send (by the exchange's clock, as ccxt's
            ``timeDifference`` estimates it) an order found may be stamped and still be this call's;
            stamped earlier, it is an earlier order that reused the client order id.
    """

    __slots__ = (
        "_in_flight",
        "_lock",
        "_placed",
        "clock_skew_ms",
        "lag_s",
        "max_backoff_s",
        "max_lookups",
        "max_resends",
        "profile",
    )

    def __init__(
        self,
        profile: ExchangeProfile,
        max_lookups: int = 5,
        lag_ms: int | None = None,
        *,
        max_resends: int = 1,
        max_backoff_s: float = 5.0,
        clock_skew_ms: float = 5000.0,
    ) -> None:
        if max_lookups < 1:
            raise ValueError(f"max_lookups must be at least 1, got {max_lookups}")
        if max_resends < 0:
            raise ValueError(f"max_resends must be at least 0, got {max_resends}")
        lag = profile.client_order_id.visibility_lag_ms if lag_ms is None else lag_ms
        if lag < 0:
            raise ValueError(f"lag_ms must be at least 0, got {lag}")
        if not clock_skew_ms >= 0:
            raise ValueError(f"clock_skew_ms must be at least 0, got {clock_skew_ms}")
        self.clock_skew_ms = clock_skew_ms
        self.profile = profile
        self.max_lookups = max_lookups
        self.lag_s = lag / 1000.0
        self.max_resends = max_resends
        self.max_backoff_s = max_backoff_s
        self._in_flight: set[str] = set()  # client order ids of this client's create_orders in flight
        self._lock = threading.Lock()  # held for a set operation only, never across a call
        # client order id -> exchange order id of the latest order a create_order of this client
        # returned under it: found again by a later call reusing the id, it is that earlier order
        self._placed: OrderedDict[str, str] = OrderedDict()

    # -- ids in flight --------------------------------------------------------------------------------

    def claim(self, client_order_id: str) -> None:
        """Mark ``client_order_id`` in flight; refuse it while another create_order holds it.

        Two overlapping calls with one id would each look up "their" order after a lost answer and
        both find the first; refusing the second before it is sent keeps every order with its call.

        Raises:
            ClientOrderIdInUse: another call of this client holds the id (a ``ccxt.InvalidOrder``).
        """
        with self._lock:
            if client_order_id in self._in_flight:
                raise ClientOrderIdInUse(self.profile.exchange, client_order_id)
            self._in_flight.add(client_order_id)

    def release(self, client_order_id: str) -> None:
        """The call holding ``client_order_id`` has ended (placed, refused, failed or cancelled)."""
        with self._lock:
            self._in_flight.discard(client_order_id)

    def in_flight(self) -> frozenset[str]:
        """Client order ids held by calls in flight right now."""
        with self._lock:
            return frozenset(self._in_flight)

    def _returned_before(self, client_order_id: str | None, order: Any) -> bool:
        """Whether ``order`` is the one an earlier create_order of this client returned under the id."""
        order_id = order.get("id") if isinstance(order, Mapping) else None
        if client_order_id is None or order_id is None:
            return False
        with self._lock:
            return self._placed.get(client_order_id) == str(order_id)

    def placed(self, client_order_id: str, order: Any) -> None:
        """A create_order of this client returned ``order`` under ``client_order_id``: remembered
        (the latest ``_PLACED_KEPT`` ids) so a later call that reuses the id and finds this very
        order after a lost answer knows it for an earlier one, however soon after it came."""
        order_id = order.get("id") if isinstance(order, Mapping) else None
        if order_id is None:
            return
        with self._lock:
            self._placed[client_order_id] = str(order_id)
            self._placed.move_to_end(client_order_id)
            while len(self._placed) > _PLACED_KEPT:
                self._placed.popitem(last=False)

    # -- starting -----------------------------------------------------------------------------------

    def start_create(
        self,
        client_order_id: str,
        symbol: str | None,
        sent_at: float,
        request: OrderRequest | None = None,
        *,
        exchange_offset_ms: float = 0.0,
        clock_skew_ms: float = 0.0,
        placed_with: Mapping[str, Any] | None = None,
        market_type: str | None = None,
        answer_lost_at: float | None = None,
    ) -> RecoveryState:
        """Begin recovering a create_order first sent at ``sent_at`` (epoch s, our clock) whose answer
        was lost; with ``request``, an order found by the id must match it to be returned.

        An order found must also not be stamped (``timestamp``, the exchange's clock) before the
        send: ``exchange_offset_ms`` is the exchange's clock minus ours (ccxt's ``-timeDifference``),
        and the larger of ``clock_skew_ms`` and this recovery's own allowance absorbs what that
        estimate misses. ``placed_with`` (the params sent) and ``market_type`` choose the endpoint
        the order is looked up on (KuCoin keeps hf and stop orders apart from classic ones).
        ``answer_lost_at``: when the send ended without an answer (default ``sent_at``); the
        exchange's visibility lag runs from then, as a send that hung for ccxt's whole timeout may
        have been taken at its very end.
        """
        lag_from = sent_at if answer_lost_at is None else max(sent_at, answer_lost_at)
        state = RecoveryState("create", client_order_id, symbol, lag_from, request)
        state.placed_with = placed_with
        state.market_type = market_type
        state.not_before_ms = sent_at * 1000.0 + exchange_offset_ms - max(self.clock_skew_ms, clock_skew_ms)
        return state

    def start_cancel(
        self,
        order_id: str | None,
        symbol: str | None,
        sent_at: float,
        client_order_id: str | None = None,
        *,
        answer_lost_at: float | None = None,
    ) -> RecoveryState:
        """Begin recovering a cancel_order of the exchange's order ``order_id`` that timed out, or
        answered "order not found" after a timeout (None when it names the order by client order
        id in its params); its client order id only if known. The lag
        runs from ``answer_lost_at`` (when the send ended; default ``sent_at``)."""
        lag_from = sent_at if answer_lost_at is None else max(sent_at, answer_lost_at)
        return RecoveryState("cancel", client_order_id, symbol, lag_from, order_id=order_id)

    def first_step(self, state: RecoveryState, now: float) -> RecoveryStep:
        """The first move: look the order up at once."""
        return self._lookup(state, 0.0, "answer lost: look the order up by its client order id")

    # -- the calls to make --------------------------------------------------------------------------

    def lookup_call(self, state: RecoveryState) -> LookupCall:
        """The ccxt call that fetches the order by its client order id."""
        return self.profile.client_order_id.lookup_call(
            state.client_order_id, state.symbol, state.placed_with, state.market_type
        )

    def cancel_call(self, state: RecoveryState) -> LookupCall:
        """The ccxt call that cancels the order by its client order id."""
        return self.profile.client_order_id.cancel_call(state.client_order_id, state.symbol)

    # -- what a lookup returned ---------------------------------------------------------------------

    def on_found(self, state: RecoveryState, order: Any, now: float) -> RecoveryStep:
        """The lookup returned the order; for a create, only ours (same symbol, side, amount, price)
        is returned, another request's order under the same id ends the recovery with a conflict."""
        if state.operation == "create":
            mismatched = order_mismatch(state.request, order) if state.request is not None else {}
            # Binance and Bitvavo need an id unique among OPEN orders only: a finished order may
            # hold the id this call reused. Not ours, and never to be resent over.
            because = None
            stamped = _stamped_before(order, state.not_before_ms)
            if stamped is not None:
                mismatched["timestamp"] = stamped
                because = (
                    f"its timestamp {stamped[1]} is before this call first sent it ({stamped[0]}, "
                    "the send by the exchange's clock less the clock-skew allowance)"
                )
            elif self._returned_before(state.client_order_id, order):
                because = "an earlier create_order of this client returned it"
            if mismatched or because is not None:
                order_id = order.get("id") if isinstance(order, Mapping) else None
                error = ClientOrderIdConflict(
                    str(state.client_order_id), order_id, mismatched, earlier_because=because
                )
                return RecoveryStep(
                    RecoveryAction.GIVE_UP, order=order, error=error, reason="the id holds another order"
                )
            return RecoveryStep(RecoveryAction.RETURN, order=order, reason="the exchange has the order")
        status = order.get("status") if isinstance(order, Mapping) else None
        if status in _FINISHED:
            return RecoveryStep(
                RecoveryAction.DONE, order=order, reason=f"order is {status}: nothing to cancel"
            )
        if state.resends >= self.max_resends:
            return self._give_up(
                state, f"order still {status or 'open'} after {state.resends} cancel resends"
            )
        state.resends += 1
        state.sent_at = now
        return RecoveryStep(
            RecoveryAction.RESEND, order=order, reason=f"order still {status or 'open'}: cancel again"
        )

    def on_not_found(self, state: RecoveryState, now: float) -> RecoveryStep:
        """The lookup answered that no order has this client order id."""
        visible_at = state.sent_at + self.lag_s
        if now < visible_at:
            return self._lookup(state, visible_at - now, "not visible yet: within the exchange's lag")
        if state.operation == "cancel":
            return RecoveryStep(
                RecoveryAction.DONE, reason="no such order after the lag: nothing open to cancel"
            )
        if state.resends >= self.max_resends:
            return self._give_up(state, f"order not found after {state.resends} resends")
        state.resends += 1
        return RecoveryStep(RecoveryAction.RESEND, reason="not found after the lag: resend with the same id")

    def on_lookup_failed(self, state: RecoveryState, error: BaseException, now: float) -> RecoveryStep:
        """The lookup raised: "order not found" answers count as ``on_not_found``, others as failures."""
        if is_order_not_found(self.profile, error):
            return self.on_not_found(state, now)
        state.failures += 1
        delay = min(self.max_backoff_s, max(self.lag_s, 0.1) * 2.0 ** (state.failures - 1))
        return self._lookup(state, delay, f"lookup failed ({type(error).__name__}): try again")

    def on_resend_duplicate(self, state: RecoveryState, now: float) -> RecoveryStep:
        """A resend was refused as a duplicate: the first order exists after all; look it up again."""
        return self._lookup(state, 0.0, "resend refused as duplicate: the order exists")

    def on_resend_failed(self, state: RecoveryState, now: float) -> RecoveryStep:
        """A resend failed ambiguously too: start over from its send time."""
        state.sent_at = now
        return self._lookup(state, 0.0, "resend answer lost: look the order up")

    def out_of_time(self, state: RecoveryState, call_deadline: float, step: RecoveryStep) -> RecoveryStep:
        """The call's deadline has passed, or the wait before ``step`` would end past it: give up
        now with ``OrderStateUnknown`` (the id in hand) rather than look or send past the deadline."""
        looking = step.action is RecoveryAction.LOOKUP
        what = "look the order up" if looking else "send again"
        done = state.lookups - 1 if looking else state.lookups  # a LOOKUP step counts itself when made
        if step.delay_s > 0:
            why = f"the {step.delay_s:.1f}s wait to {what} would pass the call_deadline of {call_deadline:g}s"
        else:
            why = f"the call_deadline of {call_deadline:g}s passed before it could {what}"
        return self._give_up(state, f"{why} (after {done} lookups)")

    # -- helpers ------------------------------------------------------------------------------------

    def _lookup(self, state: RecoveryState, delay_s: float, reason: str) -> RecoveryStep:
        if state.lookups >= self.max_lookups:
            return self._give_up(state, f"{state.lookups} lookups did not settle it ({reason})")
        state.lookups += 1
        return RecoveryStep(RecoveryAction.LOOKUP, delay_s=delay_s, reason=reason)

    def _give_up(self, state: RecoveryState, reason: str) -> RecoveryStep:
        what = "create_order" if state.operation == "create" else "cancel_order"
        error = OrderStateUnknown(
            state.client_order_id, state.symbol, f"{what}: {reason}", order_id=state.order_id
        )
        return RecoveryStep(RecoveryAction.GIVE_UP, error=error, reason=reason)
