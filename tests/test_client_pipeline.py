"""The client's pipeline on ccxt exchanges whose unified methods are patched: no network at all.

These tests pin the decisions (what is retried, what trips a breaker, what is never retried); the
simulator tests run the same client over real HTTP.
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest
from structlog.testing import capture_logs

import hardened
import hardened.pipeline.breaker as breaker_module
from hardened import AsyncHardenedClient, CircuitOpenError, ConfigError, HardenedClient, HardenedConfig
from hardened.errors import ErrorKind, classify
from hardened.pipeline.retry import retry_after_seconds

# The cache is off here: these tests are about what reaches the exchange (tests/test_cache.py covers it).
FAST = {
    "initial_delay": 0.0,
    "jitter": 0.0,
    "rate_limit_delay": 0.0,
    "cache_ttl": 0.0,
    "stale_if_error": 0.0,
    "quality_policy": "off",  # the fakes return minimal dicts; test_validate_stage.py scores real data
    "rate_limit_pacing": False,  # thousands of calls a second would (rightly) be paced to Binance's budget
}


class Script:
    """A patched method that raises or returns, in order, what it was given."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def client(method: str, script: Script, **settings: Any) -> HardenedClient:
    ex = ccxt.binance()
    setattr(ex, method, script)
    return HardenedClient(ex, **{**FAST, **settings})


# --- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ccxt.NetworkError("reset"), ErrorKind.TRANSIENT),
        (ccxt.RequestTimeout("slow"), ErrorKind.TRANSIENT),
        (ccxt.ExchangeNotAvailable("binance GET https://x 503 Service Unavailable"), ErrorKind.TRANSIENT),
        (ccxt.OnMaintenance("maintenance"), ErrorKind.TRANSIENT),
        (ccxt.BadResponse("garbage"), ErrorKind.TRANSIENT),
        (ccxt.RateLimitExceeded("429"), ErrorKind.RATE_LIMIT),
        (ccxt.DDoSProtection("418"), ErrorKind.RATE_LIMIT),
        (ccxt.InvalidNonce("Timestamp for this request is outside of the recvWindow"), ErrorKind.CLOCK_SKEW),
        (ccxt.BadRequest("KC-API-TIMESTAMP Invalid timestamp"), ErrorKind.CLOCK_SKEW),
        (ccxt.BadSymbol("no such market"), ErrorKind.PERMANENT),
        (ccxt.InvalidOrder("bad order"), ErrorKind.PERMANENT),
        (ccxt.InsufficientFunds("broke"), ErrorKind.PERMANENT),
        (ccxt.AuthenticationError("bad key"), ErrorKind.PERMANENT),
        (ccxt.BadRequest("bad"), ErrorKind.PERMANENT),
        # ccxt's default HTTP map turns a bare 400/403/404 into ExchangeNotAvailable: not an outage.
        (ccxt.ExchangeNotAvailable("binance GET https://x 400 Bad Request {}"), ErrorKind.PERMANENT),
        (ccxt.ExchangeNotAvailable("binance GET https://x 403 Forbidden <html>"), ErrorKind.PERMANENT),
        (ccxt.ExchangeNotAvailable("binance GET https://x 404 Not Found"), ErrorKind.PERMANENT),
        (ValueError("not ccxt"), ErrorKind.PERMANENT),
        # a deadline that ran out in flight may be the exchange's doing; one that refused a wait
        # before anything was sent is not
        (hardened.DeadlineExceeded("ticker", 5.0, "no answer"), ErrorKind.TRANSIENT),
        (hardened.DeadlineExceeded("ticker", 5.0, "a wait would pass it", sent=False), ErrorKind.PERMANENT),
        (hardened.RateLimitBackoff("binance", "ticker", 9.5, False, detail="deadline"), ErrorKind.PERMANENT),
    ],
)
def test_classify(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) is kind


def test_errors_subclass_the_ccxt_errors_callers_catch() -> None:
    assert issubclass(hardened.CircuitOpenError, ccxt.ExchangeNotAvailable)
    assert issubclass(hardened.RequestSkipped, ccxt.ExchangeNotAvailable)
    assert issubclass(hardened.DataQualityError, ccxt.BadResponse)
    assert issubclass(hardened.OrderStateUnknown, ccxt.NetworkError)


# --- retries -----------------------------------------------------------------------------------


def test_transient_errors_are_retried_then_succeed() -> None:
    ticker = {"symbol": "BTC/USDT", "last": 1.0}
    script = Script(ccxt.NetworkError("reset"), ccxt.RequestTimeout("slow"), ticker)
    ex = client("fetch_ticker", script, max_retries=3)
    assert ex.fetch_ticker("BTC/USDT") is ticker  # the very object ccxt returned
    assert script.calls == 3
    stats = ex.stats()["endpoints"]["ticker"]
    assert stats["retries"] == 2
    assert stats["successes"] == 1


def test_retries_exhausted_raise_the_last_ccxt_error_unchanged_with_attempts() -> None:
    last = ccxt.RequestTimeout("third")
    script = Script(ccxt.NetworkError("first"), ccxt.NetworkError("second"), last)
    ex = client("fetch_ohlcv", script, max_retries=2, failure_threshold=100)
    with pytest.raises(ccxt.RequestTimeout) as info:
        ex.fetch_ohlcv("BTC/USDT", "1m")
    assert info.value is last
    assert info.value.attempts == 3
    assert script.calls == 3


@pytest.mark.parametrize(
    "error",
    [ccxt.BadSymbol("x"), ccxt.InvalidOrder("x"), ccxt.InsufficientFunds("x"), ccxt.AuthenticationError("x")],
)
def test_permanent_errors_are_never_retried_and_never_count(error: BaseException) -> None:
    script = Script(error)
    ex = client("fetch_ticker", script, max_retries=5, failure_threshold=1)
    for _ in range(3):
        with pytest.raises(type(error)):
            ex.fetch_ticker("BTC/USDT")
    assert script.calls == 3  # one attempt per call
    assert ex.breakers["binance_ticker"].state == "closed"


def test_bare_4xx_is_not_retried_as_an_outage() -> None:
    script = Script(ccxt.ExchangeNotAvailable("binance GET https://x 400 Bad Request"))
    ex = client("fetch_ticker", script, max_retries=5)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ticker("BTC/USDT")
    assert script.calls == 1


def test_the_exchange_profile_knows_better_than_the_http_map() -> None:
    # Binance answers 403 when its WAF limit is hit: a rate limit to back off from, not a refusal.
    script = Script(ccxt.ExchangeNotAvailable("binance GET https://x 403 Forbidden"), {"ok": True})
    ex = client("fetch_ticker", script, max_retries=2)
    assert ex.fetch_ticker("BTC/USDT") == {"ok": True}
    assert script.calls == 2


def test_create_order_is_never_retried_blindly_but_looked_up() -> None:
    placed = {"id": "42", "clientOrderId": None, "status": "open"}
    create = Script(ccxt.RequestTimeout("lost answer"), {"id": "never"})
    lookups: list[dict[str, Any]] = []

    def fetch_order(order_id: Any, symbol: Any = None, params: Any = None) -> Any:
        lookups.append(dict(params or {}))
        return dict(placed, clientOrderId=params.get("origClientOrderId"))

    ex = ccxt.binance()
    ex.create_order = create
    ex.fetch_order = fetch_order
    hc = HardenedClient(ex, **FAST, max_retries=5)
    order = hc.create_order("BTC/USDT", "limit", "buy", 1, 100)
    assert create.calls == 1  # not resent: the lookup found it
    assert order["id"] == "42"
    assert lookups and order["clientOrderId"] == lookups[0]["origClientOrderId"]


def test_rate_limit_backs_off_at_least_the_floor() -> None:
    script = Script(ccxt.RateLimitExceeded("429"), {"ok": True})
    ex = client("fetch_ticker", script, max_retries=2, rate_limit_delay=0.05)
    with capture_logs() as logs:
        ex.fetch_ticker("BTC/USDT")
    scheduled = [e for e in logs if e["event"] == "retry_scheduled"]
    assert len(scheduled) == 1
    assert scheduled[0]["delay_s"] >= 0.05
    assert scheduled[0]["error"] == "RateLimitExceeded"


def test_retry_after_header_is_honoured() -> None:
    ex = ccxt.binance()
    state = {"n": 0}

    def answer_429_then_ok(*args: Any, **kwargs: Any) -> Any:
        state["n"] += 1
        if state["n"] == 1:
            # what ccxt does on a 429: handle_errors sees the answer, then the error is raised
            ex.handle_errors(429, "Too Many Requests", "u", "GET", {"Retry-After": "0.2"}, "", None, {}, None)
            raise ccxt.RateLimitExceeded("binance 429")
        return {"ok": True}

    ex.fetch_ticker = answer_429_then_ok
    hc = HardenedClient(ex, **FAST, max_retries=2)
    with capture_logs() as logs:
        hc.fetch_ticker("BTC/USDT")
    delays = [e["delay_s"] for e in logs if e["event"] == "retry_scheduled"]
    assert delays and delays[0] >= 0.2


@pytest.mark.parametrize("value", ["1, 2", "soon", "Thu, 03 Dec 2026 25:19:26 GMT"])
def test_a_malformed_retry_after_is_ignored_not_raised(value: str) -> None:
    """A Retry-After that is neither seconds nor an HTTP-date ("1, 2": requests merging two
    headers) must not turn a 429 into a bare ValueError: the retry waits the rate-limit floor."""
    ex = ccxt.binance()
    state = {"n": 0}

    def answer_429_then_ok(*args: Any, **kwargs: Any) -> Any:
        state["n"] += 1
        if state["n"] == 1:
            ex.handle_errors(429, "Too Many Requests", "u", "GET", {"Retry-After": value}, "", None, {}, None)
            raise ccxt.RateLimitExceeded("binance 429")
        return {"ok": True}

    ex.fetch_ticker = answer_429_then_ok
    hc = HardenedClient(ex, **{**FAST, "rate_limit_delay": 0.01}, max_retries=2)
    with capture_logs() as logs:
        assert hc.fetch_ticker("BTC/USDT") == {"ok": True}
    assert [e["delay_s"] for e in logs if e["event"] == "retry_scheduled"] == [0.01]


def test_a_malformed_retry_after_on_the_last_attempt_raises_the_ccxt_error() -> None:
    ex = ccxt.binance()

    def always_429(*args: Any, **kwargs: Any) -> Any:
        ex.handle_errors(429, "Too Many Requests", "u", "GET", {"Retry-After": "1, 2"}, "", None, {}, None)

    ex.fetch_ticker = always_429
    hc = HardenedClient(ex, **FAST, max_retries=2)
    with pytest.raises(ccxt.DDoSProtection) as info:  # what ccxt's Binance raises on a 429
        hc.fetch_ticker("BTC/USDT")
    assert info.value.attempts == 3


def test_retry_after_seconds_reads_a_date_against_the_clock_given() -> None:
    now = 1_700_000_000.0
    headers = {"Retry-After": email.utils.formatdate(now + 42, usegmt=True)}
    assert retry_after_seconds(headers, now) == pytest.approx(42)
    assert retry_after_seconds({"Retry-After": "1, 2"}, now) is None
    assert retry_after_seconds({}, now) is None


def test_retry_after_longer_than_max_delay_fails_at_once() -> None:
    ex = ccxt.binance()

    def banned(*args: Any, **kwargs: Any) -> Any:
        ex.handle_errors(418, "I'm a teapot", "u", "GET", {"Retry-After": "3600"}, "", None, {}, None)
        raise ccxt.DDoSProtection("binance 418 banned")

    ex.fetch_ticker = banned
    hc = HardenedClient(ex, **FAST, max_retries=3, max_delay=5)
    with pytest.raises(ccxt.DDoSProtection) as info:
        hc.fetch_ticker("BTC/USDT")
    assert info.value.attempts == 1


def test_clock_skew_resyncs_then_retries_once() -> None:
    skew = ccxt.InvalidNonce("Timestamp for this request is outside of the recvWindow.")
    script = Script(skew, skew, skew)
    ex = ccxt.binance()
    ex.fetch_balance = script
    resyncs: list[int] = []
    ex.fetch_time = lambda params={}: resyncs.append(1) or int(time.time() * 1000)
    hc = HardenedClient(ex, **FAST, max_retries=5)
    with pytest.raises(ccxt.InvalidNonce):
        hc.fetch_balance()
    assert script.calls == 2  # the first attempt, one retry after the resync, no more
    assert resyncs == [1]
    assert "timeDifference" in ex.options


def test_retry_budget_stops_retry_storms() -> None:
    script = Script(ccxt.NetworkError("down"))
    ex = client(
        "fetch_ticker",
        script,
        max_retries=3,
        failure_threshold=10_000,
        failure_rate_threshold=1.0,
        minimum_calls=100_000,
        retry_budget_ratio=0.0,
        retry_budget_min=5,
    )
    for _ in range(10):
        with pytest.raises(ccxt.NetworkError):
            ex.fetch_ticker("BTC/USDT")
    # 10 first attempts + at most 5 budgeted retries, instead of 40 attempts
    assert script.calls == 15
    assert ex.stats()["retry_budget"]["refused"] >= 5


# --- breakers ----------------------------------------------------------------------------------


def test_breaker_trips_after_consecutive_failures_and_fails_fast() -> None:
    script = Script(ccxt.ExchangeNotAvailable("binance GET https://x 503 Service Unavailable"))
    ex = client("fetch_ohlcv", script, max_retries=0, failure_threshold=3, recovery_timeout=60)
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_ohlcv("BTC/USDT")
    assert ex.breakers["binance_ohlcv"].state == "open"
    with pytest.raises(CircuitOpenError) as info:
        ex.fetch_ohlcv("BTC/USDT")
    assert isinstance(info.value, ccxt.ExchangeNotAvailable)
    assert script.calls == 3  # the open breaker did not touch the exchange
    assert ex.breakers["binance_ohlcv"].rejected == 1
    assert ex.breakers["binance_ticker"].state == "closed"  # one breaker per endpoint


def test_open_time_doubles_with_each_failed_probe_and_starts_over_once_closed() -> None:
    """A short outage is probed soon (recovery_timeout_min), a long one no more often than
    recovery_timeout: each failed probe doubles the open time up to it."""
    down = ccxt.ExchangeNotAvailable("binance GET https://x 503 Service Unavailable")
    script = Script(down, down, down, down, down, {"ok": True}, {"ok": True}, down)
    ex = client(
        "fetch_ohlcv",
        script,
        max_retries=0,
        failure_threshold=1,
        success_threshold=2,
        recovery_timeout_min=0.05,
        recovery_timeout=0.2,
    )
    breaker = ex._hd.runtime("ohlcv").breaker
    open_times = []
    for _ in range(5):  # the trip, then four failed probes
        with pytest.raises(ccxt.ExchangeNotAvailable) as info:
            ex.fetch_ohlcv("BTC/USDT")
        assert not isinstance(info.value, CircuitOpenError)
        open_times.append(breaker.recovery_timeout)
        time.sleep(breaker.recovery_timeout + 0.02)
    assert open_times == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert ex.fetch_ohlcv("BTC/USDT") == {"ok": True}  # probe 1 of 2
    assert ex.fetch_ohlcv("BTC/USDT") == {"ok": True}
    assert ex.breakers["binance_ohlcv"].state == "closed"
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ohlcv("BTC/USDT")
    assert breaker.recovery_timeout == 0.05  # a new outage starts short again


def test_rate_limits_never_trip_the_breaker() -> None:
    """429s are the rate_limit stage's to pace (Retry-After); a breaker opened by them would keep
    the endpoint shut for its whole recovery_timeout after the exchange asked for two seconds."""
    script = Script(*[ccxt.RateLimitExceeded("binance 429 Too Many Requests")] * 6, {"ok": True})
    ex = client("fetch_ohlcv", script, max_retries=0, failure_threshold=3, minimum_calls=2)
    for _ in range(6):
        with pytest.raises(ccxt.RateLimitExceeded):
            ex.fetch_ohlcv("BTC/USDT")
    assert ex.breakers["binance_ohlcv"].state == "closed"
    assert ex.fetch_ohlcv("BTC/USDT") == {"ok": True}
    assert script.calls == 7


def test_breaker_trips_on_failure_rate_over_window() -> None:
    ok, bad = {"ok": True}, ccxt.NetworkError("flaky")
    # alternate: never 3 failures in a row, but half the calls fail
    script = Script(*([bad, ok] * 20))
    ex = client(
        "fetch_trades",
        script,
        max_retries=0,
        failure_threshold=3,
        failure_rate_threshold=0.5,
        minimum_calls=10,
        recovery_timeout=60,
    )
    outcomes = []
    for _ in range(13):
        try:
            ex.fetch_trades("BTC/USDT")
            outcomes.append("ok")
        except CircuitOpenError:
            outcomes.append("open")
        except ccxt.NetworkError:
            outcomes.append("fail")
    assert ex.breakers["binance_trades"].state == "open"
    # 10 calls seen (minimum_calls) and 6 of 11 failed: the 11th call trips it
    assert outcomes[:11] == ["fail", "ok"] * 5 + ["fail"]
    assert outcomes[11:] == ["open", "open"]


def test_half_open_probe_then_close_after_success_threshold() -> None:
    down = ccxt.RequestTimeout("slow")
    script = Script(down, down, {"a": 1}, {"a": 2}, {"a": 3})
    ex = client(
        "fetch_ticker", script, max_retries=0, failure_threshold=2, recovery_timeout=0.05, success_threshold=2
    )
    for _ in range(2):
        with pytest.raises(ccxt.RequestTimeout):
            ex.fetch_ticker("X/Y")
    view = ex.breakers["binance_ticker"]
    assert view.state == "open"
    time.sleep(0.06)
    assert ex.fetch_ticker("X/Y") == {"a": 1}
    assert view.state == "half_open"
    assert ex.fetch_ticker("X/Y") == {"a": 2}
    assert view.state == "closed"


def test_failed_probe_reopens() -> None:
    down = ccxt.RequestTimeout("slow")
    script = Script(down, down, down, {"a": 1})
    ex = client("fetch_ticker", script, max_retries=0, failure_threshold=2, recovery_timeout=0.05)
    for _ in range(2):
        with pytest.raises(ccxt.RequestTimeout):
            ex.fetch_ticker("X/Y")
    time.sleep(0.06)
    with capture_logs() as logs, pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ticker("X/Y")
    assert ex.breakers["binance_ticker"].state == "open"
    moves = [(e["old"], e["new"]) for e in logs if e["event"].startswith("breaker_")]
    assert moves == [("open", "half_open"), ("half_open", "open")]


def test_half_open_admits_a_bounded_number_of_probes() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)
    calls = {"n": 0}

    def slow_ok(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        entered.release()
        release.wait(5)
        return {"ok": True}

    ex = ccxt.binance()
    ex.fetch_ticker = Script(ccxt.RequestTimeout("x"))
    hc = HardenedClient(
        ex, **FAST, max_retries=0, failure_threshold=1, recovery_timeout=0.01, half_open_max_calls=1
    )
    with pytest.raises(ccxt.RequestTimeout):
        hc.fetch_ticker("X/Y")
    time.sleep(0.02)
    ex.fetch_ticker = slow_ok
    probe = threading.Thread(target=hc.fetch_ticker, args=("X/Y",))
    probe.start()
    assert entered.acquire(timeout=5)
    with pytest.raises(CircuitOpenError):  # a second caller while the probe is in flight
        hc.fetch_ticker("X/Y")
    release.set()
    probe.join(5)
    assert calls["n"] == 1


class _Clocks:
    """The breaker module's clocks, injected: ``monotonic`` moves only when told, and the wall
    clock (``time.time`` and ``datetime.now``) can be stepped as NTP steps a host's clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mono = 1_000.0
        self.step = 0.0  # seconds the wall clock was stepped by (negative: back)
        clocks = self

        class Time:
            @staticmethod
            def monotonic() -> float:
                return clocks.mono

            @staticmethod
            def time() -> float:
                return time.time() + clocks.step

        class SteppedDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return datetime.now(tz) + timedelta(seconds=clocks.step)

        monkeypatch.setattr(breaker_module, "time", Time)
        monkeypatch.setattr(breaker_module, "datetime", SteppedDatetime)


def _tripped(**settings: Any) -> tuple[HardenedClient, Script, Any]:
    """A client whose ohlcv breaker has just tripped (open 1 s: recovery_timeout_min)."""
    down = ccxt.ExchangeNotAvailable("binance GET https://x 503 Service Unavailable")
    script = Script(down, {"ok": True})
    options = {"max_retries": 0, "failure_threshold": 1, "recovery_timeout_min": 1.0, "recovery_timeout": 2.0}
    ex = client("fetch_ohlcv", script, **{**options, **settings})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ohlcv("BTC/USDT")
    assert ex.breakers["binance_ohlcv"].state == "open"
    return ex, script, ex._hd.runtime("ohlcv").breaker


def test_open_time_ignores_a_wall_clock_stepped_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """NTP steps the host's clock back an hour after a trip: the probe still comes after the
    open time (1 s), not an hour later."""
    clocks = _Clocks(monkeypatch)
    ex, script, _ = _tripped()
    clocks.step = -3600.0
    assert ex.breakers["binance_ohlcv"].retry_in == pytest.approx(1.0)
    clocks.mono += 1.2
    assert ex.fetch_ohlcv("BTC/USDT") == {"ok": True}  # the probe
    assert ex.breakers["binance_ohlcv"].state == "half_open"
    assert script.calls == 2


def test_open_time_ignores_a_wall_clock_stepped_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = _Clocks(monkeypatch)
    ex, script, _ = _tripped()
    clocks.step = 3600.0
    clocks.mono += 0.4
    with pytest.raises(CircuitOpenError) as info:
        ex.fetch_ohlcv("BTC/USDT")
    assert info.value.retry_in == pytest.approx(0.6)
    assert script.calls == 1


def test_a_shared_trip_is_timed_from_its_stamp_then_on_the_monotonic_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process's trip (hardened.shared) carries its wall-clock opened_at: its age is read
    once, then the open time runs on this process's monotonic clock; the stamp is kept as given
    for the shared state."""
    clocks = _Clocks(monkeypatch)
    ex = client("fetch_ohlcv", Script({"ok": True}), recovery_timeout_min=1.0, recovery_timeout=2.0)
    breaker = ex._hd.runtime("ohlcv").breaker
    stamp = time.time() - 0.25
    assert breaker.apply_shared("open", time.time(), stamp)
    assert breaker.opened_at == pytest.approx(stamp, abs=1e-3)
    assert ex.breakers["binance_ohlcv"].retry_in == pytest.approx(0.75, abs=0.05)
    clocks.step = -3600.0
    assert ex.breakers["binance_ohlcv"].retry_in == pytest.approx(0.75, abs=0.05)
    clocks.mono += 0.8
    assert ex.fetch_ohlcv("BTC/USDT") == {"ok": True}


def test_a_shared_trip_stamped_by_a_clock_ahead_waits_the_open_time_not_the_skew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _Clocks(monkeypatch)
    ex = client("fetch_ohlcv", Script({"ok": True}), recovery_timeout_min=1.0, recovery_timeout=2.0)
    breaker = ex._hd.runtime("ohlcv").breaker
    assert breaker.apply_shared("open", time.time(), time.time() + 3600.0)
    assert ex.breakers["binance_ohlcv"].retry_in == pytest.approx(1.0, abs=0.05)


def test_reset_closes_the_breaker() -> None:
    ex = client("fetch_ticker", Script(ccxt.NetworkError("x")), max_retries=0, failure_threshold=1)
    with pytest.raises(ccxt.NetworkError):
        ex.fetch_ticker("X/Y")
    assert ex.breakers["binance_ticker"].state == "open"
    ex.breakers["binance_ticker"].reset()
    assert ex.breakers["binance_ticker"].state == "closed"


def test_concurrent_calls_through_one_breaker_are_not_serialised() -> None:
    n = 8
    barrier = threading.Barrier(n, timeout=5)

    def meet(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()  # only passes if all n calls are inside the exchange call at the same time
        return {"ok": True}

    ex = ccxt.binance()
    ex.fetch_ticker = meet
    hc = HardenedClient(ex, **FAST)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(hc.fetch_ticker("X/Y"))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [{"ok": True}] * n
    assert hc.stats()["endpoints"]["ticker"]["successes"] == n


def test_threads_lose_no_counts() -> None:
    ex = ccxt.binance()
    ex.fetch_ticker = lambda *a, **k: {"ok": True}
    hc = HardenedClient(ex, **FAST)
    per_thread = 500

    def work() -> None:
        for _ in range(per_thread):
            hc.fetch_ticker("X/Y")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = hc.stats()["endpoints"]["ticker"]
    assert stats["calls"] == stats["successes"] == 4 * per_thread


# --- drop-in -----------------------------------------------------------------------------------


def test_attributes_read_and_write_through() -> None:
    inner = ccxt.kucoin({"apiKey": "key12345", "secret": "sec12345", "password": "pw12345"})
    ex = HardenedClient(inner)
    assert ex.inner is inner
    assert ex.id == "kucoin"
    assert ex.has["fetchTicker"] is True
    ex.timeout = 4321
    assert inner.timeout == 4321
    ex.options["custom"] = 1
    assert inner.options["custom"] == 1
    assert ex.fetchTicker.__name__ in ("fetch_ticker", "fetchTicker")
    assert "fetch_ticker" in dir(ex)
    assert inner.options["maxRetriesOnFailure"] == 0  # ccxt's own retries would resend orders


def test_camel_case_and_snake_case_share_an_endpoint() -> None:
    ex = ccxt.binance()
    ex.fetch_ohlcv = lambda *a, **k: [[0, 1, 1, 1, 1, 1]]
    ex.fetchOHLCV = ex.fetch_ohlcv
    hc = HardenedClient(ex, **FAST)
    hc.fetch_ohlcv("X/Y")
    hc.fetchOHLCV("X/Y")
    assert hc.stats()["endpoints"]["ohlcv"]["calls"] == 2


def test_factory_shortcut() -> None:
    ex = hardened.bitvavo({"timeout": 5000}, max_retries=1)
    assert isinstance(ex, HardenedClient)
    assert ex.id == "bitvavo"
    assert ex.timeout == 5000
    assert ex.config.max_retries == 1
    with pytest.raises(AttributeError):
        hardened.not_an_exchange  # noqa: B018


def test_wrapping_something_else_is_refused() -> None:
    with pytest.raises(TypeError, match="ccxt exchange"):
        HardenedClient(object())


def test_stats_and_health_shape() -> None:
    ex = client("fetch_ticker", Script({"ok": 1}))
    ex.fetch_ticker("X/Y")
    stats = ex.stats()
    ticker = stats["endpoints"]["ticker"]
    for key in ("calls", "successes", "failures", "retries", "skips", "cache_hits", "latency_ms", "breaker"):
        assert key in ticker
    assert set(ticker["latency_ms"]) == {"p50", "p95", "p99"}
    assert ticker["breaker"]["state"] == "closed"
    health = ex.health()
    assert health["status"] == "excellent"
    assert health["score"] == 100.0
    assert health["reasons"]


def test_health_drops_with_open_breakers_and_failures() -> None:
    ex = client("fetch_ticker", Script(ccxt.NetworkError("x")), max_retries=0, failure_threshold=2)
    for _ in range(30):  # enough calls for the error rate to count in full (health.min_calls)
        with pytest.raises(ccxt.NetworkError):
            ex.fetch_ticker("X/Y")
    health = ex.health()
    assert health["score"] < 60
    assert any("breaker open" in r for r in health["reasons"])


# --- secrets -----------------------------------------------------------------------------------


def test_no_secret_reaches_logs_or_events() -> None:
    inner = ccxt.binance({"apiKey": "APIKEY-abcdef-123456", "secret": "SECRET-zyxwvu-987654"})
    msg = (
        "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=deadbeefcafe"
        " APIKEY-abcdef-123456 SECRET-zyxwvu-987654"
    )
    inner.fetch_balance = Script(ccxt.NetworkError(msg))
    events: list[dict[str, Any]] = []
    unsubscribe = hardened.telemetry.events.bus.subscribe(events.append)
    try:
        ex = HardenedClient(inner, **FAST, max_retries=1)
        with capture_logs() as logs, pytest.raises(ccxt.NetworkError):
            ex.fetch_balance()
    finally:
        unsubscribe()
    text = repr(logs) + repr(events) + repr(ex.stats())
    for secret in ("APIKEY-abcdef-123456", "SECRET-zyxwvu-987654", "deadbeefcafe"):
        assert secret not in text
    assert "signature=***" in text


# --- configuration -----------------------------------------------------------------------------


def test_config_from_kwargs_env_and_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hardened.toml"
    path.write_text(
        "[hardened]\nmax_retries = 1\nfailure_threshold = 9\n[hardened.endpoints.ohlcv]\nmax_retries = 6\n"
    )
    monkeypatch.setenv("HARDENED_FAILURE_THRESHOLD", "7")
    config = HardenedConfig.from_file(path, recovery_timeout=12)
    assert config.max_retries == 1  # file
    assert config.failure_threshold == 7  # env beats file
    assert config.recovery_timeout == 12  # kwargs beat everything
    assert config.for_endpoint("ohlcv").max_retries == 6
    assert config.for_endpoint("ticker").max_retries == 1
    json_path = tmp_path / "hardened.json"
    json_path.write_text('{"max_retries": 4}')
    assert HardenedConfig.from_file(json_path).max_retries == 4


def test_client_accepts_config_and_overrides() -> None:
    ex = HardenedClient(ccxt.binance(), config=HardenedConfig(max_retries=2), failure_threshold=9)
    assert ex.config.max_retries == 2
    assert ex.config.failure_threshold == 9


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"max_retries": 50}, ["max_retries", "20"]),
        ({"failure_threshold": 0}, ["failure_threshold", "1"]),
        ({"jitter": -1}, ["jitter"]),
        ({"quality_policy": "explode"}, ["quality_policy", "raise"]),
        ({"endpoints": {"ohlcv": {"max_retries": -1}}}, ["endpoints.ohlcv.max_retries"]),
        ({"no_such_field": 1}, ["no_such_field"]),
        ({"initial_delay": 10, "max_delay": 5}, ["initial_delay", "max_delay"]),
    ],
)
def test_bad_config_fails_at_construction_naming_the_field(
    settings: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        HardenedClient(ccxt.binance(), **settings)
    for name in names:
        assert name in str(info.value)


def test_bad_config_file_names_the_file(tmp_path: Any) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("max_retries = [")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        HardenedConfig.from_file(path)
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        HardenedConfig.from_file(tmp_path / "missing.toml")


def test_env_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENED_MAX_RETRIES", "lots")
    with pytest.raises(ConfigError, match="max_retries"):
        HardenedConfig()


# --- async -------------------------------------------------------------------------------------


async def test_async_client_retries_and_trips() -> None:
    inner = accxt.binance()
    outcomes = [ccxt.NetworkError("a"), {"ok": True}]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        outcome = outcomes.pop(0) if outcomes else ccxt.RequestTimeout("down")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    inner.fetch_ticker = flaky
    # the breaker counts attempts: the 2nd and 3rd calls fail twice each, tripping it at 4
    async with AsyncHardenedClient(inner, **FAST, max_retries=1, failure_threshold=4) as ex:
        assert await ex.fetch_ticker("X/Y") == {"ok": True}
        for _ in range(2):
            with pytest.raises(ccxt.RequestTimeout):
                await ex.fetch_ticker("X/Y")
        assert ex.breakers["binance_ticker"].state == "open"
        with pytest.raises(CircuitOpenError):
            await ex.fetch_ticker("X/Y")


async def test_async_concurrent_calls_overlap() -> None:
    inner = accxt.binance()
    inside = {"now": 0, "peak": 0}

    async def slow(*args: Any, **kwargs: Any) -> Any:
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        await asyncio.sleep(0.05)
        inside["now"] -= 1
        return {"ok": True}

    inner.fetch_order_book = slow
    async with AsyncHardenedClient(inner, **FAST) as ex:
        results = await asyncio.gather(*(ex.fetch_order_book("X/Y") for _ in range(10)))
    assert results == [{"ok": True}] * 10
    assert inside["peak"] == 10


async def test_async_cancellation_releases_the_probe() -> None:
    inner = accxt.binance()
    inner.fetch_ticker = Script(ccxt.RequestTimeout("x"))
    ex = AsyncHardenedClient(inner, **FAST, max_retries=0, failure_threshold=1, recovery_timeout=0.01)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_ticker("X/Y")
    await asyncio.sleep(0.02)

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    inner.fetch_ticker = hang
    task = asyncio.ensure_future(ex.fetch_ticker("X/Y"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def ok(*args: Any, **kwargs: Any) -> Any:
        return {"ok": True}

    inner.fetch_ticker = ok
    assert await ex.fetch_ticker("X/Y") == {"ok": True}  # the probe slot was given back
    await ex.close()


def test_log_attempts_logs_every_attempt_with_latency_and_error_class() -> None:
    script = Script(ccxt.NetworkError("reset"), {"ok": True})
    ex = client("fetch_ticker", script, max_retries=2, log_attempts=True)
    with capture_logs() as logs:
        ex.fetch_ticker("BTC/USDT")
    attempts = [e for e in logs if e["event"] == "attempt"]
    assert [(a["attempt"], a["error"]) for a in attempts] == [(1, "NetworkError"), (2, None)]
    assert all(a["endpoint"] == "ticker" and a["latency_ms"] >= 0 for a in attempts)


def test_an_answer_refused_by_validation_is_asked_again_at_once_then_with_back_off() -> None:
    """A garbled answer says nothing about load: the first retry goes at once; a second bad answer
    in a row backs off as any failure does. Timed by the wait strategy, not by the clock."""
    import tenacity

    from hardened.endpoints import endpoint_for
    from hardened.pipeline.context import CallContext
    from hardened.pipeline.retry import wait_for_exchange
    from hardened.quality.report import QualityReport

    config = HardenedConfig(initial_delay=0.5, jitter=0.0)
    ex = HardenedClient(ccxt.binance(), initial_delay=0.5, jitter=0.0)
    rt = ex._hd.runtime("ticker")
    ctx = CallContext(rt, endpoint_for("fetch_ticker"), ("BTC/USDT",), {}, time.perf_counter())
    wait = wait_for_exchange(ctx, config.for_endpoint("ticker"))

    def after(attempt: int, error: BaseException) -> float:
        state = tenacity.RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        state.set_exception((type(error), error, None))
        return wait(state)

    bad = hardened.DataQualityError("ticker", 0.0, QualityReport("ticker", 0.0), "every field is None")
    assert after(1, bad) < 0.05
    assert after(2, bad) >= 0.5
    assert after(1, ccxt.ExchangeNotAvailable("503")) >= 0.5  # an outage still backs off at once
