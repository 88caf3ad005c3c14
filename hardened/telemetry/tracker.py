"""The error tracker: counts by error type and endpoint, rates per minute, a bounded history.

``tracker`` is the process-wide instance (exported as ``hardened.tracker``). It subscribes itself
to the event bus for ``call_failed`` events, so every failed call of every hardened client is
counted without further wiring, and any other component of a bot can ``record(...)`` its own
errors. Recording takes one short lock, a few dict updates and one deque append (about a
microsecond; ``benchmarks/bench_status.py`` prints the figure). Context is redacted on the way
in: the history, the summary and exports never hold a credential.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hardened.telemetry.events import Event, EventBus, bus
from hardened.telemetry.redact import MASK, is_secret_key, redact_text

__all__ = ["ErrorTracker", "tracker"]

_MAX_TEXT = 500  # characters kept of any one string in a context
_MAX_DEPTH = 4  # nesting kept of a context; deeper values become their (redacted) repr


def _redact(text: str) -> str:
    """``text`` cut to ``_MAX_TEXT`` characters, secret-looking parameters masked (a text without
    a hint of one skips the patterns: ``redact_text`` checks first)."""
    return redact_text(text[:_MAX_TEXT])


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-ready, redacted copy of ``value`` (strings masked and cut, containers bounded)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _redact(value)
    if depth >= _MAX_DEPTH:
        return _redact(repr(value))
    if isinstance(value, Mapping):
        return {
            str(k): (MASK if is_secret_key(str(k)) else _clean(v, depth + 1))
            for k, v in list(value.items())[:50]
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in list(value)[:50]]
    if isinstance(value, BaseException):
        return _redact(f"{type(value).__name__}: {value}")
    return _redact(repr(value))


class _RateWindow:
    """Per-key counts in one-second buckets over the last ``seconds`` seconds (owner holds the lock)."""

    __slots__ = ("_buckets", "_seconds")

    def __init__(self, seconds: int) -> None:
        self._seconds = max(1, int(seconds))
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()

    def add(self, now: float, key: str) -> None:
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            counts = buckets[-1][1]
        else:
            counts = {}
            buckets.append((second, counts))
            oldest = second - self._seconds
            while buckets[0][0] <= oldest:
                buckets.popleft()
        counts[key] = counts.get(key, 0) + 1

    def totals(self, now: float) -> dict[str, int]:
        oldest = int(now) - self._seconds
        out: dict[str, int] = {}
        for second, counts in self._buckets:
            if second > oldest:
                for key, n in counts.items():
                    out[key] = out.get(key, 0) + n
        return out

    def clear(self) -> None:
        self._buckets.clear()


class ErrorTracker:
    """Counts, rates and a bounded history of errors, fed by the bus and by ``record()``.

    Args:
        max_history: how many recent errors to keep with their context (oldest dropped first).
        window_s: the sliding window, in seconds, of the per-minute rates.
    """

    __slots__ = (
        "_by_endpoint",
        "_by_type",
        "_endpoint_window",
        "_history",
        "_lock",
        "_shared",
        "_since",
        "_total",
        "_type_window",
        "_unsubscribe",
        "max_history",
        "window_s",
    )

    def __init__(self, max_history: int = 1000, window_s: int = 60) -> None:
        if max_history < 1:
            raise ValueError(f"max_history must be at least 1, got {max_history}")
        self.max_history = max_history
        self.window_s = max(1, int(window_s))
        self._lock = threading.Lock()
        self._by_type: dict[str, int] = {}
        self._by_endpoint: dict[str, int] = {}
        self._type_window = _RateWindow(self.window_s)
        self._endpoint_window = _RateWindow(self.window_s)
        self._history: deque[dict[str, Any]] = deque(maxlen=max_history)
        self._total = 0
        self._since = time.time()
        self._unsubscribe: Any = None
        self._shared: Any = None

    # --- recording --------------------------------------------------------------------------

    def record(
        self,
        error_type: str,
        endpoint: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        exchange: str | None = None,
        message: str | None = None,
        severity: str = "ERROR",
    ) -> None:
        """Count one error of ``error_type`` at ``endpoint`` and keep it, redacted, in the history."""
        now = time.time()
        endpoint_key = endpoint or "-"
        entry: dict[str, Any] = {
            "ts": now,
            "error_type": error_type,
            "endpoint": endpoint_key,
            "severity": severity,
        }
        if exchange is not None:
            entry["exchange"] = exchange
        if message:
            entry["message"] = _redact(message)
        if context:
            entry["context"] = _clean(context, 1)
        with self._lock:
            self._total += 1
            self._by_type[error_type] = self._by_type.get(error_type, 0) + 1
            self._by_endpoint[endpoint_key] = self._by_endpoint.get(endpoint_key, 0) + 1
            self._type_window.add(now, error_type)
            self._endpoint_window.add(now, endpoint_key)
            self._history.append(entry)
        shared = self._shared
        if shared is not None:
            shared.add(error_type, endpoint_key)

    def record_error(
        self,
        error_type: str,
        error: BaseException | None = None,
        context: Mapping[str, Any] | None = None,
        severity: str = "ERROR",
    ) -> None:
        """The seed documents' call (``record_error(type, exc, context, severity)``), kept for bots
        that already use it; the endpoint is read from ``context["endpoint"]`` when present."""
        endpoint = context.get("endpoint") if context else None
        message = f"{type(error).__name__}: {error}" if error is not None else None
        self.record(
            error_type,
            str(endpoint) if endpoint is not None else None,
            context,
            message=message,
            severity=severity,
        )

    def on_event(self, event: Event) -> None:
        """Bus subscriber: count a ``call_failed`` event under its error class and endpoint."""
        if event.get("kind") != "call_failed":
            return
        self.record(
            str(event.get("error", "Error")),
            event.get("endpoint"),
            {
                "attempts": event.get("attempts"),
                "error_kind": event.get("error_kind"),
                "latency_ms": event.get("latency_ms"),
            },
            exchange=event.get("exchange"),
            message=event.get("message"),
            severity="WARNING" if event.get("error_kind") == "permanent" else "ERROR",
        )

    def attach(self, event_bus: EventBus) -> None:
        """Subscribe to ``event_bus`` (once; a second call moves the subscription)."""
        self.detach()
        self._unsubscribe = event_bus.subscribe(self.on_event)

    def detach(self) -> None:
        """Stop listening to the bus this tracker is attached to."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- reading ------------------------------------------------------------------------------

    def rate_per_minute(self, error_type: str | None = None) -> float:
        """Errors per minute over the sliding window, of one type or of all."""
        with self._lock:
            counts = self._type_window.totals(time.time())
        n = sum(counts.values()) if error_type is None else counts.get(error_type, 0)
        return n * 60.0 / self.window_s

    def recent(self, n: int = 10) -> list[dict[str, Any]]:
        """The last ``n`` errors, newest last, each with an ISO ``time``."""
        with self._lock:
            tail = list(self._history)[-n:] if n > 0 else []
        return [_with_time(e) for e in tail]

    def summary(self, recent: int = 10) -> dict[str, Any]:
        """Totals, counts and rates by type and endpoint, and the last ``recent`` errors."""
        now = time.time()
        with self._lock:
            by_type = dict(self._by_type)
            by_endpoint = dict(self._by_endpoint)
            type_window = self._type_window.totals(now)
            endpoint_window = self._endpoint_window.totals(now)
            total = self._total
            history_len = len(self._history)
            since = self._since
            tail = list(self._history)[-recent:] if recent > 0 else []
        per_min = 60.0 / self.window_s
        return {
            "total_errors": total,
            "since": since,
            "window_s": self.window_s,
            "rate_per_min": round(sum(type_window.values()) * per_min, 3),
            "by_type": {
                name: {"count": n, "rate_per_min": round(type_window.get(name, 0) * per_min, 3)}
                for name, n in sorted(by_type.items(), key=lambda item: -item[1])
            },
            "by_endpoint": {
                name: {"count": n, "rate_per_min": round(endpoint_window.get(name, 0) * per_min, 3)}
                for name, n in sorted(by_endpoint.items(), key=lambda item: -item[1])
            },
            "history_size": history_len,
            "max_history": self.max_history,
            "recent": [_with_time(e) for e in tail],
        }

    def share(self, counters: Any) -> None:
        """Also add every error to ``counters`` (``hardened.shared.counters.SharedCounters``), which
        sums them over every process on one Redis; set by a client with ``redis_url``."""
        self._shared = counters

    def group_counts(self) -> dict[str, dict[str, int]]:
        """Lifetime counts summed over every process sharing this tracker's Redis (``redis_url``);
        this process's own counts when there is none or it is unreachable."""
        shared = self._shared
        if shared is not None:
            totals = shared.totals()
            if totals is not None:
                return totals
        return self.counts()

    def counts(self) -> dict[str, dict[str, int]]:
        """Lifetime counts ``{"by_type": {...}, "by_endpoint": {...}}`` (for metrics)."""
        with self._lock:
            return {"by_type": dict(self._by_type), "by_endpoint": dict(self._by_endpoint)}

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the summary and the whole history as JSON, atomically (temp file, then rename)."""
        target = Path(path)
        report = self.summary(recent=0)
        with self._lock:
            report["history"] = [_with_time(e) for e in self._history]
        report["exported_at"] = datetime.now(UTC).isoformat()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=2, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def clear(self) -> None:
        """Forget every count, rate and history entry."""
        with self._lock:
            self._by_type.clear()
            self._by_endpoint.clear()
            self._type_window.clear()
            self._endpoint_window.clear()
            self._history.clear()
            self._total = 0
            self._since = time.time()

    # The seed documents' names, for bots written against them.
    get_error_summary = summary
    export_errors = export
    clear_errors = clear


def _with_time(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    out["time"] = datetime.fromtimestamp(entry["ts"], UTC).isoformat(timespec="milliseconds")
    return out


tracker = ErrorTracker()
tracker.attach(bus)
