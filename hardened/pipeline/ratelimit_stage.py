"""The rate-limit stage: pace each attempt from the exchange's published budget, read it back after.

Decisions live in ``hardened.ratelimit.RateLimitBudget`` (one per client, fed by the exchange's
usage headers, Retry-After and ban answers); this stage asks it how long to wait before each
attempt and hands it every answer. A wait longer than the endpoint's ``max_delay`` (a ban, a spent
daily order budget), or one that would end past the call's ``call_deadline``, is not slept
through: the call fails at once with ``RateLimitBackoff`` and nothing is sent, so the client never
extends its own ban (and a refused wait is no exchange failure: not retried, not counted by the
breaker). A ban, or a budget spent for longer than ``max_delay``, is published once on the event
bus as ``rate_limit_ban`` (the alerts read it).

With ``redis_url`` set, ``shared`` (``hardened.shared.budget.SharedBudget``) also books each
attempt against the budget of the API key shared by every process: the wait is the longer of the
two, and a group-wide spent budget fails the call with ``RateLimitBackoff`` without sending it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hardened.errors import CircuitOpenError, DeadlineExceeded, ErrorKind, RateLimitBackoff, RequestSkipped
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Stage
from hardened.ratelimit import RateLimitBudget
from hardened.telemetry.events import bus

__all__ = ["RateLimitStage"]

# The endpoint names of the profiles where they differ from ours (fetch_order -> "order").
_PROFILE_NAME = {"order": "fetch_order", "l2_order_book": "order_book"}
# Endpoints whose weight depends on the call's arguments (see ``_weight``); the rest skip it.
_ARGUMENT_WEIGHTS = frozenset({"order_book", "open_orders"})


class RateLimitStage(Stage):
    """Slow the client down before the exchange says 429, and stop it entirely until a ban ends."""

    name = "rate_limit"

    def __init__(
        self,
        exchange_id: str,
        budget: RateLimitBudget,
        shared: Any = None,
        clock_offset: Callable[[], float] | None = None,
    ) -> None:
        self.exchange_id = exchange_id
        self.budget = budget
        self.shared = shared
        # () -> the exchange's clock minus ours (s), read before a refusal's epoch stamps are
        self.clock_offset = clock_offset
        self._announced_until = 0.0  # end of the last refusal published (once per ban or spent window)

    def on_attempt(self, ctx: CallContext) -> float | None:
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        now = time.time()
        weight = _weight(self.budget, endpoint, ctx) if endpoint in _ARGUMENT_WEIGHTS else None
        wait = self.budget.delay_before(endpoint, now, weight)
        if wait > ctx.rt.policy.max_delay:
            self._refuse(ctx, endpoint, now, wait, weight)
        if wait > 0.0:  # (only a waiting call reads the clock)
            self._within_deadline(ctx, endpoint, wait, weight)
        if self.shared is not None:  # asked only for a call this client would send
            charges = self.budget.charges(endpoint, weight)
            shared_wait, booked = self.shared.delay_before(charges, now)
            if not booked or shared_wait > ctx.rt.policy.max_delay:
                if booked:  # in the next window: given back, or refused calls book it away
                    self.shared.release(charges)
                self._refuse(ctx, endpoint, now, shared_wait, weight)
            if shared_wait > wait:
                wait = shared_wait
                try:
                    self._within_deadline(ctx, endpoint, wait, weight)
                except RateLimitBackoff:
                    self.shared.release(charges)
                    raise
        if wait > 0.0:
            ctx.paced_until = now + wait  # what after_wait measures a hold heard meanwhile against
            return wait
        return None

    def after_wait(self, ctx: CallContext) -> float | None:
        """Before a call that waited its turn goes out: a ban or Retry-After heard meanwhile, one
        that ends after the start the call was given, holds it on (refused, as before sending,
        when that is past ``max_delay`` or the deadline)."""
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        until = self.budget.held_until(endpoint)
        if until <= ctx.paced_until:
            return None  # nothing new: the hold the call waited for, if any, is over
        now = time.time()
        wait = until - now
        if wait <= 0.0:
            return None
        ctx.paced_until = until
        weight = _weight(self.budget, endpoint, ctx) if endpoint in _ARGUMENT_WEIGHTS else None
        if wait > ctx.rt.policy.max_delay:
            self._refuse(ctx, endpoint, now, wait, weight)
        self._within_deadline(ctx, endpoint, wait, weight)
        return wait

    def _within_deadline(self, ctx: CallContext, endpoint: str, wait: float, weight: float | None) -> None:
        """Refuse a wait that would end past the call's deadline with ``RateLimitBackoff``: nothing
        is sent, so it is no exchange failure (never retried, never counted by the breaker or the
        gate), and the booking is given back. Not announced: no ban, only a short deadline."""
        deadline = ctx.rt.policy.call_deadline
        if wait > ctx.started + deadline - time.perf_counter():
            self.budget.release(endpoint, weight)
            banned = self.budget.banned_until > time.time()
            detail = f"the wait would pass the call deadline of {deadline:g}s"
            raise RateLimitBackoff(self.exchange_id, ctx.endpoint.name, wait, banned, detail=detail)

    def _refuse(self, ctx: CallContext, endpoint: str, now: float, wait: float, weight: float | None) -> None:
        """Fail the attempt without sending it, giving back what ``delay_before`` booked (a call
        not sent spends no budget); the refusal is published once per ban or spent window
        (``rate_limit_ban``)."""
        self.budget.release(endpoint, weight)
        banned = self.budget.banned_until > now
        self._announce(ctx.endpoint.name, banned, now + wait, now, None)
        raise RateLimitBackoff(self.exchange_id, ctx.endpoint.name, wait, banned)

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        # the weight booked before the call is the one given back (a deep book books more)
        weight = _weight(self.budget, endpoint, ctx) if endpoint in _ARGUMENT_WEIGHTS else None
        self.budget.observe(endpoint, ctx.http_status or 0, ctx.http_headers, time.time(), weight=weight)
        return result

    def on_attempt_error(self, ctx: CallContext, error: BaseException, kind: ErrorKind) -> None:
        if isinstance(error, (CircuitOpenError, RateLimitBackoff, RequestSkipped)):
            return  # refused before this stage booked anything (or it released it already)
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        weight = _weight(self.budget, endpoint, ctx) if endpoint in _ARGUMENT_WEIGHTS else None
        if not _sent(ctx, error, kind):  # e.g. ccxt's argument checks: nothing reached the exchange
            self.budget.release(endpoint, weight)
            return
        body = str(error) if kind is ErrorKind.RATE_LIMIT else None
        if self.clock_offset is not None:  # ccxt may have resynced since: ban ends are its clock's
            self.budget.clock_offset_s = self.clock_offset()
        banned_before = self.budget.banned_until
        now = time.time()
        self.budget.observe(endpoint, ctx.http_status or 0, ctx.http_headers, now, body, weight)
        if self.budget.banned_until > max(banned_before, now):
            self._announce(ctx.endpoint.name, True, self.budget.banned_until, now, ctx.http_status)

    def _announce(self, endpoint: str, banned: bool, until: float, now: float, status: int | None) -> None:
        """Publish ``rate_limit_ban`` once per new or extended refusal (not once per refused call)."""
        if until <= self._announced_until + 1.0:
            return
        self._announced_until = until
        bus.publish(
            "rate_limit_ban",
            exchange=self.exchange_id,
            endpoint=endpoint,
            banned=banned,
            retry_in=round(until - now, 1),
            status=status,
        )


def _sent(ctx: CallContext, error: BaseException, kind: ErrorKind) -> bool:
    """Whether a failed attempt's request may have reached the exchange.

    An HTTP answer says it did; without one, a permanent error (ccxt's argument and market checks)
    was raised before sending, and a deadline says itself; a network failure may have gone out.
    """
    if ctx.http_status is not None:
        return True
    if isinstance(error, DeadlineExceeded):
        return error.sent
    return kind is not ErrorKind.PERMANENT


def _weight(budget: RateLimitBudget, endpoint: str, ctx: CallContext) -> float | None:
    """Weights that depend on the arguments: an order book's depth, open orders without a symbol."""
    if endpoint == "order_book":
        limit = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("limit")
        return budget.weight_of(endpoint, limit=limit) if isinstance(limit, int) else None
    if endpoint == "open_orders":
        symbol = ctx.args[0] if ctx.args else ctx.kwargs.get("symbol")
        return budget.weight_of(endpoint, has_symbol=symbol is not None)
    return None
