"""One call's state, carried through every stage (the role tenacity's ``RetryCallState`` plays)."""

from __future__ import annotations

from typing import Any

from hardened.endpoints import Endpoint
from hardened.errors import ErrorKind, classify


class ClockState:
    """What a client knows of its exchange clock, shared by all its endpoints: ``suspect`` once an
    attempt failed for its timestamp (``recvWindow``) and no retry of that call resynced it (an
    order, an endpoint without retries), so that the client's next attempt resyncs first."""

    __slots__ = ("suspect",)

    def __init__(self) -> None:
        self.suspect = False


class CallContext:
    """Everything one unified call needs to know: what was asked, what happened, how long it took.

    Stages read it and the recorder writes it out. Created once per call; nothing else is allocated
    on the success path. What a call may or may not come to know starts as a class-level default
    (no ``__slots__``): creating a context sets five fields, not twenty-four, on the path every
    call takes, and a stage that learns something sets it on the instance.
    """

    # (args, kwargs) as the caller gave them, kept only when a stage rewrote them (the OHLCV
    # cache: since the last candle held)
    asked: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    attempt = 0
    retries = 0
    breaker_probe: int | bool = False  # the half-open spell that admitted this attempt as a probe
    cache_hit = False
    cache_key: Any = None  # set when this call leads a cacheable request
    cache_flight: Any = None  # the in-flight request this call leads or waits for
    cache_limit: Any = None  # an OHLCV series call's ``limit``
    cache_series: Any = None  # the OHLCV series a refresh since its last candle extends
    stale = False
    resync_clock: bool | None = False  # True: resync before next attempt; None: done once
    error: BaseException | None = None  # the last attempt's error, and its kind
    error_kind: ErrorKind | None = None
    latency = 0.0
    quality: Any = None
    learning: Any = None  # the gate's (feature key, call identity, probe) for this call
    paced_until = 0.0  # epoch s the rate-limit stage let this attempt go at (its after_wait)
    http_status: int | None = None
    http_headers: Any = None
    http_json: Any = None  # the last answer's parsed JSON (a list endpoint's "[]" check)
    watch: Any = None  # the sync client's deadline watch, taken by the first request

    def __init__(
        self, rt: Any, endpoint: Endpoint, args: tuple[Any, ...], kwargs: dict[str, Any], started: float
    ) -> None:
        self.rt = rt  # the endpoint's runtime: policy, breaker, stats, retry policy
        self.endpoint = endpoint
        self.args = args
        self.kwargs = kwargs
        self.started = started

    def kind_of(self, error: BaseException) -> ErrorKind:
        """The kind of ``error``: as the client's classifier decided for the last attempt's error,
        or by ccxt class alone for errors raised outside an attempt."""
        if error is self.error and self.error_kind is not None:
            return self.error_kind
        return classify(error)
