"""The status server end to end: real hardened clients around patched ccxt exchanges, real sockets.

No network and no simulator: each test builds a ``HardenedClient`` around a ``ccxt.binance``
whose unified methods are patched on the instance, and reads the stream with websockets' clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import ccxt.async_support as accxt
import pytest
import structlog
import structlog.testing
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from hardened import AsyncHardenedClient, HardenedClient
from hardened.status import StatusServer, ensure_status_server, serve_status, start_status_server
from hardened.status.auth import host_allowed, is_loopback, token_from
from hardened.telemetry.events import EventBus, bus
from hardened.telemetry.health import HealthGate


def fresh_ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
    """A clean ticker stamped now (the validation stage refuses stale ones)."""
    return {
        "symbol": "BTC/USDT",
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "timestamp": int(time.time() * 1000),
    }


def _network_down(*_a: Any, **_k: Any) -> Any:
    raise ccxt.NetworkError("connection reset by peer")


@pytest.fixture
def client() -> Iterator[HardenedClient]:
    """A hardened binance with a healthy ticker; two transient failures open the ticker breaker.

    No cache and no stale-if-error, so every failure reaches the caller and the stats.
    """
    ex = ccxt.binance()
    ex.fetch_ticker = fresh_ticker
    c = HardenedClient(
        ex, max_retries=0, failure_threshold=2, cache_ttl=0, stale_if_error=0, recovery_timeout=60
    )
    yield c
    c.close()


def only(*clients: Any) -> Callable[[], dict[str, dict[str, Any]]]:
    """A stats source limited to ``clients`` (the registry is process-wide)."""
    return lambda: {c.client_name: c.stats() for c in clients}


def trip(c: HardenedClient) -> None:
    """Fail the ticker until its breaker opens (a stale answer may be served once it is open)."""
    c.inner.fetch_ticker = _network_down
    for _ in range(3):
        with contextlib.suppress(ccxt.NetworkError):  # CircuitOpenError is a NetworkError too
            c.fetch_ticker("BTC/USDT")
    assert c.breakers["binance_ticker"].state == "open"


def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("expected message never arrived")
        message = recv_json(ws, remaining)
        if pred(message):
            return message


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_snapshot_on_connect_lists_registered_clients(client: HardenedClient) -> None:
    client.fetch_ticker("BTC/USDT")
    with start_status_server(port=0, http_port=None) as handle, connect(handle.url) as ws:
        snap = recv_json(ws)
    assert snap["type"] == "snapshot" and snap["version"] == 1
    view = snap["clients"][client.client_name]  # read from the registry: no stats_source given
    assert view["exchange"] == "binance"
    assert view["endpoints"]["ticker"]["calls"] == 1
    assert view["breakers"]["binance_ticker"]["state"] == "closed"
    assert view["breakers"]["binance_ticker"]["endpoint"] == "ticker"
    assert view["health"]["status"] in {"excellent", "good", "fair", "poor", "critical"}
    assert {"score", "status", "reasons"} <= set(snap["health"])
    assert isinstance(snap["events"], list) and isinstance(snap["alerts"], list)
    assert "total_errors" in snap["tracker"]
    assert snap["server"]["connections"] == 0  # counted once the first message is queued


def test_event_on_breaker_transition(client: HardenedClient) -> None:
    with (
        start_status_server(port=0, http_port=None, stats_source=only(client)) as handle,
        connect(handle.url) as ws,
    ):
        assert recv_json(ws)["type"] == "snapshot"
        trip(client)
        message = recv_until(
            ws, lambda m: m["type"] == "event" and m["event"]["kind"] == "breaker_transition"
        )
    event = message["event"]
    assert message["version"] == 1
    assert event["breaker"] == "binance_ticker"
    assert (event["old"], event["new"]) == ("closed", "open")
    assert event["client"] == client.client_name
    assert isinstance(event["ts"], float)


def test_events_reach_the_snapshot_of_later_peers(client: HardenedClient) -> None:
    with start_status_server(port=0, http_port=None, stats_source=only(client)) as handle:
        trip(client)
        deadline = time.monotonic() + 5
        while handle.server.counters["events"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        bus.publish("alert", severity="critical", message="ticker breaker open", client=client.client_name)
        time.sleep(0.2)
        with connect(handle.url) as ws:
            snap = recv_json(ws)
    kinds = [e["kind"] for e in snap["events"]]
    assert "breaker_transition" in kinds and "call_failed" in kinds
    assert snap["alerts"][-1]["message"] == "ticker breaker open"
    assert snap["clients"][client.client_name]["breakers"]["binance_ticker"]["state"] == "open"


def test_stats_every_interval_with_dropped_count(client: HardenedClient) -> None:
    client.fetch_ticker("BTC/USDT")
    with (
        start_status_server(port=0, http_port=None, interval=0.1, stats_source=only(client)) as handle,
        connect(handle.url) as ws,
    ):
        recv_json(ws)
        stats = [recv_until(ws, lambda m: m["type"] == "stats") for _ in range(3)]
    seqs = [s["seq"] for s in stats]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    for s in stats:
        assert s["version"] == 1
        assert s["you"]["dropped"] == 0
        assert s["server"]["connections"] == 1 and "dropped" in s["server"]
        assert s["clients"][client.client_name]["endpoints"]["ticker"]["calls"] == 1
        assert "score" in s["health"]


def _stuck_peer(port: int) -> socket.socket:
    """A websocket peer that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def test_slow_peer_never_blocks_the_bot_or_other_peers(client: HardenedClient) -> None:
    total = 5000
    with start_status_server(
        port=0, http_port=None, queue_size=50, interval=0.2, stats_source=only(client)
    ) as handle:
        stuck = _stuck_peer(handle.port)
        received: list[int] = []
        done = threading.Event()

        def reader() -> None:
            with connect(handle.url) as ws:
                ready.set()
                while not done.is_set():
                    try:
                        message = recv_json(ws, 5)
                    except TimeoutError:
                        return
                    if message["type"] == "event" and message["event"]["kind"] == "bench":
                        received.append(message["event"]["seq"])
                        if message["event"]["seq"] == total - 1:
                            done.set()

        ready = threading.Event()
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        assert ready.wait(5)
        time.sleep(0.2)
        padding = "x" * 2000
        for seq in range(total):  # the producer: every publish returns at once, whatever the peers do
            bus.publish("bench", seq=seq, padding=padding)
            if seq % 25 == 24:
                time.sleep(0.002)
        client.fetch_ticker("BTC/USDT")  # a call still goes through while a peer is stuck
        assert done.wait(20), f"healthy peer stopped at {received[-1:]}"
        thread.join(5)
        deadline = time.monotonic() + 5
        while handle.server.counters["dropped"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        dropped = handle.server.counters["dropped"]
        stuck.close()
    assert received[-1] == total - 1
    assert len(received) > total * 0.9  # the healthy peer got (nearly) everything
    assert dropped > 0  # the stuck one lost messages, counted


def test_malformed_messages_are_ignored_and_ping_snapshot_answered(client: HardenedClient) -> None:
    with (
        start_status_server(port=0, http_port=None, stats_source=only(client)) as handle,
        connect(handle.url) as ws,
    ):
        recv_json(ws)
        for bad in ("garbage", "[1, 2]", '{"no": "type"}', '{"type": "unknown"}', "null"):
            ws.send(bad)
        ws.send(b"\x00\x01binary")
        ws.send(json.dumps({"type": "ping", "id": 7}))
        pong = recv_until(ws, lambda m: m["type"] == "pong")
        time.sleep(0.6)  # snapshot requests are limited to two a second per peer
        ws.send(json.dumps({"type": "snapshot"}))
        snap = recv_until(ws, lambda m: m["type"] == "snapshot")
        malformed = handle.server.counters["malformed"]
    assert pong == {"type": "pong", "version": 1, "ts": pong["ts"], "id": 7}
    assert client.client_name in snap["clients"]
    assert malformed >= 6


def test_message_over_the_size_limit_closes_only_that_peer(client: HardenedClient) -> None:
    with start_status_server(port=0, http_port=None, max_message_size=1024, stats_source=only(client)) as h:
        with connect(h.url) as ws:
            recv_json(ws)
            ws.send("x" * 5000)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        with connect(h.url) as ws:  # the server itself is fine
            assert recv_json(ws)["type"] == "snapshot"


def test_token_is_required_off_loopback() -> None:
    with pytest.raises(ValueError, match="without a token"):
        StatusServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="without a token"):
        start_status_server(host="192.168.1.10", port=0)
    StatusServer(host="0.0.0.0", token="long-random-token")  # accepted (not started: no bind here)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_token_is_enforced_on_websocket_and_http(client: HardenedClient) -> None:
    token = "s3cret-token"
    with start_status_server(port=0, http_port=0, token=token, stats_source=only(client)) as h:
        for headers, url in (
            (None, h.url),
            ({"Authorization": "Bearer nope"}, h.url),
            (None, h.url + "/?token=x"),
        ):
            with pytest.raises(InvalidStatus) as info:
                connect(url, additional_headers=headers, open_timeout=5).close()
            assert info.value.response.status_code == 401
        with connect(h.url + f"/?token={token}") as ws:
            assert recv_json(ws)["type"] == "snapshot"
        with connect(h.url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert recv_json(ws)["type"] == "snapshot"
        assert http_get(h.http_url + "/health")[0] == 401
        assert http_get(h.http_url + "/metrics?token=wrong")[0] == 401
        assert http_get(h.http_url + "/health", {"Authorization": f"Bearer {token}"})[0] == 200
        assert http_get(h.http_url + f"/metrics?token={token}")[0] == 200
        assert h.server.counters["refused"] == 3


def test_without_token_foreign_origins_and_hosts_are_refused(client: HardenedClient) -> None:
    with start_status_server(port=0, http_port=0, stats_source=only(client)) as h:
        with pytest.raises(InvalidStatus) as info:
            connect(h.url, origin="http://evil.example", open_timeout=5).close()  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        with connect(h.url, origin=f"http://127.0.0.1:{h.http_port}") as ws:  # type: ignore[arg-type]
            assert recv_json(ws)["type"] == "snapshot"
        assert http_get(h.http_url + "/health", {"Host": "evil.example"})[0] == 421
    assert host_allowed("127.0.0.1:8766") and host_allowed("localhost") and host_allowed("[::1]:8766")
    assert not host_allowed("evil.example:8766") and not host_allowed(None)
    assert token_from("/?token=abc", {}) == "abc"
    assert token_from("/", {"Authorization": "Bearer xyz"}) == "xyz"
    assert token_from("/", {"Authorization": "Basic xyz"}) is None


def test_health_endpoint_turns_503_on_a_sustained_outage_not_on_one_bad_reading(
    client: HardenedClient,
) -> None:
    clock = {"now": 1000.0}
    gate = HealthGate(lambda: clock["now"])
    client.fetch_ticker("BTC/USDT")
    with start_status_server(port=0, http_port=0, stats_source=only(client), health_gate=gate) as h:
        status, body = http_get(h.http_url + "/health")
        first = json.loads(body)
        assert status == 200 and first["healthy"] is True and first["status"] == "excellent"
        trip(client)
        for _ in range(30):  # the open breaker refuses every call: all the traffic fails
            with contextlib.suppress(ccxt.NetworkError):
                client.fetch_ticker("BTC/USDT")
        clock["now"] += 1.0
        status_soon, body = http_get(h.http_url + "/health")
        soon = json.loads(body)
        clock["now"] += 120.0  # the outage lasts
        status_later, body = http_get(h.http_url + "/health")
        later = json.loads(body)
    assert soon["status"] == "critical" and status_soon == 200  # one bad reading does not flip it
    assert soon["smoothed_score"] > 50
    assert status_later == 503 and later["healthy"] is False and later["smoothed_score"] < 50
    assert any("breaker open" in r for r in later["reasons"])
    assert later["clients"][client.client_name]["status"] == later["status"]


def test_page_and_config_are_served(client: HardenedClient) -> None:
    with start_status_server(port=0, http_port=0, stats_source=only(client)) as h:
        status, page = http_get(h.http_url + "/")
        assert status == 200 and b"hardened status" in page and b"new WebSocket" in page
        assert b"http://" not in page.replace(b"http://www.w3.org/2000/svg", b"")  # nothing from a CDN
        status, body = http_get(h.http_url + "/config.json")
        assert status == 200 and json.loads(body) == {
            "version": 1,
            "ws_port": h.port,
            "token_required": False,
        }
        status, body = http_get(h.http_url + "/snapshot.json")
        assert status == 200 and json.loads(body)["type"] == "snapshot"


def test_repeated_failures_are_aggregated(client: HardenedClient) -> None:
    c = HardenedClient(
        ccxt.binance(), max_retries=0, failure_threshold=10_000, minimum_calls=10_000, cache_ttl=0
    )
    c.inner.fetch_ticker = _network_down
    try:
        with (
            start_status_server(port=0, http_port=None, aggregate_s=0.2, stats_source=only(c)) as h,
            connect(h.url) as ws,
        ):
            recv_json(ws)
            for _ in range(40):
                with pytest.raises(ccxt.NetworkError):
                    c.fetch_ticker("BTC/USDT")
            first = recv_until(ws, lambda m: m["type"] == "event" and m["event"]["kind"] == "call_failed")
            merged = recv_until(ws, lambda m: m["type"] == "event" and m["event"].get("aggregated"))
    finally:
        c.close()
    assert first["event"]["count"] == 1 and first["event"]["error"] == "NetworkError"
    assert merged["event"]["count"] == 39
    assert merged["event"]["first_ts"] <= merged["event"]["ts"]
    assert merged["event"]["message"] == "connection reset by peer"


def test_aggregation_keeps_the_count_an_event_carries() -> None:
    """``request_skipped`` says how many calls were skipped; the stream used to reset it to 1 (and
    count the merged repeats as events), so 50 skipped calls showed as 3."""
    events = EventBus()
    skipped = {"exchange": "binance", "endpoint": "ohlcv", "probability": 0.97}
    with (
        start_status_server(
            port=0, http_port=None, event_bus=events, stats_source=dict, aggregate_s=0.2, interval=60
        ) as h,
        connect(h.url) as ws,
    ):
        recv_json(ws)
        for count in (37, 5, 8):
            events.publish("request_skipped", **skipped, count=count)
        first = recv_until(ws, lambda m: m["type"] == "event")
        merged = recv_until(ws, lambda m: m["type"] == "event" and m["event"].get("aggregated"))
    assert first["event"]["count"] == 37
    assert merged["event"]["count"] == 13 and merged["event"]["probability"] == 0.97


def test_stop_releases_the_port_and_unsubscribes(client: HardenedClient) -> None:
    handle = start_status_server(port=0, http_port=0, stats_source=only(client))
    port, before = handle.port, handle.server.counters["events"]
    handle.stop()
    assert not handle.running
    bus.publish("alert", message="after stop")
    assert handle.server.counters["events"] == before
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}", open_timeout=2).close()


def test_a_port_in_use_fails_at_start() -> None:
    with start_status_server(port=0, http_port=None) as first:
        with pytest.raises(OSError):
            start_status_server(port=first.port, http_port=None)
        with connect(first.url) as ws:  # the first one is untouched
            assert recv_json(ws)["type"] == "snapshot"


def test_ensure_status_server_starts_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = ensure_status_server(port, http_port=0)
    try:
        assert ensure_status_server(port, http_port=0) is first
    finally:
        first.stop()


def test_a_taken_status_port_does_not_stop_the_bot() -> None:
    """``status_port=`` on a port another process holds: the client still works, and a warning
    names the port and the reason (it used to raise OSError out of the client's constructor)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ex = ccxt.binance()
        ex.fetch_ticker = fresh_ticker
        with structlog.testing.capture_logs() as logs:
            assert ensure_status_server(port, http_port=0) is None
            c = HardenedClient(ex, status_port=port, cache_ttl=0)
        try:
            assert c.fetch_ticker("BTC/USDT")["last"] == 100.0
        finally:
            c.close()
    warnings = [e for e in logs if e["event"] == "status_server_unavailable"]
    assert len(warnings) == 2 and warnings[0]["log_level"] == "warning"
    assert warnings[0]["port"] == port and "address already in use" in warnings[0]["error"]


async def test_serve_status_runs_as_a_task_in_an_async_bot() -> None:
    ex = accxt.binance()

    async def down(*_a: Any, **_k: Any) -> Any:
        raise ccxt.RequestTimeout("timed out")

    ex.fetch_ticker = down
    client = AsyncHardenedClient(ex, max_retries=0, failure_threshold=2, cache_ttl=0)
    started: asyncio.Future[StatusServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_status(port=0, http_port=0, interval=0.1, stats_source=only(client), ready=started.set_result)
    )
    try:
        server = await asyncio.wait_for(started, 5)
        async with aconnect(server.url) as ws:
            snap = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert snap["type"] == "snapshot" and client.client_name in snap["clients"]
            for _ in range(3):
                with pytest.raises(ccxt.NetworkError):
                    await client.fetch_ticker("BTC/USDT")
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if message["type"] == "event" and message["event"]["kind"] == "breaker_transition":
                    break
        assert message["event"]["new"] == "open"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()
    assert server.connections == 0


def closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``within`` seconds (a failure guard)."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def partial_request(port: int) -> socket.socket:
    """A connection that starts a request and never finishes its headers (a slowloris)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def test_partial_headers_are_closed_after_the_header_timeout_and_health_still_answers(
    client: HardenedClient,
) -> None:
    client.fetch_ticker("BTC/USDT")
    with start_status_server(
        port=0, http_port=0, stats_source=only(client), header_timeout=1.0, max_http_connections=16
    ) as h:
        assert h.http_port is not None
        slow = [partial_request(h.http_port) for _ in range(40)]  # more than the cap
        try:
            status, body = http_get(h.http_url + "/health")  # answered while they hang on
            assert status == 200 and json.loads(body)["status"] in {"excellent", "good", "fair"}
            assert all(closed_by_server(s) for s in slow)
            counters = dict(h.server.counters)
        finally:
            for s in slow:
                s.close()
    assert counters["http_header_timeouts"] + counters["http_evicted"] >= 40
    assert counters["http_header_timeouts"] >= 1  # the deadline closed some...
    assert counters["http_evicted"] >= 1  # ...and the cap made room by closing the oldest waiting


def test_idle_keep_alive_connections_are_closed(client: HardenedClient) -> None:
    with start_status_server(port=0, http_port=0, stats_source=only(client), idle_timeout=0.5) as h:
        assert h.http_port is not None
        sock = socket.create_connection(("127.0.0.1", h.http_port), timeout=5)
        with sock:
            sock.sendall(b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # served, then kept alive
            assert closed_by_server(sock)  # ...until idle for idle_timeout


def test_the_http_connection_cap_refuses_when_every_connection_is_busy(client: HardenedClient) -> None:
    with start_status_server(
        port=0, http_port=0, stats_source=only(client), max_http_connections=2, idle_timeout=30
    ) as h:
        assert h.http_port is not None
        kept = []
        for _ in range(2):  # two keep-alive connections that completed a request: not evictable
            sock = socket.create_connection(("127.0.0.1", h.http_port), timeout=5)
            sock.sendall(b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            kept.append(sock)
        try:
            status, _ = http_get(h.http_url + "/health")
        finally:
            for sock in kept:
                sock.close()
    assert status == 503


@pytest.mark.parametrize(
    ("token", "request_line"),
    [
        ("s3cret", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),  # no token
        (None, b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n"),  # DNS rebinding
    ],
)
def test_refused_http_clients_cannot_hold_the_connection_slots(
    client: HardenedClient, token: str | None, request_line: bytes
) -> None:
    """A request refused (401, 421) used to count as served and its connection stayed open: a
    client without the token holding every slot got the operator's ``/health`` a 503."""
    with start_status_server(
        port=0, http_port=0, token=token, stats_source=only(client), max_http_connections=2
    ) as h:
        assert h.http_port is not None
        held = []
        try:
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", h.http_port), timeout=5)
                sock.sendall(request_line)
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += sock.recv(4096)
                assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 421"))
                held.append(sock)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            status, _ = http_get(h.http_url + "/health", headers)
        finally:
            for sock in held:
                sock.close()
    assert status == 200


@pytest.mark.parametrize("bad", ["[" * 4096, "{" * 4000, '{"type": ' * 400 + "1" + "}" * 400])
def test_deeply_nested_messages_get_an_error_reply_and_the_peer_stays_usable(
    client: HardenedClient, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        start_status_server(port=0, http_port=None, stats_source=only(client)) as handle,
        connect(handle.url) as ws,
    ):
        recv_json(ws)
        ws.send(bad)
        error = recv_until(ws, lambda m: m["type"] == "error")
        ws.send(json.dumps({"type": "ping", "id": 1}))  # the connection survived
        pong = recv_until(ws, lambda m: m["type"] == "pong")
        malformed = handle.server.counters["malformed"]
    assert "nested" in error["error"] and error["version"] == 1
    assert pong["id"] == 1 and malformed == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_malformed_messages_get_an_error_reply_naming_the_problem(client: HardenedClient) -> None:
    with (
        start_status_server(port=0, http_port=None, stats_source=only(client)) as handle,
        connect(handle.url) as ws,
    ):
        recv_json(ws)
        replies = []
        for bad in ("garbage", '{"type": "unknown"}', "[1]"):
            ws.send(bad)
            replies.append(recv_until(ws, lambda m: m["type"] == "error")["error"])
    assert "not JSON" in replies[0]
    assert "'unknown'" in replies[1]
    assert "object" in replies[2]


def test_a_websocket_handshake_that_never_finishes_is_closed_after_the_header_timeout(
    client: HardenedClient,
) -> None:
    with start_status_server(port=0, http_port=None, stats_source=only(client), header_timeout=0.5) as h:
        sock = socket.create_connection(("127.0.0.1", h.port), timeout=5)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # and no more
            assert closed_by_server(sock)
        with connect(h.url) as ws:  # others are served as before
            assert recv_json(ws)["type"] == "snapshot"
