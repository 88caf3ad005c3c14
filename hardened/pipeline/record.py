"""The recording stage: what happened to each call goes into per-endpoint stats and the event bus.

Counters and a latency reservoir are updated under a short per-endpoint lock (uncontended: well
under a microsecond); percentiles are computed only when someone asks for ``stats()``. Failures
are also logged (structlog) and published for the status stream and the error tracker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from hardened.errors import CircuitOpenError, ErrorKind, RateLimitBackoff, RequestSkipped
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Stage
from hardened.pipeline.window import SlidingCounts
from hardened.telemetry.events import bus
from hardened.telemetry.redact import redact_text

__all__ = ["AttemptLogStage", "EndpointStats", "RecordStage"]

log = structlog.get_logger("hardened")
# Calls refused locally (open breaker, learning gate): counted, not logged one by one; the breaker's
# transitions and the gate's aggregated request_skipped events say what happened.
_REFUSALS = (CircuitOpenError, RequestSkipped)
_RESERVOIR = 1024  # latencies kept per endpoint for percentiles (a ring: the most recent calls)
# Calls refused before reaching the exchange: their latency says nothing about the exchange.
_NOT_SENT = (CircuitOpenError, RateLimitBackoff, RequestSkipped)


class _Ring:
    """The last ``_RESERVOIR`` latencies (seconds), overwritten oldest first."""

    __slots__ = ("next", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.next = 0

    def add(self, latency: float) -> None:
        if len(self.values) < _RESERVOIR:
            self.values.append(latency)
        else:
            self.values[self.next] = latency
            self.next = (self.next + 1) % _RESERVOIR


class EndpointStats:
    """Counters and recent latencies of one endpoint of one client."""

    __slots__ = (
        "_exchange_latencies",
        "_latencies",
        "_lock",
        "_recent",
        "cache_hits",
        "cache_misses",
        "calls",
        "cancelled",
        "coalesced",
        "failures",
        "last_error",
        "last_error_at",
        "last_quality",
        "name",
        "retries",
        "skips",
        "stale_served",
        "successes",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._latencies = _Ring()  # every call, cache hits included: what the bot waits
        self._exchange_latencies = _Ring()  # calls that reached the exchange: what health compares
        self._recent = SlidingCounts(60)  # (calls, failures) over the last minute, for health
        self.calls = 0
        self.cancelled = 0  # ended by the caller (task cancelled, Ctrl-C): neither success nor failure
        self.successes = 0
        self.failures: dict[str, int] = {}
        self.retries = 0
        self.skips = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.coalesced = 0
        self.stale_served = 0
        self.last_quality: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def add_skip(self) -> None:
        """Count one call the learning gate skipped (under the lock: ``+=`` alone can lose counts
        between threads)."""
        with self._lock:
            self.skips += 1

    def add(self, ctx: CallContext, latency: float, error: BaseException | None) -> None:
        """Count one finished call."""
        with self._lock:
            self.calls += 1
            self.retries += ctx.retries
            if ctx.cache_hit:
                self.cache_hits += 1
                if ctx.cache_flight is not None and ctx.cache_key is None:
                    self.coalesced += 1
            elif ctx.cache_key is not None:
                self.cache_misses += 1
            if ctx.stale:
                self.stale_served += 1
            if ctx.quality is not None:
                self.last_quality = ctx.quality
            if error is not None and not isinstance(error, Exception):
                # CancelledError, KeyboardInterrupt, SystemExit: the caller ended the call, the
                # exchange did not fail it. Counted apart, or a bot's own timeouts read as an outage
                # in health; its latency is the caller's patience, not the exchange's.
                self.cancelled += 1
                return
            self._recent.add(time.monotonic(), 1, 0 if error is None else 1)
            if error is None:
                self.successes += 1
            else:
                name = type(error).__name__
                self.failures[name] = self.failures.get(name, 0) + 1
                self.last_error = name
                self.last_error_at = time.time()
            self._latencies.add(latency)
            if not ctx.cache_hit and ctx.attempt and not isinstance(error, _NOT_SENT):
                self._exchange_latencies.add(latency)

    def snapshot(self) -> dict[str, Any]:
        """Counters and latency percentiles (milliseconds) as a JSON-ready dict."""
        with self._lock:
            latencies = list(self._latencies.values)  # copied under the lock, sorted outside it
            exchange_latencies = list(self._exchange_latencies.values)
            recent_calls, recent_failures = self._recent.totals(time.monotonic())
            failures = dict(self.failures)
            data: dict[str, Any] = {
                "calls": self.calls,
                "successes": self.successes,
                "cancelled": self.cancelled,
                "failures": failures,
                "failed": sum(failures.values()),
                "retries": self.retries,
                "skips": self.skips,
                "cache_hits": self.cache_hits,
                "cache_misses": self.cache_misses,
                "coalesced": self.coalesced,
                "stale_served": self.stale_served,
                "last_quality": self.last_quality,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "recent": {"window_s": 60, "calls": recent_calls, "failures": recent_failures},
            }
        latencies.sort()
        exchange_latencies.sort()
        data["latency_ms"] = _percentiles(latencies)
        data["exchange_latency_ms"] = _percentiles(exchange_latencies)
        return data


def _percentiles(ordered: list[float]) -> dict[str, float | None]:
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    last = len(ordered) - 1

    def pick(q: float) -> float:
        return round(ordered[min(last, round(q * last))] * 1000.0, 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


class RecordStage(Stage):
    """Outermost stage: writes every finished call (hit, skip, success, failure) to the stats."""

    name = "record"

    def __init__(self, exchange_id: str, stats: dict[str, EndpointStats], secrets: Any) -> None:
        self.exchange_id = exchange_id
        self.client = exchange_id  # the registered client name, set once the client is registered
        self.stats = stats
        self.secrets = secrets  # callable returning current credential values, for redaction

    def stats_for(self, endpoint: str) -> EndpointStats:
        """The stats of ``endpoint``, created on first use."""
        found = self.stats.get(endpoint)
        if found is None:
            found = self.stats.setdefault(endpoint, EndpointStats(endpoint))
        return found

    def on_done(
        self, ctx: CallContext, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        latency = time.perf_counter() - ctx.started
        self.stats_for(ctx.endpoint.name).add(ctx, latency, error)
        if error is not None and isinstance(error, Exception) and not isinstance(error, _REFUSALS):
            self._failed(ctx, error, latency)  # refusals of an open breaker: counted, not logged each
        return result, error

    def _failed(self, ctx: CallContext, error: Exception, latency: float) -> None:
        kind = ctx.kind_of(error)
        message = redact_text(str(error), self.secrets())[:500]
        fields = {
            "client": self.client,
            "exchange": self.exchange_id,
            "endpoint": ctx.endpoint.name,
            "attempts": ctx.attempt,
            "error": type(error).__name__,
            "error_kind": kind.value,
            "latency_ms": round(latency * 1000.0, 3),
            "message": message,
        }
        bus.publish("call_failed", **fields)
        if kind is ErrorKind.PERMANENT:
            log.info("call_failed", **fields)
        else:
            log.warning("call_failed", **fields)


class AttemptLogStage(Stage):
    """A structlog event for every attempt, successful or not (``log_attempts=True``).

    Off by default: on a busy bot one line per request is noise, and the failures, retries, trips
    and recoveries are logged anyway. Placed innermost, so its latency is the exchange call's.
    """

    name = "attempt_log"

    def __init__(self, exchange_id: str) -> None:
        self.exchange_id = exchange_id

    def on_attempt(self, ctx: CallContext) -> float | None:
        ctx.latency = time.perf_counter()  # start of this attempt; replaced by its duration below
        return None

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        self._log(ctx, None)
        return result

    def on_attempt_error(self, ctx: CallContext, error: BaseException, kind: ErrorKind) -> None:
        self._log(ctx, error)

    def _log(self, ctx: CallContext, error: BaseException | None) -> None:
        ctx.latency = time.perf_counter() - ctx.latency if ctx.latency else 0.0
        log.debug(
            "attempt",
            exchange=self.exchange_id,
            endpoint=ctx.endpoint.name,
            attempt=ctx.attempt,
            latency_ms=round(ctx.latency * 1000.0, 3),
            http_status=ctx.http_status,
            error=None if error is None else type(error).__name__,
        )
