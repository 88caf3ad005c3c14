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
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ccxt

from hardened.adapters import ExchangeProfile, FailureKind, LookupCall, load_profile
from hardened.errors import OrderStateUnknown, http_status_of

__all__ = [
    "OrderRecovery",
    "RecoveryAction",
    "RecoveryState",
    "RecoveryStep",
    "client_order_id_param",
    "is_ambiguous_failure",
    "new_client_order_id",
    "with_client_order_id",
]

# Order statuses (ccxt unified) after which there is nothing left to cancel.
_FINISHED = frozenset({"closed", "canceled", "cancelled", "expired", "rejected"})
_UUID_MARKER = b"hd"  # 0x6864: Bitvavo ids (UUIDs) made here start with "6864"


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
    error: OrderStateUnknown | None = None
    reason: str = ""


class RecoveryState:
    """What one recovery has seen so far; created by ``OrderRecovery.start_create/start_cancel``."""

    __slots__ = ("client_order_id", "failures", "lookups", "operation", "resends", "sent_at", "symbol")

    def __init__(self, operation: str, client_order_id: str, symbol: str | None, sent_at: float) -> None:
        self.operation = operation
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.sent_at = sent_at
        self.lookups = 0
        self.failures = 0
        self.resends = 0

    def __repr__(self) -> str:
        return (
            f"RecoveryState({self.operation} {self.client_order_id} {self.symbol}: lookups={self.lookups} "
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
    """

    __slots__ = ("lag_s", "max_backoff_s", "max_lookups", "max_resends", "profile")

    def __init__(
        self,
        profile: ExchangeProfile,
        max_lookups: int = 5,
        lag_ms: int | None = None,
        *,
        max_resends: int = 1,
        max_backoff_s: float = 5.0,
    ) -> None:
        if max_lookups < 1:
            raise ValueError(f"max_lookups must be at least 1, got {max_lookups}")
        if max_resends < 0:
            raise ValueError(f"max_resends must be at least 0, got {max_resends}")
        lag = profile.client_order_id.visibility_lag_ms if lag_ms is None else lag_ms
        if lag < 0:
            raise ValueError(f"lag_ms must be at least 0, got {lag}")
        self.profile = profile
        self.max_lookups = max_lookups
        self.lag_s = lag / 1000.0
        self.max_resends = max_resends
        self.max_backoff_s = max_backoff_s

    # -- starting -----------------------------------------------------------------------------------

    def start_create(self, client_order_id: str, symbol: str | None, sent_at: float) -> RecoveryState:
        """Begin recovering a create_order sent at ``sent_at`` (epoch s) whose answer was lost."""
        return RecoveryState("create", client_order_id, symbol, sent_at)

    def start_cancel(self, client_order_id: str, symbol: str | None, sent_at: float) -> RecoveryState:
        """Begin recovering a cancel_order that timed out, or answered "order not found" after a timeout."""
        return RecoveryState("cancel", client_order_id, symbol, sent_at)

    def first_step(self, state: RecoveryState, now: float) -> RecoveryStep:
        """The first move: look the order up at once."""
        return self._lookup(state, 0.0, "answer lost: look the order up by its client order id")

    # -- the calls to make --------------------------------------------------------------------------

    def lookup_call(self, state: RecoveryState) -> LookupCall:
        """The ccxt call that fetches the order by its client order id."""
        return self.profile.client_order_id.lookup_call(state.client_order_id, state.symbol)

    def cancel_call(self, state: RecoveryState) -> LookupCall:
        """The ccxt call that cancels the order by its client order id."""
        return self.profile.client_order_id.cancel_call(state.client_order_id, state.symbol)

    # -- what a lookup returned ---------------------------------------------------------------------

    def on_found(self, state: RecoveryState, order: Any, now: float) -> RecoveryStep:
        """The lookup returned the order."""
        if state.operation == "create":
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
        rule = self.profile.classify_exception(error)
        if rule is not None:
            not_found = rule.kind is FailureKind.ORDER_NOT_FOUND
        else:
            not_found = isinstance(error, ccxt.OrderNotFound)
        if not_found:
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

    # -- helpers ------------------------------------------------------------------------------------

    def _lookup(self, state: RecoveryState, delay_s: float, reason: str) -> RecoveryStep:
        if state.lookups >= self.max_lookups:
            return self._give_up(state, f"{state.lookups} lookups did not settle it ({reason})")
        state.lookups += 1
        return RecoveryStep(RecoveryAction.LOOKUP, delay_s=delay_s, reason=reason)

    def _give_up(self, state: RecoveryState, reason: str) -> RecoveryStep:
        what = "create_order" if state.operation == "create" else "cancel_order"
        error = OrderStateUnknown(state.client_order_id, state.symbol, f"{what}: {reason}")
        return RecoveryStep(RecoveryAction.GIVE_UP, error=error, reason=reason)
