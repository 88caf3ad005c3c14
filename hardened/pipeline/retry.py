"""Where a retry happens: tenacity strategies decide whether, how long to wait, and when to stop.

The first attempt runs outside tenacity, so a successful call pays nothing for it (tenacity costs
about 13 us per call even when nothing fails). Only after a failure is a ``Retrying`` built for
that call; its first "attempt" replays the failure that already happened, so every wait, stop and
retry decision is tenacity's, with our strategies plugged in:

- ``retry_transient``: transient, rate-limit and clock-skew errors only, idempotent endpoints only
  (``create_order`` is never retried blindly), and only while the retry budget allows;
- ``wait_for_exchange``: exponential back-off with jitter, at least ``Retry-After`` and the
  rate-limit floor after a 429/418, no wait after a clock resync;
- ``stop_after_attempt(max_retries + 1)``, or ``stop_before_delay`` the time left before the call's
  deadline (``call_deadline``): no retry starts whose wait would end past it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import tenacity
from tenacity.retry import retry_base
from tenacity.wait import wait_base

from hardened.config import EndpointPolicy
from hardened.errors import DataQualityError, ErrorKind
from hardened.pipeline.context import CallContext
from hardened.pipeline.window import SlidingCounts
from hardened.ratelimit import parse_retry_after

__all__ = ["RetryBudget", "RetryPolicy", "retry_after_seconds"]

RETRYABLE = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMIT, ErrorKind.CLOCK_SKEW})
_QUALITY_RETRY_S = 0.02  # wait before the first retry after an answer refused by validation


class RetryBudget:
    """Envoy-style retry budget: retries in the window may not exceed ``ratio`` x requests.

    ``minimum`` retries per window are always allowed so a quiet client can still retry. Shared by
    every endpoint of one client, so an outage cannot multiply the load the bot sends.
    """

    __slots__ = ("_counts", "_lock", "minimum", "ratio", "refused")

    def __init__(self, ratio: float, minimum: int, window: float) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.refused = 0
        self._lock = threading.Lock()
        self._counts = SlidingCounts(max(1, round(window)))  # (requests, retries) per second

    def record_request(self) -> None:
        """Count one logical call (not its retries)."""
        now = time.monotonic()
        with self._lock:
            self._counts.add(now, 1, 0)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and counted as refused) when it is exhausted."""
        now = time.monotonic()
        with self._lock:
            requests, retries = self._counts.totals(now)
            if retries >= max(self.minimum, self.ratio * requests):
                self.refused += 1
                return False
            self._counts.add(now, 0, 1)
            return True

    def usage(self) -> dict[str, float]:
        """Requests and retries in the current window."""
        with self._lock:
            requests, retries = self._counts.totals(time.monotonic())
        return {"requests": requests, "retries": retries, "refused": self.refused}


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """The ``Retry-After`` of an answer in seconds (delta-seconds or an HTTP date), if any.

    Never raises: a malformed value is None (``hardened.ratelimit.parse_retry_after``, the parser
    the rate-limit budget reads it with too). ``now`` is the epoch clock a date is read against
    (``time.time()`` when not given).
    """
    if not headers:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    return parse_retry_after(value, time.time() if now is None else now)


class retry_transient(retry_base):
    """Retry an attempt's error when it is worth it; decides once per failure and notes why not."""

    def __init__(self, ctx: CallContext, policy: EndpointPolicy, budget: RetryBudget) -> None:
        self.ctx = ctx
        self.policy = policy
        self.budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        if retry_state.attempt_number > self.policy.max_retries:
            return False  # tenacity asks before it checks stop: spend no budget on a retry never made
        if self.ctx.started + self.policy.call_deadline <= time.perf_counter():
            return False  # the call's deadline has passed: no budget for a retry never made
        exc = outcome.exception()
        kind = self.ctx.kind_of(exc)
        if kind not in RETRYABLE or not self.ctx.endpoint.idempotent:
            return False
        if kind is ErrorKind.CLOCK_SKEW:
            if self.ctx.resync_clock is None:  # None marks "already resynced once in this call"
                return False
            self.ctx.resync_clock = True
        if kind is ErrorKind.RATE_LIMIT:
            after = retry_after_seconds(self.ctx.http_headers)
            if after is not None and after > self.policy.max_delay:
                return False  # a ban longer than we may wait: fail now, the caller decides
        return self.budget.try_spend()


class wait_for_exchange(wait_base):
    """Exponential back-off with jitter, raised to Retry-After and the rate-limit floor on 429/418."""

    def __init__(self, ctx: CallContext, policy: EndpointPolicy) -> None:
        self.ctx = ctx
        self.policy = policy
        self.backoff = tenacity.wait_exponential_jitter(
            max=policy.max_delay,
            exp_base=policy.exponential_base,
            jitter=policy.jitter,
            multiplier=policy.initial_delay,
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        kind = self.ctx.kind_of(exc) if exc is not None else ErrorKind.TRANSIENT
        if kind is ErrorKind.CLOCK_SKEW:
            return 0.0  # the clock is resynced before the next attempt; waiting would not help
        if retry_state.attempt_number == 1 and isinstance(exc, DataQualityError):
            # A garbled or impossible answer says nothing about load: ask again at once, once
            # (the baddata benchmark lost most of its goodput to a 0.5 s back-off per refusal).
            # If the next answer is bad too, the usual back-off applies from there.
            return _QUALITY_RETRY_S
        delay = self.backoff(retry_state)
        if kind is ErrorKind.RATE_LIMIT:
            after = retry_after_seconds(self.ctx.http_headers) or 0.0
            delay = max(delay, after, self.policy.rate_limit_delay)
        return min(delay, self.policy.max_delay)


class RetryPolicy:
    """Builds the tenacity retrying object for a call that has just failed once."""

    __slots__ = ("budget", "on_retry", "policy")

    def __init__(self, policy: EndpointPolicy, budget: RetryBudget, on_retry: Any) -> None:
        self.policy = policy
        self.budget = budget
        self.on_retry = on_retry  # before_sleep callback: (ctx, retry_state) -> None

    def first_failure_worth_retrying(self, ctx: CallContext, exc: BaseException) -> bool:
        """Cheap pre-check so a permanent error never builds a Retrying at all."""
        return (
            self.policy.max_retries > 0
            and ctx.endpoint.idempotent
            and isinstance(exc, Exception)
            and ctx.kind_of(exc) in RETRYABLE
        )

    def _kwargs(self, ctx: CallContext) -> dict[str, Any]:
        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            ctx.retries += 1
            self.on_retry(ctx, retry_state)

        return {
            "retry": retry_transient(ctx, self.policy, self.budget),
            "wait": wait_for_exchange(ctx, self.policy),
            # The attempts, or the call's deadline: no retry whose wait would end past it.
            "stop": tenacity.stop_after_attempt(self.policy.max_retries + 1)
            | tenacity.stop_before_delay(
                max(0.0, ctx.started + self.policy.call_deadline - time.perf_counter())
            ),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def sync(self, ctx: CallContext) -> tenacity.Retrying:
        """A fresh ``Retrying`` for this call (thread-safe: nothing shared between calls)."""
        return tenacity.Retrying(**self._kwargs(ctx))

    def asynchronous(self, ctx: CallContext) -> tenacity.AsyncRetrying:
        """A fresh ``AsyncRetrying`` for this call (task-safe: nothing shared between calls)."""
        return tenacity.AsyncRetrying(**self._kwargs(ctx))
