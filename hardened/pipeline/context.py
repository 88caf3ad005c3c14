"""One call's state, carried through every stage (the role tenacity's ``RetryCallState`` plays)."""

from __future__ import annotations

from typing import Any

from hardened.endpoints import Endpoint
from hardened.errors import ErrorKind, classify


class CallContext:
    """Everything one unified call needs to know: what was asked, what happened, how long it took.

    Stages read it and the recorder writes it out. Created once per call; nothing else is allocated
    on the success path.
    """

    __slots__ = (
        "args",
        "asked",
        "attempt",
        "breaker_probe",
        "cache_flight",
        "cache_hit",
        "cache_key",
        "cache_limit",
        "endpoint",
        "error",
        "error_kind",
        "http_headers",
        "http_json",
        "http_status",
        "kwargs",
        "latency",
        "learning",
        "quality",
        "resync_clock",
        "retries",
        "rt",
        "stale",
        "started",
        "watch",
    )

    def __init__(
        self, rt: Any, endpoint: Endpoint, args: tuple[Any, ...], kwargs: dict[str, Any], started: float
    ) -> None:
        self.rt = rt  # the endpoint's runtime: policy, breaker, stats, retry policy
        self.endpoint = endpoint
        self.args = args
        self.kwargs = kwargs
        self.asked: tuple[tuple[Any, ...], dict[str, Any]] | None = None  # (args, kwargs) as the
        # caller gave them, kept only when a stage rewrote them (the OHLCV cache: since the last)
        self.started = started
        self.attempt = 0
        self.retries = 0
        self.breaker_probe = False
        self.cache_hit = False
        self.cache_key: Any = None  # set when this call leads a cacheable request
        self.cache_flight: Any = None  # the in-flight request this call leads or waits for
        self.cache_limit: Any = None
        self.stale = False
        self.resync_clock: bool | None = False  # True: resync before next attempt; None: done once
        self.error: BaseException | None = None  # the last attempt's error, and its kind
        self.error_kind: ErrorKind | None = None
        self.latency = 0.0
        self.quality: Any = None
        self.learning: Any = None  # the gate's (feature key, call identity, probe) for this call
        self.http_status: int | None = None
        self.http_headers: Any = None
        self.http_json: Any = None  # the last answer's parsed JSON (a list endpoint's "[]" check)
        self.watch: Any = None  # the sync client's deadline watch, taken by the first request

    def kind_of(self, error: BaseException) -> ErrorKind:
        """The kind of ``error``: as the client's classifier decided for the last attempt's error,
        or by ccxt class alone for errors raised outside an attempt."""
        if error is self.error and self.error_kind is not None:
            return self.error_kind
        return classify(error)
