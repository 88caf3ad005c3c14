"""Concurrency of the clients: probe slots, rate-limit bookings, coalescing and cancellation under
many threads and tasks. Interleavings are forced (events, injected clocks), never left to luck."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, HardenedClient
from hardened.config import HardenedConfig
from hardened.errors import CircuitOpenError, ErrorKind
from hardened.pipeline import CallContext, Stage, insert_stage
from hardened.pipeline.breaker import EndpointBreaker
from hardened.sim import Simulator


def _core(client: Any) -> Any:
    return object.__getattribute__(client, "_hd")


def _open_time_over(breaker: EndpointBreaker) -> None:
    """Age the circuit past its open time (instead of sleeping through it)."""
    assert breaker._opened_mono is not None
    breaker._opened_mono -= 10_000.0


# --- the breaker's half-open probes ------------------------------------------------------------


def _probes_admitted(breaker: EndpointBreaker) -> int:
    admitted = 0
    while True:
        try:
            breaker.admit()
        except CircuitOpenError:
            return admitted
        admitted += 1


@pytest.mark.parametrize("ending", ["ignored", "success"])
def test_a_probe_of_an_earlier_half_open_spell_frees_no_slot_of_the_next(ending: str) -> None:
    """A probe still in flight when its spell ended (another probe failed: open again) must not,
    when it ends during the next spell, free one of that spell's slots or count as its success."""
    policy = HardenedConfig(failure_threshold=1, half_open_max_calls=2, success_threshold=1)
    breaker = EndpointBreaker("binance_ticker", policy.for_endpoint("ticker"))
    breaker.record_failure(False)  # trips
    _open_time_over(breaker)
    first, late = breaker.admit(), breaker.admit()
    assert first and late
    breaker.record_failure(first)  # open again; ``late`` is still out
    _open_time_over(breaker)
    assert _probes_admitted(breaker) == 2  # the new spell's two probes
    if ending == "ignored":
        breaker.record_ignored(late)
    else:
        breaker.record_success(late)
    assert breaker.state == "half_open"  # a stale success closes nothing
    assert _probes_admitted(breaker) == 0  # still two in flight: no third


def test_a_reset_while_a_probe_is_out_frees_no_slot_of_a_later_spell() -> None:
    """An operator's reset (or a shared close) during a probe: that probe ending later must not
    let a second probe into the next half-open spell (the default allows one)."""
    policy = HardenedConfig(failure_threshold=1).for_endpoint("ticker")
    breaker = EndpointBreaker("binance_ticker", policy)
    breaker.record_failure(False)
    _open_time_over(breaker)
    probe = breaker.admit()
    breaker.reset()
    breaker.record_failure(False)  # a new outage
    _open_time_over(breaker)
    assert _probes_admitted(breaker) == 1
    breaker.record_ignored(probe)
    assert _probes_admitted(breaker) == 0


# --- rate-limit bookings -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def binance_sim() -> Any:
    with Simulator(exchange="binance", seed=5) as sim:
        yield sim


def test_a_deep_order_book_gives_back_the_weight_it_booked(binance_sim: Simulator) -> None:
    """``fetch_order_book`` with a large ``limit`` books its argument weight (250 on Binance) before
    the call; the answer must give back that weight, not the endpoint's default, or the rest stays
    "in flight" for ever and is added to every usage header: the client paces itself to a halt."""
    ex = HardenedClient(binance_sim.attach(ccxt.binance({"enableRateLimit": False})), cache_ttl=0)
    ex.load_markets()
    pools = _core(ex).rate_limits._pools
    for _ in range(3):
        ex.fetch_order_book("BTC/USDT", 5000)
    assert {name: pool.inflight for name, pool in pools.items() if pool.inflight} == {}


# --- cancellation is the caller's, not the exchange's ------------------------------------------


class _Hanging:
    """Stands in for ccxt's ``fetch``: every request hangs until its task is cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        await asyncio.Event().wait()


def test_cancelled_calls_are_neither_failures_nor_learned(binance_sim: Simulator) -> None:
    """A bot's own timeouts cancel calls in flight: counted apart (``cancelled``), not as failures
    (health read 25 cancellations as "96 % of calls failed"), and not fed to the learning gate."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        exchange = binance_sim.attach(accxt.binance({"enableRateLimit": False}))
        async with AsyncHardenedClient(exchange, cache_ttl=0) as ex:
            await ex.load_markets()
            gate = next(s for s in ex.pipeline.stages if s.name == "gate")
            learned: list[Any] = []
            gate.learner = _Learner(learned)
            hanging = _Hanging()
            exchange.fetch = hanging
            for _ in range(25):
                hanging.started.clear()
                task = asyncio.create_task(ex.fetch_ticker("BTC/USDT"))
                await asyncio.wait_for(hanging.started.wait(), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            return ex.stats()["endpoints"]["ticker"], ex.health(), learned

    ticker, health, learned = asyncio.run(scenario())
    assert ticker["calls"] == 25 and ticker["cancelled"] == 25
    assert ticker["failures"] == {} and ticker["recent"]["failures"] == 0
    assert health["status"] == "excellent", health
    assert learned == []


class _Learner:
    """Records what the gate hands the learner."""

    def __init__(self, learned: list[Any]) -> None:
        self.learned = learned

    def clock(self) -> float:
        return 0.0

    def defer(self, fn: Any, item: Any) -> None:
        self.learned.append(item)

    def call_key(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (), ()  # for what the real learner deferred before it was swapped out

    def finish(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_a_cancel_arriving_with_the_deadline_stays_a_cancel(binance_sim: Simulator) -> None:
    """A task cancelled from outside (a shutdown) in the same loop turn as its attempt's deadline
    fires: asyncio.timeout lets the CancelledError through, and the pipeline must too. It turned
    it into DeadlineExceeded: the task was not cancelled and the breaker counted a failure."""

    async def scenario() -> tuple[AsyncHardenedClient, asyncio.Task[Any]]:
        exchange = binance_sim.attach(accxt.binance({"enableRateLimit": False}))
        config = {"failure_threshold": 1, "endpoints": {"ticker": {"call_deadline": 0.3}}}
        async with AsyncHardenedClient(exchange, cache_ttl=0, **config) as ex:
            await ex.load_markets()
            hanging = _Hanging()
            exchange.fetch = hanging
            task = asyncio.create_task(ex.fetch_ticker("BTC/USDT"))
            await asyncio.wait_for(hanging.started.wait(), 10)
            time.sleep(0.35)  # blocking: the attempt's deadline is due when the loop turns again
            asyncio.get_running_loop().call_later(0, task.cancel)  # due right after the deadline's
            with pytest.raises(asyncio.CancelledError):
                await task
            return ex, task

    ex, task = asyncio.run(scenario())
    assert task.cancelled()
    assert ex.breakers["binance_ticker"].state == "closed"
    assert ex.stats()["endpoints"]["ticker"]["failures"] == {}


# --- a stage that raises while the pipeline unwinds ----------------------------------------------


class _InterruptOnce(Stage):
    """Raises ``KeyboardInterrupt`` in its ``on_done`` for the first ticker call: where a Ctrl-C
    lands when it arrives while the stages unwind."""

    name = "interrupt_once"
    fired = False

    def on_done(self, ctx: CallContext, result: Any, error: BaseException | None) -> tuple[Any, Any]:
        if not self.fired and ctx.endpoint.name == "ticker":
            self.fired = True
            raise KeyboardInterrupt
        return result, error


def test_an_interrupt_while_the_stages_unwind_leaves_no_flight_behind(binance_sim: Simulator) -> None:
    """The cache's hook still runs after an inner stage was interrupted: its in-flight mark went
    unlanded, and every later identical call waited its whole deadline for a leader long gone."""
    exchange = binance_sim.attach(ccxt.binance({"enableRateLimit": False}))
    ex = HardenedClient(
        exchange, call_deadline=1.0, stages=lambda d: insert_stage(d, _InterruptOnce(), after="cache")
    )
    ex.load_markets()
    with pytest.raises(KeyboardInterrupt):
        ex.fetch_ticker("BTC/USDT")
    assert _core(ex).cache._flights == {}
    assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"


class _FailingMetrics(Stage):
    """A stage of the user's whose ``on_attempt_error`` fails (its metrics backend is down)."""

    name = "failing_metrics"

    def on_attempt_error(self, ctx: CallContext, error: BaseException, kind: ErrorKind) -> None:
        raise RuntimeError("metrics backend down")


def test_a_stage_failing_on_an_error_does_not_keep_the_probe_slot(binance_sim: Simulator) -> None:
    """A failed half-open probe is fed to the breaker even when an inner stage's hook raises: it
    was skipped, the probe's slot stayed taken, and the breaker refused every call for ever."""
    exchange = binance_sim.attach(ccxt.binance({"enableRateLimit": False}))
    ex = HardenedClient(
        exchange,
        max_retries=0,
        cache_ttl=0,
        stale_if_error=0,
        stages=lambda d: insert_stage(d, _FailingMetrics()),
    )
    ex.load_markets()
    breaker = _core(ex).runtime("ticker").breaker
    breaker.force_open()
    _open_time_over(breaker)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")

    exchange.fetch_ticker = down
    with pytest.raises(RuntimeError):
        ex.fetch_ticker("BTC/USDT")  # the probe fails
    assert breaker.state == "open" and breaker._probes == 0


def test_a_call_is_not_handed_another_calls_cancellation(binance_sim: Simulator) -> None:
    """Two first calls share ccxt's markets load (one task in ccxt). The first call's deadline
    cancels that task; the second, never cancelled, got the CancelledError as if it had been
    (a TaskGroup or gather reads that as its own cancel). It now retries the load and answers."""

    async def scenario() -> tuple[BaseException | None, Any, int]:
        exchange = binance_sim.attach(accxt.binance({"enableRateLimit": False}))
        real = exchange.load_markets_helper  # what ccxt wraps in the one task its callers share
        gate, entered = asyncio.Event(), asyncio.Event()

        async def slow_load(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            await gate.wait()
            return await real(*args, **kwargs)

        exchange.load_markets_helper = slow_load
        config = {"initial_delay": 0.01, "endpoints": {"ticker": {"call_deadline": 0.2}}}
        async with AsyncHardenedClient(exchange, **config) as ex:
            first = asyncio.create_task(ex.fetch_ticker("BTC/USDT"))
            await asyncio.wait_for(entered.wait(), 10)  # the first call is loading the markets
            second = asyncio.create_task(ex.fetch_order_book("BTC/USDT"))
            error = None
            try:
                await asyncio.wait_for(first, 10)  # its deadline passes while the markets load
            except ccxt.BaseError as failed:
                error = failed
            gate.set()
            book = await asyncio.wait_for(second, 10)
            return error, book, ex.stats()["endpoints"]["order_book"]["retries"]

    error, book, retries = asyncio.run(scenario())
    assert type(error).__name__ == "DeadlineExceeded"
    assert book["symbol"] == "BTC/USDT"
    assert retries == 1
