"""The resilience pipeline: the stages in order, and the sync and async drivers that run them.

Order of a call (outermost first), as ``default_stages`` builds it::

    record -> [gate] -> cache -> breaker -> retry loop -> rate_limit -> the ccxt call -> validate

``record`` writes every outcome to the stats; ``gate`` (``hardened/pipeline/gate.py``) records
each call's features and outcome for the learning gate and, with ``gate_enabled``, skips a call
predicted to fail (``RequestSkipped``, or the cache's answer when one is held; a share of skips
goes through as probes);
``cache`` answers from memory, coalesces identical calls and serves stale data on errors;
``breaker`` admits each attempt; the retry loop lives in ``run_sync`` / ``run_async`` below (its
decisions are tenacity strategies in ``pipeline/retry.py``); ``rate_limit`` paces each attempt
from the exchange's published budget; ``validate`` scores each answer before the breaker counts
it a success.

Users add a stage of their own by passing ``stages=`` a function that receives the client's
default stages (built for that client, in order) and returns the list to use::

    HardenedClient(ex, stages=lambda default: insert_stage(default, MyStage(), before="breaker"))

or replace the pipeline with a list of their own (``stages=[...]``).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from asyncio import CancelledError, current_task
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import ccxt

from hardened.errors import DeadlineExceeded, ErrorKind, classify
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import HOOKS, Shortcut, Stage
from hardened.pipeline.validate import parser_failure
from hardened.telemetry.redact import redact_text

__all__ = [
    "CallContext",
    "Pipeline",
    "Shortcut",
    "Stage",
    "current_call",
    "insert_stage",
    "run_async",
    "run_sync",
]

# The call in flight in this thread or task, so the exchange's ``handle_errors`` hook can hand
# each HTTP answer (status, headers: Retry-After, rate-limit usage) to it.
current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "hardened_current_call", default=None
)


class Pipeline:
    """An ordered list of stages, with each hook's stages precomputed in the order it runs them.

    ``classify`` decides what kind of failure an error is; a client passes one that knows its
    exchange's error codes (``hardened.adapters``), the default knows only ccxt's classes.
    """

    __slots__ = ("classify", "on_attempt", "on_attempt_error", "on_call", "on_done", "on_result", "stages")

    def __init__(
        self, stages: Sequence[Stage], classify: Callable[[BaseException], ErrorKind] = classify
    ) -> None:
        self.stages = tuple(stages)
        self.classify = classify
        for hook in HOOKS:
            bound = [getattr(s, hook) for s in self.stages if s.overrides(hook)]
            if hook in ("on_result", "on_attempt_error", "on_done"):
                bound.reverse()  # unwinding: innermost stage first
            setattr(self, hook, tuple(bound))

    def names(self) -> list[str]:
        """Stage names in order, outermost first."""
        return [s.name for s in self.stages]


def insert_stage(
    stages: Sequence[Stage], stage: Stage, *, before: str | None = None, after: str | None = None
) -> list[Stage]:
    """A new list: ``stages`` with ``stage`` placed before or after the stage of that name.

    With neither ``before`` nor ``after`` the stage goes last (innermost). Raises ``ValueError``
    naming the stages there are when no stage has the name given.
    """
    if before is not None and after is not None:
        raise ValueError("insert_stage takes either before= or after=, not both")
    result = list(stages)
    anchor = before if before is not None else after
    if anchor is None:
        return [*result, stage]
    names = [s.name for s in result]
    if anchor not in names:
        raise ValueError(f"no stage named {anchor!r}; stages: {', '.join(names)}")
    index = names.index(anchor) + (0 if before is not None else 1)
    result.insert(index, stage)
    return result


def _shortcut(pipe: Pipeline, ctx: CallContext) -> Shortcut | None:
    for hook in pipe.on_call:
        shortcut = hook(ctx)
        if shortcut is not None:
            return shortcut
    return None


def _finish(pipe: Pipeline, ctx: CallContext, result: Any, error: BaseException | None) -> Any:
    for hook in pipe.on_done:
        try:
            result, error = hook(ctx, result, error)
        except BaseException as failed:  # the outer stages still run: the cache lands, record counts
            # (a Ctrl-C landing in a stage too: skipping the cache's hook would leave its in-flight
            # mark, and every later identical call would wait for a leader that is gone)
            result, error = None, failed
    if error is not None:
        raise error
    return result


def _begin_attempt(ctx: CallContext) -> None:
    """Count the attempt and forget what the previous one saw (the first has seen nothing)."""
    if ctx.attempt:
        ctx.http_status = ctx.http_headers = ctx.http_json = None
        ctx.breaker_probe = False
    ctx.attempt += 1


def _answered(pipe: Pipeline, ctx: CallContext, result: Any) -> Any:
    """Hand an answer to the stages, innermost first (validation may raise or repair)."""
    for hook in pipe.on_result:
        result = hook(ctx, result)
    return result


def _attempt_failed(pipe: Pipeline, ctx: CallContext, error: BaseException) -> None:
    kind = pipe.classify(error)
    ctx.error = error
    ctx.error_kind = kind
    if kind is ErrorKind.CLOCK_SKEW:
        ctx.rt.clock.suspect = True  # whether or not this call is retried, the next attempt resyncs
    raised: BaseException | None = None
    for hook in pipe.on_attempt_error:
        try:
            hook(ctx, error, kind)
        except BaseException as failure:  # every stage still hears of it: the breaker frees its
            if raised is None:  # probe slot, the rate limit its booking; the first failure wins
                raised = failure
    if raised is not None:
        raise raised


def _clock_resync_due(ctx: CallContext) -> bool:
    """Asked once the attempt found a reason to resync the exchange clock (a clock-skew failure of
    this call is being retried, or one of any call of the client was not: orders are not retried,
    nor an endpoint with ``max_retries=0``; they share one clock): True at most once per call."""
    if ctx.resync_clock is None:  # resynced once in this call already
        return False
    ctx.resync_clock = None
    ctx.rt.clock.suspect = False
    return True


def _replay(first: BaseException, attempt: Callable[[], Any]) -> Callable[[], Any]:
    """Tenacity's first attempt re-raises the failure that already happened, then real attempts."""
    pending = [first]

    def again() -> Any:
        if pending:
            raise pending.pop()
        return attempt()

    return again


# --- the sync driver ------------------------------------------------------------------------


def _time_left(ctx: CallContext) -> float:
    """Seconds left before the call's deadline (``call_deadline`` after it started)."""
    return ctx.started + ctx.rt.policy.call_deadline - time.perf_counter()


def _pace(ctx: CallContext, wait: float) -> None:
    """Refuse a wait (rate-limit pacing) that would end after the call's deadline."""
    if wait > _time_left(ctx):
        raise DeadlineExceeded(
            ctx.endpoint.name,
            ctx.rt.policy.call_deadline,
            f"a {wait:.1f}s rate-limit wait would pass it",
            sent=False,
        )


def _after_wait(hook: Callable[[CallContext], float | None], ctx: CallContext) -> float | None:
    """Once a stage's wait is over, what its stage says now (a ban heard meanwhile: wait more, or
    refuse): a call paced into the future must not be sent into a ban that began while it waited."""
    after = getattr(getattr(hook, "__self__", None), "after_wait", None)
    return after(ctx) if after is not None else None


def _overdue(ctx: CallContext, error: BaseException) -> BaseException:
    """A request timeout past the deadline, or a request the sync client's watchdog cut off (its
    socket shut down: a connection error), is the deadline's doing. Orders keep their own errors:
    ``OrderStateUnknown`` carries the client order id a caller needs. ccxt's text carries the
    request URL (Binance's ``signature=``): it is redacted before it reaches the message."""
    if not ctx.endpoint.idempotent or isinstance(error, DeadlineExceeded):
        return error
    watch = ctx.watch
    if (watch is not None and watch.fired and isinstance(error, ccxt.NetworkError)) or (
        isinstance(error, ccxt.RequestTimeout) and _time_left(ctx) <= 0.0
    ):
        detail = redact_text(str(error), ctx.rt.secrets())[:200]
        return DeadlineExceeded(ctx.endpoint.name, ctx.rt.policy.call_deadline, detail)
    return error


def _attempt_sync(
    pipe: Pipeline, ctx: CallContext, call: Callable[..., Any], resync: Callable[[], Any]
) -> Any:
    _begin_attempt(ctx)
    try:
        for hook in pipe.on_attempt:  # a refusal here still reaches on_attempt_error (probe slots)
            wait = hook(ctx)
            while wait:
                _pace(ctx, wait)
                time.sleep(wait)
                wait = _after_wait(hook, ctx)
        if (ctx.resync_clock or ctx.rt.clock.suspect) and _clock_resync_due(ctx):
            resync()
        return _answered(pipe, ctx, call(*ctx.args, **ctx.kwargs))
    except BaseException as error:
        # a parser crash on a 2xx answer is a bad answer; a timeout past the deadline, the deadline's
        failed = _overdue(ctx, parser_failure(ctx, error))
        _attempt_failed(pipe, ctx, failed)
        if failed is error:
            raise
        raise failed from error


def run_sync(pipe: Pipeline, ctx: CallContext, call: Callable[..., Any], resync: Callable[[], Any]) -> Any:
    """Run one call through the pipeline, blocking; ``resync`` resynchronises the exchange clock."""
    try:
        shortcut = _shortcut(pipe, ctx)
        while shortcut is not None and shortcut.pending is not None:
            shortcut = shortcut.pending.wait(ctx)  # an identical call is in flight: share its answer
        result = _attempts_sync(pipe, ctx, call, resync) if shortcut is None else shortcut.value
    except BaseException as error:
        _attach_attempts(error, ctx)
        return _finish(pipe, ctx, None, error)
    return _finish(pipe, ctx, result, None)


def _attempts_sync(
    pipe: Pipeline, ctx: CallContext, call: Callable[..., Any], resync: Callable[[], Any]
) -> Any:
    """The first attempt bare; after a failure worth retrying, tenacity drives the rest. The call
    is the current one (``current_call``) meanwhile, for the exchange's answer hook to find."""
    ctx.rt.retry.budget.record_request()  # a request for the retry budget (cache hits are not)
    token = current_call.set(ctx)
    try:
        try:
            return _attempt_sync(pipe, ctx, call, resync)
        except BaseException as first:
            retry = ctx.rt.retry
            if not retry.first_failure_worth_retrying(ctx, first):
                raise
            return retry.sync(ctx)(_replay(first, lambda: _attempt_sync(pipe, ctx, call, resync)))
    finally:
        current_call.reset(token)
        if ctx.watch is not None:  # the deadline watch the first request took (hardened/deadline.py)
            ctx.watch.close()


# --- the async driver -----------------------------------------------------------------------


async def _attempt_async(
    pipe: Pipeline,
    ctx: CallContext,
    call: Callable[..., Awaitable[Any]],
    resync: Callable[[], Awaitable[Any]],
) -> Any:
    _begin_attempt(ctx)
    deadline = None
    try:
        for hook in pipe.on_attempt:
            wait = hook(ctx)
            while wait:
                _pace(ctx, wait)
                await asyncio.sleep(wait)
                wait = _after_wait(hook, ctx)
        if ctx.endpoint.idempotent:
            # One timeout around everything the attempt sends: a clock resync, and every request
            # of the ccxt method (a first call loads the markets: two more requests), so the
            # deadline holds however many there are (a few us a call).
            deadline = asyncio.timeout(_time_left(ctx))
            async with deadline:
                if (ctx.resync_clock or ctx.rt.clock.suspect) and _clock_resync_due(ctx):
                    await resync()
                answer = await call(*ctx.args, **ctx.kwargs)
        else:
            # A call that changes state (an order plan above all) is never cut off here: cutting a
            # plan off mid-recovery would lose the client order id while the order may stand. The
            # plan honours the deadline itself (hardened/placement.py), ccxt's timeout bounds a send.
            if (ctx.resync_clock or ctx.rt.clock.suspect) and _clock_resync_due(ctx):
                await resync()
            answer = await call(*ctx.args, **ctx.kwargs)
        return _answered(pipe, ctx, answer)
    except BaseException as error:
        # A CancelledError out of an expired timeout is a cancellation from outside (a shutdown)
        # in the same loop turn: asyncio.timeout lets it through, and so must we, or it is lost.
        if deadline is not None and deadline.expired() and not isinstance(error, CancelledError):
            failed: BaseException = DeadlineExceeded(
                ctx.endpoint.name, ctx.rt.policy.call_deadline, "no answer in time"
            )
        elif isinstance(error, CancelledError) and not _cancelling():
            failed = _cancelled_elsewhere(ctx)
        else:
            failed = _overdue(ctx, parser_failure(ctx, error))
        _attempt_failed(pipe, ctx, failed)
        if failed is error:
            raise
        raise failed from error


def _cancelling() -> bool:
    """Whether the current task is being cancelled (by its caller, or by a timeout around it)."""
    task = current_task()  # (imported by name: tests stand a fake in for this module's asyncio)
    return task is None or task.cancelling() > 0


def _cancelled_elsewhere(ctx: CallContext) -> BaseException:
    """A CancelledError this task was not asked for: ccxt shares one task among concurrent callers
    (its markets load) and another caller's cancel or deadline cancelled it. Not this caller's
    cancel: a network failure of the attempt, retried like one."""
    return ccxt.NetworkError(
        f"{ctx.endpoint.name}: a request this call shared with another call (ccxt's markets load) "
        "was cancelled with that call"
    )


async def run_async(
    pipe: Pipeline,
    ctx: CallContext,
    call: Callable[..., Awaitable[Any]],
    resync: Callable[[], Awaitable[Any]],
) -> Any:
    """Run one call through the pipeline in the current task; the same decisions as ``run_sync``."""
    try:
        shortcut = _shortcut(pipe, ctx)
        while shortcut is not None and shortcut.pending is not None:
            shortcut = await shortcut.pending.wait_async(ctx)
        result = await _attempts_async(pipe, ctx, call, resync) if shortcut is None else shortcut.value
    except BaseException as error:
        _attach_attempts(error, ctx)
        return _finish(pipe, ctx, None, error)
    return _finish(pipe, ctx, result, None)


async def _attempts_async(
    pipe: Pipeline,
    ctx: CallContext,
    call: Callable[..., Awaitable[Any]],
    resync: Callable[[], Awaitable[Any]],
) -> Any:
    """The first attempt bare; after a failure worth retrying, tenacity drives the rest."""
    ctx.rt.retry.budget.record_request()
    token = current_call.set(ctx)
    try:
        try:
            return await _attempt_async(pipe, ctx, call, resync)
        except BaseException as first:
            retry = ctx.rt.retry
            if not retry.first_failure_worth_retrying(ctx, first):
                raise
            return await retry.asynchronous(ctx)(
                _replay_async(first, lambda: _attempt_async(pipe, ctx, call, resync))
            )
    finally:
        current_call.reset(token)


def _replay_async(
    first: BaseException, attempt: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    pending = [first]

    async def again() -> Any:
        if pending:
            raise pending.pop()
        return await attempt()

    return again


def _attach_attempts(error: BaseException, ctx: CallContext) -> None:
    """The error goes to the caller unchanged, with how many attempts were made attached."""
    try:
        error.attempts = ctx.attempt  # type: ignore[attr-defined]
        error.endpoint = ctx.endpoint.name  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # exceptions with __slots__ cannot carry extras
        return
