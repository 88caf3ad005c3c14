"""The call deadline: a server that trickles its answer cannot hold a call, sync or async, past it."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened import AsyncHardenedClient, ConfigError, DeadlineExceeded, HardenedClient, HardenedConfig
from hardened.sim.server import attach_url

BYTE_EVERY = 0.2  # seconds between two bytes: each read succeeds, so requests' timeout never fires
DEADLINE = 1.0


class TrickleServer:
    """A raw HTTP server on 127.0.0.1 that sends its answer, status line first, one byte at a time."""

    ANSWER = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"serverTime": 1}'
    )

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)  # the request
                for byte in self.ANSWER + b" " * 200:
                    if self.stop.wait(BYTE_EVERY):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up: what the deadline is for

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    server = TrickleServer()
    yield server
    server.close()


SETTINGS = {
    "call_deadline": DEADLINE,
    "max_retries": 3,
    "initial_delay": 0.0,
    "jitter": 0.0,
    "quality_policy": "off",
}


def _finishes(fn: Any, within: float = 15.0) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) when it does not return."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert outcome, "the call did not stop at its deadline"
    return outcome[0]


def test_sync_call_stops_at_its_deadline_against_a_trickling_server(trickle: TrickleServer) -> None:
    raw = attach_url(ccxt.binance({"timeout": 5000}), f"http://127.0.0.1:{trickle.port}", credentials=False)
    ex = HardenedClient(raw, **SETTINGS)
    started = time.perf_counter()
    outcome = _finishes(ex.fetch_time)
    elapsed = time.perf_counter() - started
    assert isinstance(outcome, DeadlineExceeded), outcome
    assert isinstance(outcome, ccxt.RequestTimeout)  # drop-in: what a caller already catches
    assert elapsed >= DEADLINE * 0.9  # it ran until the deadline (it did not fail for another reason)
    failures = ex.stats()["endpoints"]["time"]["failures"]
    assert failures == {"DeadlineExceeded": 1}


async def test_async_call_stops_at_its_deadline_against_a_trickling_server(trickle: TrickleServer) -> None:
    raw = attach_url(accxt.binance({"timeout": 5000}), f"http://127.0.0.1:{trickle.port}", credentials=False)
    async with AsyncHardenedClient(raw, **SETTINGS) as ex:
        with pytest.raises(DeadlineExceeded):
            await asyncio.wait_for(ex.fetch_time(), 15)


def test_retries_stop_when_the_next_wait_would_pass_the_deadline() -> None:
    raw = ccxt.binance()
    calls: list[float] = []

    def fetch_ticker(symbol: str, params: Any = None) -> Any:
        calls.append(time.perf_counter())
        raise ccxt.RequestTimeout("slow")

    raw.fetch_ticker = fetch_ticker
    ex = HardenedClient(
        raw,
        call_deadline=0.3,
        max_retries=10,
        initial_delay=0.2,
        exponential_base=1.0,
        jitter=0.0,
        quality_policy="off",
        cache_ttl=0,
        stale_if_error=0,
    )
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ticker("BTC/USDT")
    assert len(calls) == 2  # 0 s, 0.2 s; a third at 0.4 s would start past the 0.3 s deadline


def test_a_call_past_its_deadline_sends_no_further_request(binance_sim: Any) -> None:
    """A call that makes several requests (as an order plan does) sends none once its deadline
    has passed: the request fails before it goes out, and the caller sees DeadlineExceeded."""
    raw = binance_sim.attach(ccxt.binance({"enableRateLimit": False}))
    ex = HardenedClient(raw, **{**SETTINGS, "call_deadline": 0.3, "max_retries": 0})
    ex.load_markets()
    fetch_time = raw.fetch_time

    def two_requests(symbol: str, params: Any = None) -> Any:
        fetch_time()  # the first request: it takes the call's watch
        time.sleep(0.4)  # the call's work runs past its 0.3 s deadline
        return fetch_time()  # must not be sent

    raw.fetch_ticker = two_requests
    binance_sim.clear_ground_truth()
    with pytest.raises(DeadlineExceeded):
        ex.fetch_ticker("BTC/USDT")
    assert [r["endpoint"] for r in binance_sim.ground_truth()] == ["time"]
    assert isinstance(raw.fetch_time(), int)  # the connection pool is fine afterwards


def test_the_session_works_as_before_outside_a_call(binance_sim: Any) -> None:
    raw = binance_sim.attach(ccxt.binance())
    ex = HardenedClient(raw, **SETTINGS)  # mounts the deadline adapter on the exchange's session
    assert isinstance(raw.fetch_time(), int)  # the raw exchange, outside any call: plain requests
    assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"


def test_call_deadline_is_validated() -> None:
    with pytest.raises(ConfigError, match="call_deadline"):
        HardenedConfig(call_deadline=0)
    with pytest.raises(ConfigError, match="call_deadline"):
        HardenedConfig(endpoints={"markets": {"call_deadline": -1}})
    assert HardenedConfig().call_deadline == 60.0


def test_an_adapter_of_the_users_own_is_left_alone() -> None:
    import requests

    class Mine(requests.adapters.HTTPAdapter):
        pass

    raw = ccxt.binance()
    mine = Mine()
    raw.session.mount("https://", mine)
    HardenedClient(raw, **SETTINGS)
    assert raw.session.get_adapter("https://x") is mine
    assert type(raw.session.get_adapter("http://x")).__name__ == "DeadlineAdapter"


def test_the_watchdog_forgets_answered_requests() -> None:
    from hardened.deadline import Watchdog

    dog = Watchdog()
    for _ in range(5000):
        dog.done(dog.watch(time.perf_counter() + 60))
    assert dog.watching() == 0
    late = dog.watch(time.perf_counter() + 60)
    alive = dog.watch(time.perf_counter() + 0.05)  # due before the thread's next wake-up: wakes it
    _finishes(lambda: time.sleep(0.2))
    assert alive.fired  # a request still running at its deadline is cut off
    assert not late.fired and dog.watching() == 1
    dog.done(late)


def test_a_deadline_error_never_carries_the_signed_url_or_a_key() -> None:
    """ccxt's timeout text quotes the request URL (Binance signs it: ``signature=``); the deadline
    error built from it is redacted with the exchange's current credentials and by pattern."""
    from hardened.endpoints import endpoint_for
    from hardened.pipeline import _overdue
    from hardened.pipeline.context import CallContext

    ex = HardenedClient(ccxt.binance({"apiKey": "AKdeadlineKEY42", "secret": "SKdeadline"}), **SETTINGS)
    rt = ex._hd.runtime("balance")
    started = time.perf_counter() - 2 * DEADLINE  # the deadline has passed
    ctx = CallContext(rt, endpoint_for("fetch_balance"), (), {}, started)
    timeout = ccxt.RequestTimeout(
        "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=5eed0fcafe99 "
        "(key AKdeadlineKEY42)"
    )
    error = _overdue(ctx, timeout)
    assert isinstance(error, DeadlineExceeded)
    assert "5eed0fcafe99" not in str(error) and "AKdeadlineKEY42" not in str(error)
    assert "signature=***" in str(error)


def test_a_request_cut_off_by_the_deadline_shows_no_signature() -> None:
    """End to end: a signed request the simulator holds past the deadline."""
    from hardened.sim import Simulator

    profile = {"name": "hang", "faults": [{"kind": "timeout", "endpoints": ["balance"], "hold": 3}]}
    with Simulator(exchange="binance", profile=profile, seed=1) as sim:
        ex = HardenedClient(sim.attach(ccxt.binance({"timeout": 2000})), **{**SETTINGS, "call_deadline": 0.3})
        ex.load_markets()
        with pytest.raises(DeadlineExceeded) as caught:
            ex.fetch_balance()
        ex.close()
    assert "signature=***" in str(caught.value)
    assert not re.search(r"signature=(?!\*\*\*)", str(caught.value))


async def test_async_deadline_holds_however_many_requests_a_call_sends() -> None:
    """A first call loads the markets (two requests) before its own: the async client bounded an
    attempt by the deadline only when ccxt's per-request timeout was longer, so three answers of
    0.3 s each under a 0.5 s timeout ran 0.9 s past a 0.6 s deadline. The sync client's watchdog
    held it all along."""
    from hardened.sim import Simulator

    profile = {"faults": [{"kind": "latency", "latency": {"distribution": "fixed", "seconds": 0.3}}]}
    with Simulator(exchange="binance", seed=7, profile=profile) as sim:
        raw = sim.attach(accxt.binance({"timeout": 500, "enableRateLimit": False}))
        async with AsyncHardenedClient(raw, **{**SETTINGS, "call_deadline": 0.6, "max_retries": 0}) as ex:
            started = time.perf_counter()
            with pytest.raises(DeadlineExceeded):
                await ex.fetch_ticker("BTC/USDT")
            assert time.perf_counter() - started < 0.85  # stopped at the deadline, not after 0.9 s
