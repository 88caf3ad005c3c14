"""User-defined quality checks: registration, calling convention, and turning answers into issues.

A check is ``fn(result)`` or ``fn(result, context)`` and returns ``None``/``True`` (fine),
``False`` (failed: one issue named after the check), a message string (failed, with that message),
an ``Issue`` or an iterable of them. A check that raises or returns anything else becomes a
``custom_check_error`` issue: a user's bug never breaks the exchange call it inspects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hardened.quality.report import Issue, Severity

__all__ = ["CheckContext", "CustomCheck", "run_custom_checks"]


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a custom check may want to know about the call besides its result."""

    endpoint: str
    symbol: str | None = None
    timeframe: str | None = None
    now_ms: int | None = None
    exchange: str | None = None
    since: int | None = None
    limit: int | None = None


def _wants_context(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a second positional argument (the context)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call them with the result only
        return False
    positional = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class CustomCheck:
    """A registered user check: its name, function, the endpoints it applies to, its severity."""

    __slots__ = ("endpoints", "fn", "name", "severity", "wants_context")

    def __init__(
        self, name: str, fn: Callable[..., Any], endpoints: frozenset[str], severity: Severity
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a custom check needs a non-empty name")
        if not callable(fn):
            raise TypeError(f"custom check {name!r}: {fn!r} is not callable")
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"custom check {name!r} must be a plain function, not a coroutine function")
        self.name = name
        self.fn = fn
        self.endpoints = endpoints
        self.severity = severity
        self.wants_context = _wants_context(fn)

    def __repr__(self) -> str:
        return (
            f"CustomCheck({self.name!r}, endpoints={sorted(self.endpoints)}, severity={self.severity.label})"
        )

    def run(self, result: Any, context: CheckContext) -> list[Issue]:
        """Call the check and convert what it says into issues; never raises."""
        try:
            verdict = self.fn(result, context) if self.wants_context else self.fn(result)
        except Exception as exc:
            return [self._error(f"raised {type(exc).__name__}: {exc}")]
        return self._issues(verdict)

    def _issues(self, verdict: Any) -> list[Issue]:
        if verdict is None or verdict is True:
            return []
        if isinstance(verdict, Issue):
            return [verdict]
        if isinstance(verdict, str):
            return [Issue(self.name, self.severity, verdict, 1, (), 1.0)]
        if isinstance(verdict, Iterable) and not isinstance(verdict, (bytes, dict)):
            items = list(verdict)
            if all(isinstance(i, Issue) for i in items):
                return items
            return [self._error("returned an iterable holding something other than Issue objects")]
        try:
            passed = bool(verdict) if type(verdict).__name__ in ("bool", "bool_") else None
        except Exception:
            passed = None
        if passed is None:
            return [self._error(f"returned an unsupported {type(verdict).__name__}")]
        return (
            []
            if passed
            else [Issue(self.name, self.severity, f"custom check {self.name} failed", 1, (), 1.0)]
        )

    def _error(self, what: str) -> Issue:
        return Issue(
            "custom_check_error", Severity.WARNING, f"custom check {self.name} {what}", 1, (self.name,), 0.0
        )


def run_custom_checks(checks: Iterable[CustomCheck], result: Any, context: CheckContext) -> list[Issue]:
    """Every check's issues, in registration order."""
    issues: list[Issue] = []
    for check in checks:
        issues.extend(check.run(result, context))
    return issues
