"""Shared state across processes through a real redis-server: breakers, budget, cache, counters, outages.

Each test starts its own ``redis-server`` on a free loopback port (so it can kill, pause and
restart it) and its bot processes with ``tests/shared_worker.py``; the simulator's ground-truth
log says which requests really reached the exchange. redis-server comes from the Debian package
that ``.ci/run`` installs: a machine without it fails these tests, it does not skip them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest
import redis
from structlog.testing import capture_logs

from hardened import CircuitOpenError, HardenedClient, RateLimitBackoff
from hardened.config import ConfigError, HardenedConfig
from hardened.shared import disconnect_all, shared_state_for
from hardened.shared.budget import SharedBudget
from hardened.shared.connection import RedisLink
from hardened.sim import Simulator
from hardened.telemetry.tracker import tracker
from hardened.testing import capture_events

WORKER = Path(__file__).with_name("shared_worker.py")
NO_CACHE = {"cache_ttl": 0.0, "stale_if_error": 0.0, "quality_policy": "off", "max_retries": 0}
PASSWORD = "s3cret-redis-pw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A ``redis-server`` process of the test's own, on a free port, that it can kill and restart."""

    def __init__(self, password: str | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail(
                "redis-server is not installed: these tests need the Debian package "
                "(apt-get install -y redis-server; .ci/run installs it)"
            )
        self.port = _free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                if self.client().ping():
                    return self
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2.0)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it paused
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """Freeze the server: connections stay open and nothing answers (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    disconnect_all()
    server.kill()


class Worker:
    """A bot process running ``tests/shared_worker.py``; reads its JSON reports line by line."""

    def __init__(self, role: str, **args: Any) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), role, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def report(self, timeout: float = 30.0) -> dict[str, Any]:
        """The worker's next ``REPORT`` line (its log lines share stdout and are skipped)."""
        result: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("REPORT "):
                    result.append(line[len("REPORT ") :])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.proc.kill()
            _out, err = self.proc.communicate()
            raise AssertionError(f"worker gave no report; stderr:\n{err[-3000:]}")
        return json.loads(result[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def requests_to(sim: Simulator, endpoint: str) -> int:
    return sum(1 for r in sim.ground_truth() if r["endpoint"] == endpoint)


def only(endpoint: str, **rule: Any) -> dict[str, Any]:
    return {"name": f"test-{rule['kind']}", "faults": [{"endpoints": [endpoint], **rule}]}


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(exchange="binance", seed=7) as simulator:
        yield simulator


def local_client(sim: Simulator, server: RedisServer, **settings: Any) -> HardenedClient:
    exchange = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 3000}))
    return HardenedClient(exchange, redis_url=server.url, **{**NO_CACHE, **settings})


# --- 1. a trip in one process is seen by the others ------------------------------------------------


def test_a_trip_in_one_process_is_seen_by_the_others_within_a_second(
    redis_server: RedisServer, sim: Simulator
) -> None:
    followers = [Worker("follower", sim_url=sim.url, redis_url=redis_server.url) for _ in range(2)]
    try:
        for follower in followers:
            assert follower.report() == {"ready": True}
        ex = local_client(sim, redis_server, failure_threshold=2)
        ex.load_markets()
        sim.set_profile(only("ticker", kind="http_5xx", status=[503]))
        with capture_events(["breaker_transition"]) as events:
            for _ in range(2):
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    ex.fetch_ticker("BTC/USDT")
        tripped_at = next(e["ts"] for e in events if e["new"] == "open")
        tickers_before = requests_to(sim, "ticker")

        for follower in followers:
            seen = follower.report()
            assert seen["state"] == "open"
            assert seen["seen_at"] - tripped_at < 1.0, "another process learnt of the trip too late"
            assert follower.report() == {"refused": True}
        assert requests_to(sim, "ticker") == tickers_before  # they paid no request to find out

        # The error counts of the three processes add up in the group's counters.
        tracker.record("SharedWorkerError", "ticker")
        assert wait_for(lambda: tracker.group_counts()["by_type"].get("SharedWorkerError", 0) >= 7)
    finally:
        for follower in followers:
            follower.close()
        sim.set_profile("calm")


def test_a_recovery_in_one_client_closes_the_others(redis_server: RedisServer, sim: Simulator) -> None:
    a = local_client(sim, redis_server)
    b = local_client(sim, redis_server)
    a.breakers["binance_ticker"]._breaker.force_open()
    assert wait_for(lambda: b.breakers["binance_ticker"].state == "open")
    with pytest.raises(CircuitOpenError):
        b.fetch_ticker("BTC/USDT")
    a.breakers["binance_ticker"].reset()
    assert wait_for(lambda: b.breakers["binance_ticker"].state == "closed")
    assert b.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"
    assert b.stats()["shared"]["state"] == "shared"


def test_a_trip_on_one_venue_leaves_another_venues_breaker_closed(
    redis_server: RedisServer, sim: Simulator
) -> None:
    """A testnet (another ``urls['api']``) on the same Redis trips its own ``binance_ticker``, not
    mainnet's: the venues share a breaker name, not an outage."""
    with Simulator(exchange="binance", seed=8) as testnet_sim:
        mainnet = local_client(sim, redis_server)
        other_mainnet = local_client(sim, redis_server)
        testnet = local_client(testnet_sim, redis_server)
        for ex in (mainnet, other_mainnet, testnet):
            assert ex.breakers["binance_ticker"].state == "closed"  # each registers its breaker
        testnet.breakers["binance_ticker"]._breaker.force_open()
        mainnet.breakers["binance_ticker"]._breaker.force_open()
        assert wait_for(lambda: other_mainnet.breakers["binance_ticker"].state == "open")  # same venue
        mainnet.breakers["binance_ticker"].reset()
        assert wait_for(lambda: other_mainnet.breakers["binance_ticker"].state == "closed")
        time.sleep(0.2)  # time enough for a wrongly shared transition to arrive
        assert testnet.breakers["binance_ticker"].state == "open"  # mainnet's recovery is not its own
        assert mainnet.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"


def test_one_process_probes_for_the_group(redis_server: RedisServer, sim: Simulator) -> None:
    a = local_client(sim, redis_server, failure_threshold=2, recovery_timeout=1.0)
    b = local_client(sim, redis_server, failure_threshold=2, recovery_timeout=1.0)
    a.load_markets()
    b.load_markets()
    sim.set_profile(only("ticker", kind="http_5xx", status=[503]))
    try:
        for _ in range(2):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                a.fetch_ticker("BTC/USDT")
        assert wait_for(lambda: b.breakers["binance_ticker"].state == "open")
        time.sleep(1.05)  # the recovery timeout has passed for both
        before = requests_to(sim, "ticker")
        with pytest.raises(ccxt.ExchangeNotAvailable):
            a.fetch_ticker("BTC/USDT")  # a claims the probe, sends it, and it fails
        with pytest.raises(CircuitOpenError):
            b.fetch_ticker("BTC/USDT")  # b leaves the probing to a: no request of its own
        assert requests_to(sim, "ticker") == before + 1
        assert wait_for(lambda: b.breakers["binance_ticker"].retry_in > 0.5)  # a's new opening reached b
    finally:
        sim.set_profile("calm")


# --- 2. a shared budget is never overspent ---------------------------------------------------------


def _budget_burst(sim: Simulator, server: RedisServer | None, headroom: float) -> list[dict[str, Any]]:
    """Three processes x six threads ask for tickers at the same instant; their reports."""
    with Simulator(exchange="binance", seed=7) as twin:  # the same markets, without spending sim's budget
        markets = twin.attach(ccxt.binance({"enableRateLimit": False})).load_markets()
    now = time.time()
    if now % 60 > 50:  # keep the burst inside one minute window of the pool
        time.sleep(61 - now % 60)
    go = math.ceil(time.time()) + 3.0  # time for the processes to start
    args = {"sim_url": sim.url, "redis_url": server.url if server else None, "headroom": headroom}
    workers = [
        Worker("burst", **args, markets=json.loads(json.dumps(markets)), go=go, threads=6, calls=5)
        for _ in range(3)
    ]
    try:
        for worker in workers:
            assert worker.report() == {"ready": True}
        return [worker.report() for worker in workers]
    finally:
        for worker in workers:
            worker.close()


def _tickers_per_minute(sim: Simulator) -> Counter[int]:
    return Counter(int(r["ts"] // 60) for r in sim.ground_truth() if r["endpoint"] == "ticker")


def test_processes_sharing_a_budget_never_overspend_it(redis_server: RedisServer, sim: Simulator) -> None:
    # request_weight: 6000 per minute x 0.005 = 30 per minute; a ticker weighs 2: 15 tickers a minute.
    reports = _budget_burst(sim, redis_server, headroom=0.005)
    answered = sum(r["ok"] for r in reports)
    per_minute = _tickers_per_minute(sim)
    assert max(per_minute.values()) <= 15, per_minute
    assert answered == sum(per_minute.values())
    assert answered >= 5  # the budget was spent, not refused wholesale
    assert sum(r["refused"] for r in reports) == 3 * 6 * 5 - answered  # the rest never went out
    api_key = sim.dialect("binance").default_credentials()["apiKey"]
    keys = [key.decode() for key in redis_server.client().keys("*")]
    assert any(key.startswith("hardened:budget:binance:") for key in keys)
    assert not any(api_key in key for key in keys)  # the budget's key is a hash of the API key


def test_leases_across_processes_never_exceed_a_window(redis_server: RedisServer) -> None:
    """Two links (as two processes) lease one pool of 40 units per 2 s window from threads."""
    links = [RedisLink(redis_server.url, 0.5), RedisLink(redis_server.url, 0.5)]
    budgets = [SharedBudget(link, "binance", "key-A", lease_share=0.1) for link in links]
    booked: Counter[int] = Counter()
    lock = threading.Lock()

    def spend(budget: SharedBudget) -> None:
        for _ in range(60):
            now = time.time()
            wait, ok = budget.delay_before([("weight", 40.0, 2.0, 1.0)], now)
            if ok:
                sent = max(time.time(), now + wait)  # when the call would go out
                with lock:
                    booked[int(sent // 2.0)] += 1

    threads = [threading.Thread(target=spend, args=(b,)) for b in budgets for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for link in links:
        link.close()
    assert max(booked.values()) <= 40, booked
    assert sum(booked.values()) >= 40  # at least one whole window was granted
    keys = [k.decode() for k in redis_server.client().keys("hardened:budget:*")]
    assert keys and not any("key-A" in k for k in keys)  # a hash of the key, never the key


def test_a_pool_counted_per_ip_is_one_budget_for_every_key(redis_server: RedisServer) -> None:
    """Binance counts request weight per IP: bots on one Redis with different API keys (or none)
    share it, while a pool counted per account (orders) stays each key's own."""

    def booked_now(budget: SharedBudget, pool: str) -> int:
        """Calls booked at once (no wait) before the window of ``pool`` (cap 10 per hour) is spent."""
        n, now = 0, time.time()
        while n < 100:
            wait, ok = budget.delay_before([(pool, 10.0, 3600.0, 1.0)], now)
            if not ok or wait > 0.0:
                return n
            n += 1
        return n

    budgets = [
        shared_state_for(redis_server.url, 1000, "binance", key, False).budget for key in ("A", "B", None)
    ]
    for budget in budgets:
        budget.lease_share = 1.0  # one lease takes what is left: no top-up racing the count
    assert sum(booked_now(budget, "request_weight") for budget in budgets) == 10  # scope "ip"
    assert [booked_now(budget, "orders_1d") for budget in budgets] == [10, 10, 10]  # scope "account"


def test_calls_refused_while_the_group_window_is_spent_do_not_book_the_next_one(
    redis_server: RedisServer,
) -> None:
    """The shared budget books such a call in the next window and says wait; refused (the wait is
    past max_delay), the booking is given back: 200 refusals take one lease of the next minute, not
    200 calls' weight (enough of them would starve it, and the one after, for the whole group)."""
    raw = ccxt.binance()
    raw.fetch_ticker = lambda symbol, params=None: {"symbol": symbol, "bid": 1.0}
    ex = HardenedClient(raw, redis_url=redis_server.url, max_delay=1.0, **NO_CACHE)
    server = redis_server.client()
    seconds, micros = server.time()
    if (seconds % 60) + micros / 1e6 > 57.0:  # not across a minute's end: the test needs one window
        time.sleep(60.5 - (seconds % 60) - micros / 1e6)
        seconds, _ = server.time()
    window = seconds // 60
    server.set(f"hardened:budget:binance:ip:request_weight:{window}", 5700)  # another process spent it
    for _ in range(200):
        with pytest.raises(RateLimitBackoff):
            ex.fetch_ticker("BTC/USDT")
    booked = float(server.get(f"hardened:budget:binance:ip:request_weight:{window + 1}") or 0)
    assert booked <= 5700 * 0.02 + 2  # one lease (2 % of the cap), whatever the number of refusals


# --- 3. Redis killed mid-run, then back --------------------------------------------------------------


def test_redis_killed_mid_run_then_back(sim: Simulator) -> None:
    server = RedisServer(password=PASSWORD).start()
    try:
        ex = local_client(sim, server)
        other = local_client(sim, server)
        assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"
        with capture_events(["shared_state"]) as events, capture_logs() as logs:
            server.kill()
            ex.breakers["binance_ticker"]._breaker.force_open()  # tripped while Redis is away
            for _ in range(20):
                assert other.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"  # local state only
            assert wait_for(lambda: [e["state"] for e in events] == ["degraded"])
            assert other.stats()["shared"]["state"] == "local"
            assert _shared_up(other) == 0.0
            time.sleep(0.3)  # reconnect attempts keep failing: still said only once
            server.start()  # same port
            assert wait_for(lambda: [e["state"] for e in events] == ["degraded", "rejoined"])
        said = [line for line in logs if line["event"].startswith("shared_state_")]
        assert [line["event"] for line in said] == ["shared_state_degraded", "shared_state_rejoined"]
        assert PASSWORD not in repr(events) + repr(logs)
        assert ":***@" in events[0]["redis"]

        # The trip made during the outage reached Redis on rejoin, and sharing works again.
        (key,) = server.client().keys("hardened:breaker:binance_ticker:*")  # one venue
        held = server.client().hgetall(key)
        assert held[b"state"] == b"open"
        assert wait_for(lambda: other.breakers["binance_ticker"].state == "open")
        ex.breakers["binance_ticker"].reset()
        assert wait_for(lambda: other.breakers["binance_ticker"].state == "closed")
        assert _shared_up(other) == 1.0
    finally:
        disconnect_all()
        server.kill()


def _shared_up(client: HardenedClient) -> float | None:
    """The ``hardened_shared_state_up`` gauge of ``client`` as /metrics would show it."""
    from hardened.telemetry.metrics import HardenedCollector

    collector = HardenedCollector(stats_source=lambda: {client.client_name: client.stats()})
    for family in collector.collect():
        if family.name == "hardened_shared_state_up":
            return family.samples[0].value if family.samples else None
    return None


# --- 4. no call waits on a Redis that is down or hung ------------------------------------------------


def test_a_hung_redis_costs_one_timeout_then_nothing(redis_server: RedisServer, sim: Simulator) -> None:
    ex = local_client(sim, redis_server, redis_timeout_ms=300)
    ex.load_markets()
    budget = ex._hd.shared.budget
    with capture_events(["shared_state"]) as events:
        redis_server.pause()  # every connection open, nothing answers
        try:
            durations = []
            for _ in range(3 * 60):  # enough tickers to need new leases from Redis
                started = time.perf_counter()
                ex.fetch_ticker("BTC/USDT")
                durations.append(time.perf_counter() - started)
            assert [e["state"] for e in events] == ["degraded"]
        finally:
            redis_server.resume()
        assert wait_for(lambda: [e["state"] for e in events] == ["degraded", "rejoined"])
    slow = [d for d in durations if d >= 0.3]
    assert len(slow) <= 1, f"{len(slow)} calls waited on Redis"  # the one that found it hung
    assert budget.refills >= 1


def test_unreachable_redis_at_start_never_blocks_calls(sim: Simulator) -> None:
    closed_port = _free_port()  # nothing listens there
    try:
        with capture_events(["shared_state"]) as events:
            ex = HardenedClient(
                sim.attach(ccxt.binance({"enableRateLimit": False})),
                redis_url=f"redis://:{PASSWORD}@127.0.0.1:{closed_port}/0",
                shared_cache=True,
                **{**NO_CACHE, "cache_ttl": 1.0},
            )
            for _ in range(5):
                assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"
        assert [e["state"] for e in events] == ["degraded"]
        assert PASSWORD not in repr(events)
        assert ex.stats()["shared"]["state"] == "local"
    finally:
        disconnect_all()


async def test_async_clients_share_breakers_too(redis_server: RedisServer, sim: Simulator) -> None:
    import ccxt.async_support as accxt

    from hardened import AsyncHardenedClient

    inner = sim.attach(accxt.binance({"enableRateLimit": False}))
    async with AsyncHardenedClient(inner, redis_url=redis_server.url, shared_cache=True, **NO_CACHE) as ax:
        sync = local_client(sim, redis_server)
        assert (await ax.fetch_ticker("BTC/USDT"))["symbol"] == "BTC/USDT"
        sync.breakers["binance_ticker"]._breaker.force_open()
        assert wait_for(lambda: ax.breakers["binance_ticker"].state == "open")
        with pytest.raises(CircuitOpenError):
            await ax.fetch_ticker("BTC/USDT")


# --- the shared cache, configuration, imports --------------------------------------------------------


def test_shared_cache_serves_another_clients_answer(redis_server: RedisServer, sim: Simulator) -> None:
    cached = {**NO_CACHE, "cache_ttl": 30.0, "shared_cache": True}
    a, b = local_client(sim, redis_server, **cached), local_client(sim, redis_server, **cached)
    a.load_markets()
    first = a.fetch_ticker("ETH/USDT")
    stored = redis_server.client().keys
    assert wait_for(lambda: len(stored("hardened:cache:binance:*")) == 1)  # the ticker (not markets)
    before = requests_to(sim, "ticker")
    assert b.fetch_ticker("ETH/USDT") == first
    assert requests_to(sim, "ticker") == before
    assert b.stats()["endpoints"]["ticker"]["cache_hits"] == 1


def test_load_markets_is_never_answered_from_the_shared_cache(
    redis_server: RedisServer, sim: Simulator
) -> None:
    """ccxt's load_markets sets the markets on the exchange: an answer from Redis would leave
    them unset (``ex.market(...)`` failing) although load_markets "succeeded"."""
    cached = {**NO_CACHE, "cache_ttl": 30.0, "shared_cache": True}
    a, b = local_client(sim, redis_server, **cached), local_client(sim, redis_server, **cached)
    markets = a.load_markets()
    a.fetch_ticker("ETH/USDT")  # written after anything load_markets would have written
    assert wait_for(lambda: len(redis_server.client().keys("hardened:cache:binance:*")) >= 1)
    assert b.load_markets() == markets
    assert b.markets is not None and b.market("BTC/USDT")["id"] == "BTCUSDT"
    assert b.amount_to_precision("BTC/USDT", 0.123456789) == a.amount_to_precision("BTC/USDT", 0.123456789)


def test_the_shared_cache_never_serves_one_venues_answer_to_another(redis_server: RedisServer) -> None:
    """Two keyless clients of one exchange id on different venues (a testnet and a mainnet, here
    two simulators with other prices) must not answer each other."""
    cached = {**NO_CACHE, "cache_ttl": 30.0, "shared_cache": True}
    with Simulator(exchange="binance", seed=1) as testnet, Simulator(exchange="binance", seed=999) as live:
        a = HardenedClient(
            testnet.attach(ccxt.binance(), credentials=False), redis_url=redis_server.url, **cached
        )
        b = HardenedClient(
            live.attach(ccxt.binance(), credentials=False), redis_url=redis_server.url, **cached
        )
        a.fetch_ticker("BTC/USDT")
        assert wait_for(lambda: len(redis_server.client().keys("hardened:cache:binance:*")) == 1)
        before = requests_to(live, "ticker")
        b.fetch_ticker("BTC/USDT")
        assert requests_to(live, "ticker") == before + 1  # asked its own venue
        assert b.stats()["endpoints"]["ticker"]["cache_hits"] == 0


def test_the_venue_of_a_shared_answer_follows_urls_sandbox_and_market_type() -> None:
    from hardened.shared.cache import venue_of

    assert venue_of(ccxt.binance()) == venue_of(ccxt.binance())
    sandbox = ccxt.binance()
    sandbox.set_sandbox_mode(True)
    futures = ccxt.binance({"options": {"defaultType": "future"}})
    moved = ccxt.binance()
    moved.urls = {**moved.urls, "api": {**moved.urls["api"], "public": "https://example.test/api/v3"}}
    venues = {venue_of(e) for e in (ccxt.binance(), sandbox, futures, moved)}
    assert len(venues) == 4


def test_bad_redis_url_fails_at_construction_without_showing_the_password() -> None:
    with pytest.raises(ConfigError, match="redis_url") as caught:
        HardenedConfig(redis_url=f"http://:{PASSWORD}@127.0.0.1:6379")
    assert PASSWORD not in str(caught.value) and "redis://" in str(caught.value)
    with pytest.raises(ConfigError, match=r"(?i)port"):
        HardenedConfig(redis_url="redis://127.0.0.1:99999/0")
    assert PASSWORD not in repr(HardenedConfig(redis_url=f"redis://:{PASSWORD}@127.0.0.1:6379/0"))


def test_the_in_memory_default_never_loads_the_shared_state() -> None:
    """Without ``redis_url`` nothing of hardened.shared that talks to Redis is imported. (pybreaker
    imports redis itself whenever it is installed, for its CircuitRedisStorage: not ours to stop.)"""
    code = (
        "import sys, ccxt; from hardened import HardenedClient; "
        "HardenedClient(ccxt.binance()); "
        "print(sorted(m for m in sys.modules if m.startswith('hardened.shared')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['hardened.shared', 'hardened.shared.url']", out.stderr


# --- decisions without Redis: newer wins, URLs masked -------------------------------------------------


def test_a_breaker_takes_only_newer_transitions() -> None:
    from hardened.pipeline.breaker import EndpointBreaker

    policy = HardenedConfig(recovery_timeout=30, recovery_timeout_min=30).for_endpoint("ticker")
    breaker = EndpointBreaker("binance_ticker", policy)
    opened = time.time() - 10.0
    assert breaker.apply_shared("open", opened, opened)
    assert breaker.state == "open" and breaker.shared is False
    assert 19.0 < breaker.view().retry_in <= 20.0  # opened 10 s ago elsewhere: 20 s left here too
    assert not breaker.apply_shared("closed", opened - 1.0, None)  # older than what we hold
    assert breaker.state == "open"
    assert not breaker.apply_shared("half_open", opened + 1.0, None)  # each process half-opens itself
    assert breaker.apply_shared("closed", opened + 2.0, None)
    assert breaker.state == "closed" and breaker.trips == 0  # another's trip is not counted as ours


def test_redis_urls_are_shown_without_their_password() -> None:
    from hardened.shared.url import check_redis_url, redact_url

    assert redact_url(f"redis://:{PASSWORD}@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url(f"rediss://user:{PASSWORD}@h:6380/1") == "rediss://user:***@h:6380/1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert check_redis_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    for bad, why in [("redis://", "host"), ("redis://h:6379/x", "database"), ("unix://", "socket")]:
        with pytest.raises(ValueError, match=why):
            check_redis_url(bad)


def test_a_redis_url_that_does_not_parse_is_hidden_and_query_credentials_are_masked() -> None:
    """A password with an unencoded / # ? or @ splits the URL where its end cannot be told: the
    URL is not shown at all. ``?password=`` / ``?username=`` (redis-py takes them) are masked."""
    from hardened.shared.url import HIDDEN, check_redis_url, redact_url

    for bad in (
        f"redis://:Pw/{PASSWORD}@127.0.0.1:6379/0",
        f"redis://:Pw#{PASSWORD}@127.0.0.1:6379/0",
        f"redis://:Pw?{PASSWORD}@127.0.0.1:6379/0",
        f"redis://:12/{PASSWORD}@127.0.0.1/0",
    ):
        assert redact_url(bad) == HIDDEN
        with pytest.raises(ValueError, match="not a valid Redis URL") as caught:
            check_redis_url(bad)
        assert PASSWORD not in str(caught.value) and "Pw" not in str(caught.value)
        with pytest.raises(ConfigError, match="redis_url") as config_error:
            HardenedConfig(redis_url=bad)
        assert PASSWORD not in str(config_error.value) and "Pw" not in str(config_error.value)
    shown = redact_url(f"redis://127.0.0.1:6379/0?username=bot&password={PASSWORD}&socket_timeout=1")
    assert shown == "redis://127.0.0.1:6379/0?username=***&password=***&socket_timeout=1"
    assert redact_url(f"unix:///run/redis.sock?db=0&password={PASSWORD}") == (
        "unix:///run/redis.sock?db=0&password=***"
    )
    assert redact_url("redis://127.0.0.1:99999/0") == "redis://127.0.0.1:99999/0"  # no password in it


def test_a_query_password_never_reaches_stats_events_or_logs(sim: Simulator) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0?password={PASSWORD}"  # nothing listens: degraded
    try:
        with capture_events(["shared_state"]) as events, capture_logs() as logs:
            ex = HardenedClient(
                sim.attach(ccxt.binance({"enableRateLimit": False})), redis_url=url, **NO_CACHE
            )
            assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"
        assert [e["state"] for e in events] == ["degraded"]
        shown = ex.stats()["shared"]["redis"]
        assert shown.endswith("/0?password=***")
        said = [line for line in logs if line["event"] == "shared_state_degraded"]
        assert said and all(line["redis"] == shown for line in said)
        assert PASSWORD not in repr(events) + repr(logs) + repr(ex.stats())
    finally:
        disconnect_all()


def test_redis_url_comes_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENED_REDIS_URL", "redis://127.0.0.1:6390/2")
    monkeypatch.setenv("HARDENED_SHARED_CACHE", "true")
    config = HardenedConfig()
    assert config.redis_url == "redis://127.0.0.1:6390/2" and config.shared_cache is True
