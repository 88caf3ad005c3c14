"""The shape every pipeline stage has: a few optional hooks, each a pure decision.

Stages never sleep, call the network or await: the sync and async drivers in ``hardened.pipeline``
do the waiting and the calling (h11's sans-I/O idea), so no stage is written twice. A stage
overrides only the hooks it needs; the pipeline calls only the hooks a stage overrides.

Hooks, in the order a call meets them:
- ``on_call(ctx)``: once per call, outermost first; return ``Shortcut(value)`` to answer without
  calling the exchange (a cache hit), raise to refuse the call (the gate), or return None.
- ``on_attempt(ctx)``: before each attempt; raise to refuse it (an open breaker), or return a
  number of seconds the driver must wait before sending (rate-limit pacing).
- ``on_result(ctx, result)``: after each successful attempt, innermost first; return the result
  (possibly repaired) or raise (bad data).
- ``on_attempt_error(ctx, error, kind)``: after each failed attempt, innermost first.
- ``on_done(ctx, result, error)``: once per call, innermost first; return ``(result, error)``,
  possibly replacing an error by a fallback (stale-if-error).
"""

from __future__ import annotations

from typing import Any

from hardened.errors import ErrorKind
from hardened.pipeline.context import CallContext

__all__ = ["HOOKS", "Shortcut", "Stage"]

HOOKS = ("on_call", "on_attempt", "on_result", "on_attempt_error", "on_done")


class Shortcut:
    """An answer produced without calling the exchange (``on_call`` returns it).

    ``pending`` is an in-flight request to wait for instead (coalescing): the driver waits on it
    with ``pending.wait(ctx)`` or ``await pending.wait_async(ctx)``, which return the answer as a
    ``Shortcut``, raise the leader's error, or (the leader gave up) return what ``on_call`` says now:
    another ``Shortcut`` or None, and then this call leads the request itself.
    """

    __slots__ = ("pending", "value")

    def __init__(self, value: Any, pending: Any = None) -> None:
        self.value = value
        self.pending = pending


class Stage:
    """Base class: every hook does nothing; subclasses override what they need."""

    name = "stage"

    def on_call(self, ctx: CallContext) -> Shortcut | None:
        """Once per call, before any attempt."""
        return None

    def on_attempt(self, ctx: CallContext) -> float | None:
        """Before each attempt; returns seconds to wait before sending, or None."""
        return None

    def after_wait(self, ctx: CallContext) -> float | None:
        """After the wait ``on_attempt`` asked for, before sending: seconds more to wait (what the
        exchange said meanwhile, a ban), or None; may raise to refuse the attempt unsent."""
        return None

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        """After each successful attempt; returns the result to pass on."""
        return result

    def on_attempt_error(self, ctx: CallContext, error: BaseException, kind: ErrorKind) -> None:
        """After each failed attempt."""
        return None

    def on_done(
        self, ctx: CallContext, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        """Once per call, after the last attempt (or the shortcut)."""
        return result, error

    def overrides(self, hook: str) -> bool:
        """Whether this stage implements ``hook`` (the pipeline skips the ones it does not)."""
        return getattr(type(self), hook) is not getattr(Stage, hook)
