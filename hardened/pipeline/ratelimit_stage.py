"""The rate-limit stage: pace each attempt from the exchange's published budget, read it back after.

Decisions live in ``hardened.ratelimit.RateLimitBudget`` (one per client, fed by the exchange's
usage headers, Retry-After and ban answers); this stage asks it how long to wait before each
attempt and hands it every answer. A wait longer than the endpoint's ``max_delay`` (a ban, a spent
daily order budget) is not slept through: the call fails at once with ``RateLimitBackoff`` and
nothing is sent, so the client never extends its own ban.
"""

from __future__ import annotations

import time
from typing import Any

from hardened.errors import CircuitOpenError, DeadlineExceeded, ErrorKind, RateLimitBackoff, RequestSkipped
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Stage
from hardened.ratelimit import RateLimitBudget

__all__ = ["RateLimitStage"]

# The endpoint names of the profiles where they differ from ours (fetch_order -> "order").
_PROFILE_NAME = {"order": "fetch_order", "l2_order_book": "order_book"}


class RateLimitStage(Stage):
    """Slow the client down before the exchange says 429, and stop it entirely until a ban ends."""

    name = "rate_limit"

    def __init__(self, exchange_id: str, budget: RateLimitBudget) -> None:
        self.exchange_id = exchange_id
        self.budget = budget

    def on_attempt(self, ctx: CallContext) -> float | None:
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        now = time.time()
        wait = self.budget.delay_before(endpoint, now, _weight(self.budget, endpoint, ctx))
        if wait <= 0.0:
            return None
        if wait > ctx.rt.policy.max_delay:
            self.budget.release(endpoint, _weight(self.budget, endpoint, ctx))  # not sent: not spent
            raise RateLimitBackoff(self.exchange_id, ctx.endpoint.name, wait, self.budget.banned_until > now)
        return wait

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        self.budget.observe(endpoint, ctx.http_status or 0, ctx.http_headers, time.time())
        return result

    def on_attempt_error(self, ctx: CallContext, error: BaseException, kind: ErrorKind) -> None:
        if isinstance(error, (CircuitOpenError, RateLimitBackoff, RequestSkipped)):
            return  # refused before this stage booked anything (or it released it already)
        endpoint = _PROFILE_NAME.get(ctx.endpoint.name, ctx.endpoint.name)
        if not _sent(ctx, error, kind):
            self.budget.release(endpoint, _weight(self.budget, endpoint, ctx))
            return
        body = str(error) if kind is ErrorKind.RATE_LIMIT else None
        self.budget.observe(endpoint, ctx.http_status or 0, ctx.http_headers, time.time(), body)


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
