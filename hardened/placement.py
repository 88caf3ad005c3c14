"""Orders placed exactly once, and cancels confirmed, across lost answers.

``create_order`` always carries a client order id (ours when the caller gave none). When the
answer is lost (a timeout, a dropped connection, an answer the exchange marks "execution status
unknown"), the order is looked up by that id before anything else: found, it is returned as if
the call had answered; still absent after the exchange's visibility lag, it is sent again with
the same id (a duplicate would be refused); unknowable, ``OrderStateUnknown`` carries the id.
An answer that is not an order (garbage, no order id) is a lost answer too. The order found must
be the one asked for (symbol, side, amount, price): another request's order under the same id
ends the call with ``ClientOrderIdConflict``, and two calls of one client never hold the same id
at once (the second gets ``ClientOrderIdInUse`` before anything is sent).
``cancel_order`` is treated the same careful way: after a lost answer the order is looked up,
and a finished order means the cancel is done.

A plan honours the call's ``call_deadline`` itself: it gives up with ``OrderStateUnknown`` (the
id in hand) as soon as the deadline has passed or its next wait would end past it, and hands the
async driver each lookup with the time left to bound it by (the sync client's watchdog cuts
requests off at the deadline). A send is never cut off mid-flight by the driver: ccxt's own
request timeout bounds it, and a lost answer is what the plan recovers from.

The decisions are ``hardened.orders.OrderRecovery``'s. The plan below is a generator that yields
what it needs done (a call, a wait) and receives the outcome, so the sync and async drivers are a
dozen lines each and the plan is written once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

import ccxt
import structlog

from hardened.adapters import ExchangeProfile, FailureKind
from hardened.errors import DataQualityError
from hardened.orders import (
    OrderRecovery,
    OrderRequest,
    RecoveryAction,
    is_ambiguous_failure,
    is_clock_skew,
    is_order_not_found,
    market_of,
    with_client_order_id,
)
from hardened.pipeline import current_call
from hardened.pipeline.validate import parser_failure
from hardened.quality.private import validate_order
from hardened.quality.report import QualityReport
from hardened.telemetry.events import bus

__all__ = ["Call", "Deadline", "Wait", "cancel_plan", "create_plan", "run_plan_async", "run_plan_sync"]

log = structlog.get_logger("hardened")


class Call:
    """Ask the driver to call ``fn(*args, **kwargs)`` and send back ``(result, error)``.

    ``within``: seconds the async driver may let the call run before cutting it off (a lookup,
    safe to cut off, bounded by the call's deadline); None for a send, which only ccxt's own
    request timeout bounds.
    """

    __slots__ = ("args", "fn", "kwargs", "within")

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.within: float | None = None


def _read(call: Call, within: float) -> Call:
    """``call`` marked as a read the driver may cut off after ``within`` seconds."""
    call.within = within
    return call


class Wait:
    """Ask the driver to wait ``seconds`` (the exchange's visibility lag, a back-off)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Outcome = tuple[Any, BaseException | None]
Plan = Generator[Call | Wait, Outcome | None, Any]


class Deadline:
    """When the call must be over, on ``clock`` (``time.perf_counter`` seconds by default).

    Args:
        at: the clock reading by which the call must be over (inf: no deadline).
        seconds: the ``call_deadline`` it came from, for messages.
        clock: the clock to read; tests pass their own.
    """

    __slots__ = ("at", "clock", "seconds")

    def __init__(self, at: float, seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.at = at
        self.seconds = seconds
        self.clock = clock

    @classmethod
    def of_current_call(cls) -> Deadline:
        """The deadline of the hardened call in flight (``call_deadline`` after it started);
        none outside one."""
        ctx = current_call.get()
        if ctx is None:
            return cls(math.inf, math.inf)
        seconds = ctx.rt.policy.call_deadline
        return cls(ctx.started + seconds, seconds)

    def left(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.at - self.clock()


# create_order(symbol, type, side, amount, price=None, params={})
_CREATE_ARGS = ("symbol", "type", "side", "amount", "price", "params")
# cancel_order(id, symbol=None, params={})
_CANCEL_ARGS = ("id", "symbol", "params")


def _bind(
    method: str, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments by name, refused as ccxt's own signature would refuse them (``TypeError``)
    before anything is sent: a surplus positional argument, an unknown keyword, or a keyword that
    repeats a positional one. Dropping a surplus argument silently would place an order the
    caller did not describe."""
    if len(args) > len(names):
        # named by position and type, not value: a value may be anything, a secret included
        surplus = ", ".join(
            f"#{index} ({type(value).__name__})"
            for index, value in enumerate(args[len(names) :], len(names) + 1)
        )
        raise TypeError(
            f"{method}() takes at most {len(names)} positional arguments ({', '.join(names)}) but "
            f"{len(args)} were given; surplus argument(s): {surplus}"
        )
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(
                f"{method}() got an unexpected keyword argument {key!r} (expected one of {', '.join(names)})"
            )
        if key in bound:
            raise TypeError(f"{method}() got multiple values for argument {key!r}")
        bound[key] = value
    return bound


def _resynced(
    exchange: Any,
    profile: ExchangeProfile,
    operation: str,
    error: BaseException,
    resync: Callable[[], Any] | None,
) -> Plan:
    """After a refusal for the request's timestamp (the local clock drifted from the exchange's),
    resynchronise the clock; True when the request should go once more. Orders are never retried
    by the pipeline, so without this every order fails until some other call resyncs."""
    if resync is None or not is_clock_skew(profile, error):
        return False
    log.warning("order_clock_resync", exchange=exchange.id, operation=operation, error=type(error).__name__)
    _, failed = yield Call(resync)
    return failed is None


def _is_duplicate(profile: ExchangeProfile, error: BaseException) -> bool:
    rule = profile.classify_exception(error)
    return rule is not None and rule.kind is FailureKind.DUPLICATE_ORDER


def create_plan(
    exchange: Any,
    profile: ExchangeProfile,
    recovery: OrderRecovery,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: Deadline | None = None,
    resync: Callable[[], Any] | None = None,
) -> Plan:
    """Place one order exactly once (see the module docstring); returns the unified order.
    ``deadline`` defaults to the current hardened call's; ``resync`` resynchronises the exchange
    clock (the client's), after which an order refused for its timestamp is sent once more."""
    bound = _bind("create_order", _CREATE_ARGS, args, kwargs)
    params, client_order_id = with_client_order_id(exchange.id, bound.get("params"))
    symbol = bound.get("symbol")
    send = (symbol, bound.get("type"), bound.get("side"), bound.get("amount"), bound.get("price"), params)
    request = OrderRequest.of(exchange, *send)
    recovery.claim(client_order_id)  # raises ClientOrderIdInUse while another call holds the id
    try:
        if deadline is None:
            deadline = Deadline.of_current_call()
        order = yield from _place(
            exchange, profile, recovery, send, request, client_order_id, deadline, resync
        )
        if _supplied(profile, bound.get("params")):  # only a caller's id can come round again
            recovery.placed(client_order_id, order)
        return order
    finally:
        recovery.release(client_order_id)


def _supplied(profile: ExchangeProfile, params: Any) -> bool:
    """Whether the caller's params carry a client order id of their own."""
    return isinstance(params, Mapping) and any(
        params.get(name) is not None for name in profile.client_order_id.names
    )


def _place(
    exchange: Any,
    profile: ExchangeProfile,
    recovery: OrderRecovery,
    send: tuple[Any, ...],
    request: OrderRequest,
    client_order_id: str,
    deadline: Deadline,
    resync: Callable[[], Any] | None = None,
) -> Plan:
    symbol = send[0]
    sent_at = time.time()
    order, first = yield Call(exchange.create_order, *send)
    if first is not None and (yield from _resynced(exchange, profile, "create_order", first, resync)):
        sent_at = time.time()  # refused for its timestamp, nothing placed: once more, the same id
        order, first = yield Call(exchange.create_order, *send)
    if first is None:
        if _test_answer(profile, send[5], order):
            return order  # a test order: validated, nothing placed, nothing to look up
        first = _not_an_order("create_order", order, require_status=False)
        if first is None:
            return _with_id(order, client_order_id)
    if not (is_ambiguous_failure(profile, first) or _no_verdict(profile, first)):
        raise first
    lost_at = time.time()  # the exchange may have taken the order as late as this
    log.warning(
        "order_answer_lost",
        exchange=exchange.id,
        client_order_id=client_order_id,
        symbol=symbol,
        error=type(first).__name__,
    )
    offset_ms, skew_ms = _exchange_clock(exchange, profile)
    market = market_of(exchange, symbol)
    state = recovery.start_create(
        client_order_id,
        symbol,
        sent_at,
        request,
        exchange_offset_ms=offset_ms,
        clock_skew_ms=skew_ms,
        placed_with=send[5],  # hf, margin, trigger: the lookup must ask where such an order lives
        market_type=market.get("type") if isinstance(market, Mapping) else None,
        answer_lost_at=lost_at,
    )
    step = recovery.first_step(state, time.time())
    while True:
        if step.action is RecoveryAction.RETURN:
            log.info(
                "order_recovered",
                exchange=exchange.id,
                client_order_id=client_order_id,
                lookups=state.lookups,
            )
            return _with_id(step.order, client_order_id)
        if step.action is RecoveryAction.GIVE_UP:
            _publish_unknown(exchange.id, "create_order", step.error)
            raise step.error from first  # type: ignore[misc]
        if deadline.left() <= step.delay_s:  # passed, or the wait would end past it: stop now
            step = recovery.out_of_time(state, deadline.seconds, step)
            continue
        if step.delay_s > 0:
            yield Wait(step.delay_s)
        if step.action is RecoveryAction.LOOKUP:
            lookup = recovery.lookup_call(state)
            call = Call(getattr(exchange, lookup.method), *lookup.args, params=lookup.params)
            found, error = yield _read(call, deadline.left())
            step = _after_lookup(recovery, state, found, error)
        else:  # RESEND, with the same client order id: the exchange refuses a duplicate
            log.warning("order_resent", exchange=exchange.id, client_order_id=client_order_id)
            order, error = yield Call(exchange.create_order, *send)
            now = time.time()
            state.sent_at = now  # the lag after a resend runs from its end, as after the first send
            if error is None:
                error = _not_an_order("create_order", order, require_status=False)
                if error is None:
                    return _with_id(order, client_order_id)
            if _is_duplicate(profile, error):
                # The id is taken: look up whose order holds it (on_found refuses another's).
                step = recovery.on_resend_duplicate(state, now)
            elif is_ambiguous_failure(profile, error) or _no_verdict(profile, error):
                step = recovery.on_resend_failed(state, now)
            else:
                raise error


def _test_answer(profile: ExchangeProfile, params: Mapping[str, Any], order: Any) -> bool:
    """Whether ``order`` is the answer to a test order (ccxt's ``test`` param: the exchange validates
    it and places nothing) that carries no order id: ccxt's answer as it is, not a lost one to look
    up and resend (which ended in ``OrderStateUnknown``). An answer with an id (a market type on
    which ccxt ignores the flag and places the order) is an order like any other."""
    name = profile.client_order_id.test_param
    return (
        name is not None
        and params.get(name) is True
        and isinstance(order, Mapping)
        and order.get("id") is None
    )


def _exchange_clock(exchange: Any, profile: ExchangeProfile) -> tuple[float, float]:
    """The exchange's clock minus ours as ccxt estimates it (``-timeDifference``, ms; 0 unknown),
    and how far our clock may run ahead of the exchange's beyond that estimate while it still
    accepts our requests: the request window when ccxt signs with our raw clock and the window is
    widened instead (Bitvavo), else nothing beyond the recovery's own allowance."""
    options = getattr(exchange, "options", None)
    options = options if isinstance(options, dict) else {}
    difference = _float(options.get("timeDifference"))
    clock = profile.clock
    skew = 0.0
    if clock.resync == "widen_window":
        window = _float(options.get(clock.window_option)) if clock.window_option else None
        skew = window if window is not None else float(clock.window_ms or 0)
    return (-difference if difference is not None else 0.0), skew


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _no_verdict(profile: ExchangeProfile, error: BaseException) -> bool:
    """ccxt's catch-all ``ExchangeError`` for a 2xx answer whose JSON carries no error code at all
    (KuCoin raises it for any answer without its "200000"): garbage, not a refusal, so the order
    may exist and must be looked up. A 2xx answer with a code of its own is the exchange's word."""
    ctx = current_call.get()
    if type(error) is not ccxt.ExchangeError or ctx is None:
        return False
    status = ctx.http_status
    if not isinstance(status, int) or not 200 <= status < 300:
        return False
    parsed = ctx.http_json
    return not isinstance(parsed, dict) or all(
        parsed.get(key) is None for key in profile.error_payload.code_keys
    )


def cancel_plan(
    exchange: Any,
    profile: ExchangeProfile,
    recovery: OrderRecovery,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: Deadline | None = None,
    resync: Callable[[], Any] | None = None,
) -> Plan:
    """Cancel one order, confirming its state when the answer is lost; returns what ccxt returns.
    ``deadline`` defaults to the current hardened call's; with ``resync``, a cancel refused for
    its timestamp is sent once more after the exchange clock is resynchronised."""
    bound = _bind("cancel_order", _CANCEL_ARGS, args, kwargs)
    order_id, symbol, params = bound.get("id"), bound.get("symbol"), bound.get("params") or {}
    if deadline is None:
        deadline = Deadline.of_current_call()
    sent_at = time.time()
    result, first = yield Call(exchange.cancel_order, order_id, symbol, params)
    if first is not None and (yield from _resynced(exchange, profile, "cancel_order", first, resync)):
        sent_at = time.time()
        result, first = yield Call(exchange.cancel_order, order_id, symbol, params)
    if first is None:
        return result
    if is_order_not_found(profile, first):
        return (yield from _confirm_cancelled(exchange, order_id, symbol, params, first, deadline))
    if not is_ambiguous_failure(profile, first):
        raise first
    state = recovery.start_cancel(
        None if order_id is None else str(order_id),  # None: cancelled by client order id (params)
        symbol,
        sent_at,
        _client_order_id_in(profile, params),
        answer_lost_at=time.time(),
    )
    step = recovery.first_step(state, time.time())
    while True:
        if step.action is RecoveryAction.DONE:
            log.info("cancel_confirmed", exchange=exchange.id, order_id=order_id, reason=step.reason)
            if step.order is not None:
                return step.order
            return _absent_order(exchange, order_id, symbol, state.client_order_id)
        if step.action is RecoveryAction.GIVE_UP:
            _publish_unknown(exchange.id, "cancel_order", step.error)
            raise step.error from first  # type: ignore[misc]
        if deadline.left() <= step.delay_s:  # passed, or the wait would end past it: stop now
            step = recovery.out_of_time(state, deadline.seconds, step)
            continue
        if step.delay_s > 0:
            yield Wait(step.delay_s)
        if step.action is RecoveryAction.LOOKUP:  # by exchange id: the caller cancels by it
            found, error = yield _read(Call(exchange.fetch_order, order_id, symbol, params), deadline.left())
            step = _after_lookup(recovery, state, found, error)
        else:  # RESEND the cancel: the order is still open
            result, error = yield Call(exchange.cancel_order, order_id, symbol, params)
            now = time.time()
            if error is None:
                return result
            if is_ambiguous_failure(profile, error):
                step = recovery.on_resend_failed(state, now)
            else:
                step = recovery.on_lookup_failed(state, error, now)  # "not found" now means done


def _absent_order(exchange: Any, order_id: Any, symbol: Any, client_order_id: str | None) -> Any:
    """What a cancel returns for an order no lookup finds after the lag: ccxt's order structure
    (``safe_order``: every key a cancel_order answer has, unknown ones None), status canceled, so
    a caller reading ``filled`` or ``info`` gets None rather than a KeyError."""
    bare = {
        "id": order_id,
        "clientOrderId": client_order_id,
        "symbol": symbol,
        "status": "canceled",
        "info": {},
    }
    shape = getattr(exchange, "safe_order", None)
    if not callable(shape):
        return bare
    try:
        return shape(bare)
    except Exception:  # a stand-in exchange without ccxt's helpers: the bare fields
        return bare


def _confirm_cancelled(
    exchange: Any, order_id: Any, symbol: Any, params: Any, not_found: BaseException, deadline: Deadline
) -> Plan:
    """A cancel answered "no such order": look the order up once by its id. Cancelled, the cancel's
    goal holds, so the order is returned: the answer may be to a resend of this very cancel (aiohttp
    silently resends a DELETE whose answer was dropped), and a cancel cannot tell its own resent
    request from an earlier cancel. Filled, open, absent or unknowable: the original error."""
    if deadline.left() <= 0:
        raise not_found
    found, error = yield _read(Call(exchange.fetch_order, order_id, symbol, params), deadline.left())
    status = found.get("status") if error is None and isinstance(found, Mapping) else None
    if status not in ("canceled", "cancelled"):
        raise not_found
    log.info("cancel_confirmed", exchange=exchange.id, order_id=order_id, reason="not found, but cancelled")
    return found


def _client_order_id_in(profile: ExchangeProfile, params: Any) -> str | None:
    """The client order id a cancel's params name (the exchange's lookup parameter or one a caller
    may use for it), so that ``OrderStateUnknown`` can carry it too; None when the caller gave none."""
    if not isinstance(params, dict):
        return None
    spec = profile.client_order_id
    for name in (spec.cancel.param, *spec.names):
        value = params.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _publish_unknown(exchange_id: str, operation: str, error: Any) -> None:
    """``order_state_unknown`` on the event bus, for the alerts (the caller gets the error itself)."""
    bus.publish(
        "order_state_unknown",
        exchange=exchange_id,
        endpoint=operation,
        operation=operation,
        client_order_id=getattr(error, "client_order_id", None),
        order_id=getattr(error, "order_id", None),
        symbol=getattr(error, "symbol", None),
        reason=getattr(error, "reason", str(error)),
    )


def _after_lookup(recovery: OrderRecovery, state: Any, found: Any, error: BaseException | None) -> Any:
    """The next step once a lookup answered: failed, found the order, or found nothing.

    An answer that is no order (no id, no status) is a failed lookup, not a found order; one with
    neither an id nor anything from the exchange (``{"data": null}`` parsed) found nothing.
    """
    now = time.time()
    if error is None and found:
        if isinstance(found, dict) and found.get("id") is None and not found.get("info"):
            found = None
        else:
            error = _not_an_order(state.operation + "_lookup", found, require_status=True)
    if error is not None:
        return recovery.on_lookup_failed(state, error, now)
    if found:
        return recovery.on_found(state, found, now)
    return recovery.on_not_found(state, now)


def _not_an_order(endpoint: str, order: Any, require_status: bool) -> DataQualityError | None:
    """A ``DataQualityError`` (a ``ccxt.BadResponse``: ambiguous, so looked up) when ``order`` is
    not an order a caller can use: no id, a status that is no word (or, for lookups, none), parsed
    from text."""
    issues = validate_order(order, require_status=require_status)
    if not issues:
        return None
    report = QualityReport.of(endpoint, issues)
    return DataQualityError(endpoint, report.score, report, issues[0].message)


def _with_id(order: Any, client_order_id: str) -> Any:
    """Some ccxt parsers (Bitvavo's) leave ``clientOrderId`` empty: fill in the one we sent."""
    if isinstance(order, dict) and not order.get("clientOrderId"):
        order["clientOrderId"] = client_order_id
    return order


def run_plan_sync(plan: Plan, sleep: Callable[[float], Any] = time.sleep) -> Any:
    """Drive a plan, blocking: make its calls, sleep its waits; the plan is closed however it ends
    (its ``finally`` frees the client order id even when the caller is interrupted). A lookup is
    not bounded here: the sync client's watchdog cuts any request off at the call's deadline."""
    ctx = current_call.get()
    outcome: Outcome | None = None
    try:
        while True:
            try:
                op = plan.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(op, Wait):
                sleep(op.seconds)
                outcome = None
                continue
            if ctx is not None:
                ctx.http_status = None  # this call's answer, not the previous one's
            try:
                outcome = (op.fn(*op.args, **op.kwargs), None)
            except Exception as error:
                outcome = (None, parser_failure(ctx, error))
    finally:
        plan.close()


async def run_plan_async(plan: Plan, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> Any:
    """Drive a plan in the current task: await its calls and its waits; closed however it ends
    (a cancelled task frees its client order id at once). A lookup runs at most the seconds the
    plan allows it (``Call.within``): cut off, it fails as a ``ccxt.RequestTimeout``."""
    ctx = current_call.get()
    outcome: Outcome | None = None
    try:
        while True:
            try:
                op = plan.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(op, Wait):
                await sleep(op.seconds)
                outcome = None
                continue
            if ctx is not None:
                ctx.http_status = None
            try:
                outcome = (await _call_async(op), None)
            except Exception as error:
                outcome = (None, parser_failure(ctx, error))
    finally:
        plan.close()


async def _call_async(op: Call) -> Any:
    """Make one call of a plan; a read (``op.within`` set) is cut off when its time is up."""
    if op.within is None or math.isinf(op.within):
        result = op.fn(*op.args, **op.kwargs)
        return await result if isinstance(result, Awaitable) else result
    bound = asyncio.timeout(max(op.within, 0.0))
    try:
        async with bound:
            result = op.fn(*op.args, **op.kwargs)
            return await result if isinstance(result, Awaitable) else result
    except TimeoutError as cut:
        if not bound.expired():
            raise
        raise ccxt.RequestTimeout(f"lookup cut off at the call deadline after {op.within:.2f}s") from cut
