"""Error classes the wrapper raises, and the classification of ccxt errors.

Every class here subclasses the ccxt error a caller already catches, so swapping a raw exchange for a
hardened one changes no ``except`` clause. ``classify`` is a pure function: it decides what kind of
failure an exception is (transient, rate limit, clock skew, permanent) and the retry and breaker
stages act on that decision.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import ccxt

__all__ = [
    "CircuitOpenError",
    "ClientOrderIdConflict",
    "ClientOrderIdInUse",
    "DataQualityError",
    "DeadlineExceeded",
    "ErrorKind",
    "OrderStateUnknown",
    "RateLimitBackoff",
    "RequestSkipped",
    "classify",
    "http_status_of",
]


class CircuitOpenError(ccxt.ExchangeNotAvailable):
    """The endpoint's breaker is open: the call was not attempted and nothing touched the network."""

    def __init__(self, breaker: str, retry_in: float | None = None) -> None:
        self.breaker = breaker
        self.retry_in = retry_in
        hint = f"; next probe in {retry_in:.1f}s" if retry_in is not None else ""
        super().__init__(f"circuit breaker {breaker} is open, call not attempted{hint}")


class RequestSkipped(ccxt.ExchangeNotAvailable):
    """The learning gate predicted this call would fail and skipped it."""

    def __init__(self, endpoint: str, probability: float, reason: str = "") -> None:
        self.endpoint = endpoint
        self.probability = probability
        self.reason = reason
        extra = f" ({reason})" if reason else ""
        super().__init__(f"{endpoint}: call skipped, predicted failure probability {probability:.0%}{extra}")


class RateLimitBackoff(ccxt.RateLimitExceeded):
    """The exchange's rate-limit budget is spent (or the IP is banned) for longer than we may wait
    (``max_delay``, or the time left before ``call_deadline``): the call was not sent, so it cannot
    make the ban longer. ``detail`` says which limit refused the wait, when it is not the ban's."""

    def __init__(
        self, exchange: str, endpoint: str, retry_in: float, banned: bool, *, detail: str = ""
    ) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.retry_in = retry_in
        self.banned = banned
        why = "banned by the exchange" if banned else "rate-limit budget spent"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{exchange} {endpoint}: {why}, call not sent; next call allowed in {retry_in:.1f}s{extra}"
        )


class DeadlineExceeded(ccxt.RequestTimeout):
    """The call ran out of its ``call_deadline`` (retries, waits and slow answers included)."""

    def __init__(self, endpoint: str, deadline: float, detail: str = "", *, sent: bool = True) -> None:
        self.endpoint = endpoint
        self.deadline = deadline
        self.sent = sent  # False: refused before the request went out (nothing reached the exchange)
        extra = f": {detail}" if detail else ""
        super().__init__(f"{endpoint}: call deadline of {deadline:g}s exceeded{extra}")


class DataQualityError(ccxt.BadResponse):
    """The answer arrived but scored below ``min_quality_score`` or held impossible values (high <
    low, a negative price, a crossed book...); ``report`` says what was wrong."""

    def __init__(self, endpoint: str, score: float, report: Any, detail: str | None = None) -> None:
        self.endpoint = endpoint
        self.score = score
        self.report = report
        impossible = getattr(report, "impossible", ())
        if impossible:
            codes = ", ".join(sorted({i.code for i in impossible}))
            why = f"impossible values ({codes}), data quality score {score:.0f}"
        else:
            why = f"data quality score {score:.0f} below the minimum"
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{endpoint}: {why}: {report}{extra}")


class OrderStateUnknown(ccxt.NetworkError):
    """An order was sent but whether the exchange holds it could not be learned; reconcile by its id.

    ``client_order_id`` is the id a create_order placed the order under; ``order_id`` the
    exchange's own id (a cancel_order knows only that one, so its ``client_order_id`` is None).
    """

    def __init__(
        self, client_order_id: str | None, symbol: str | None, reason: str, *, order_id: str | None = None
    ) -> None:
        self.client_order_id = client_order_id
        self.order_id = order_id
        self.symbol = symbol
        self.reason = reason
        ids = []
        if client_order_id is not None:
            ids.append(f"client order id {client_order_id}")
        if order_id is not None:
            ids.append(f"order id {order_id}")
        super().__init__(f"state of order with {' and '.join(ids) or 'no id'} ({symbol}) unknown: {reason}")


class ClientOrderIdConflict(ccxt.DuplicateOrderId):
    """The order the exchange holds under this client order id is not the order asked for.

    Found while recovering a lost answer (or after the exchange refused a resend as a repeat of an
    id): its symbol, side, amount or price differ, or it is an earlier order that reused the id
    (Binance and Bitvavo want an id unique among open orders only), so it belongs to another
    request and is never returned as this one. ``mismatched`` maps each differing field to
    ``(asked, found)``. ``earlier`` is set for an earlier order: ``earlier_because`` says how it was
    known (its exchange timestamp is before this call's first send, or an earlier create_order of
    this client returned it), and ``mismatched["timestamp"]``, when that decided, holds ``(the
    earliest time this call's order could carry, the order's timestamp)`` in ms.
    """

    def __init__(
        self,
        client_order_id: str,
        order_id: Any,
        mismatched: dict[str, tuple[Any, Any]],
        *,
        earlier_because: str | None = None,
    ) -> None:
        self.client_order_id = client_order_id
        self.order_id = order_id
        self.mismatched = mismatched
        self.earlier = earlier_because is not None
        self.earlier_because = earlier_because
        reasons = [
            f"{name} asked {asked!r} found {found!r}"
            for name, (asked, found) in mismatched.items()
            if name != "timestamp"
        ]
        if earlier_because is not None:
            reasons.append(f"an earlier order: {earlier_because}")
        outcome = (
            "the lookup by the id found that order, none placed by this call; nothing was resent"
            if earlier_because is not None
            else "this create_order was not placed under it"
        )
        super().__init__(
            f"client order id {client_order_id} is held by another order ({order_id}): "
            f"{'; '.join(reasons)}; {outcome}"
        )


class ClientOrderIdInUse(ccxt.DuplicateOrderId):
    """Another create_order of this client with the same client order id is still in flight: the
    second is refused before it is sent, so neither can be handed the other's order."""

    def __init__(self, exchange: str, client_order_id: str) -> None:
        self.exchange = exchange
        self.client_order_id = client_order_id
        super().__init__(
            f"{exchange}: client order id {client_order_id} is already in use by a create_order in flight "
            "on this client; wait for it to finish or use another id"
        )


class ErrorKind(enum.Enum):
    """What a failure means for the retry and breaker stages."""

    TRANSIENT = "transient"  # retry with back-off; counts against the breaker
    RATE_LIMIT = "rate_limit"  # back off (Retry-After or at least the rate-limit floor); counts
    CLOCK_SKEW = "clock_skew"  # resync the clock with the exchange, then retry; does not count
    PERMANENT = "permanent"  # the request itself is wrong: never retried, never counts


# ccxt's default HTTP map sends bare 4xx answers to ExchangeNotAvailable; these statuses mean the
# request was refused, not that the exchange is down, so they must not be retried as an outage.
_PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 407, 409, 410, 422, 451})
_HTTP_STATUS = re.compile(r"\s(\d{3})\s")
_CLOCK_SKEW_TEXT = re.compile(
    r"recvWindow|timestamp for this request|invalid (?:request )?timestamp|timestamp.*(?:expired|outside)"
    r"|nonce",
    re.IGNORECASE,
)

# Order matters: the first matching class decides. Subclasses come before their parents.
_PERMANENT = (
    ccxt.AuthenticationError,
    ccxt.BadSymbol,
    ccxt.BadRequest,
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.InvalidAddress,
    ccxt.NotSupported,
    ccxt.ArgumentsRequired,
    ccxt.OperationRejected,
)


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status ccxt wrote into an error message (``binance GET url 400 Bad Request ...``)."""
    match = _HTTP_STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def classify(exc: BaseException) -> ErrorKind:
    """Decide what kind of failure ``exc`` is; anything not from ccxt is treated as permanent."""
    if isinstance(exc, (CircuitOpenError, RequestSkipped, RateLimitBackoff)):
        return ErrorKind.PERMANENT  # our own fail-fast answers are never retried inside the wrapper
    if isinstance(exc, DeadlineExceeded) and not exc.sent:
        return ErrorKind.PERMANENT  # a wait the deadline refused, nothing sent: no exchange failure
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return ErrorKind.RATE_LIMIT
    if isinstance(exc, ccxt.InvalidNonce):
        return ErrorKind.CLOCK_SKEW
    if isinstance(exc, DataQualityError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, ccxt.ExchangeNotAvailable) and not isinstance(exc, ccxt.OnMaintenance):
        status = http_status_of(exc)
        if status in _PERMANENT_HTTP:
            return ErrorKind.PERMANENT
        return ErrorKind.TRANSIENT
    if isinstance(exc, ccxt.OperationFailed):  # NetworkError, RequestTimeout, BadResponse, ...
        return ErrorKind.TRANSIENT
    if isinstance(exc, _PERMANENT):
        if _CLOCK_SKEW_TEXT.search(str(exc)):
            return ErrorKind.CLOCK_SKEW  # some exchanges report a skewed timestamp as a bad request
        return ErrorKind.PERMANENT
    if isinstance(exc, ccxt.ExchangeError) and _CLOCK_SKEW_TEXT.search(str(exc)):
        return ErrorKind.CLOCK_SKEW
    return ErrorKind.PERMANENT
