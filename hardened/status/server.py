"""The status server: a websocket stream of snapshots, events and stats, beside HTTP health/metrics.

One asyncio loop runs everything: the websocket server (``websockets`` asyncio API), the HTTP
server (``aiohttp.web``, see ``hardened.status.http``), a stats ticker and the fan-out. It runs
in a background thread with its own loop for sync bots (``start_status_server``) or as a task
in an async bot's loop (``serve_status`` / ``async with StatusServer(...)``).

Never slowing a call: the event bus publishes from the caller's thread, and this server's
subscriber only appends the event to a bounded inbox and, when no drain is pending, schedules one
with ``loop.call_soon_threadsafe``; it never blocks and never awaits. Serialisation happens once
per message in the server's loop, and the same bytes go to every peer. A peer that keeps up (its
socket buffer under ``write_limit``, nothing queued) gets each message written at once, the
frame built once for all peers (no compression is negotiated, and server frames are unmasked, so
the bytes are the same); a peer that falls behind gets a bounded queue of events (the oldest is
dropped, and counted, when it is full) and a single slot for the latest stats message (a newer
one replaces one not yet sent), drained by its own sender task, so a slow or stuck peer only ever
loses its own messages and never holds up the others. Message schema: ``SCHEMA.md`` beside this
module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from hardened.alerts import delivery_stats
from hardened.status.auth import is_loopback, token_from, token_matches
from hardened.telemetry.events import Event, EventBus, bus
from hardened.telemetry.health import HealthGate, overall_health
from hardened.telemetry.metrics import HardenedCollector, registry_stats
from hardened.telemetry.tracker import ErrorTracker
from hardened.telemetry.tracker import tracker as default_tracker

__all__ = [
    "SCHEMA_VERSION",
    "StatusServer",
    "StatusServerHandle",
    "ensure_status_server",
    "serve_status",
    "start_status_server",
]

_log = structlog.get_logger("hardened.status")

SCHEMA_VERSION = 1
AGGREGATED_KINDS = frozenset({"call_failed", "stale_served", "request_skipped"})
StatsSource = Callable[[], Mapping[str, dict[str, Any]]]


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (browsers' JSON.parse refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(message: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of ``message``; unknown objects as ``str``, non-finite floats as null."""
    try:
        text = json.dumps(message, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(message), separators=(",", ":"), default=str)
    return text.encode("utf-8")


MAX_MESSAGE_NESTING = 8  # peers send flat objects; a bound keeps json's recursion far from the limit


def parse_peer_message(raw: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A peer's message as an object, or ``(None, problem)`` naming what is wrong with it.

    Never raises: binary frames, text that is not JSON, JSON that is not an object and nesting
    deeper than ``MAX_MESSAGE_NESTING`` (``"[" * 4096`` would otherwise exhaust the recursion
    limit of the json parser) are all problems, not exceptions. The size is bounded before this
    by the websocket's ``max_size``.
    """
    if isinstance(raw, bytes):
        return None, "binary frames are not understood; send JSON text"
    # Each nesting level opens a bracket, so fewer brackets than the bound means a shallow message;
    # counting is a C-speed scan, and only a message with many brackets is walked in Python.
    if raw.count("[") + raw.count("{") > MAX_MESSAGE_NESTING and _nesting(raw) > MAX_MESSAGE_NESTING:
        return None, f"message nested deeper than {MAX_MESSAGE_NESTING} levels"
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "message is not JSON"
    if not isinstance(message, dict):
        return None, f"message must be a JSON object with a 'type', got {type(message).__name__}"
    return message, None


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON ``text``, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _text_frame(message: bytes) -> bytes:
    """The wire bytes of one unmasked, unfragmented text frame (what a server sends)."""
    return Frame(Opcode.TEXT, message).serialize(mask=False, extensions=[])


class _Peer:
    """One connected websocket client: its bounded event queue, its stats slot and its counters."""

    __slots__ = (
        "dropped",
        "events",
        "last_snapshot",
        "limit",
        "sender",
        "sent",
        "stats",
        "wakeup",
        "ws",
    )

    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.limit = limit
        self.events: deque[bytes] = deque()
        self.stats: bytes | None = None
        self.wakeup = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.last_snapshot = 0.0
        self.sender: asyncio.Task[None] | None = None

    def writable(self, limit: int) -> bool:
        """True when nothing is queued for this peer and its socket buffer is under ``limit`` bytes:
        a new message may then be written at once, in order, without a task switch."""
        if self.events or self.stats is not None:
            return False
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() < limit

    def offer(self, message: bytes) -> bool:
        """Queue ``message``; when full, drop the oldest queued one. Returns False if one was dropped."""
        dropped = False
        if len(self.events) >= self.limit:
            self.events.popleft()
            self.dropped += 1
            dropped = True
        self.events.append(message)
        self.wakeup.set()
        return not dropped

    def offer_stats(self, message: bytes) -> bool:
        """Put the latest stats in the slot; a previous one not yet sent is superseded (counted)."""
        superseded = self.stats is not None
        if superseded:
            self.dropped += 1
        self.stats = message
        self.wakeup.set()
        return not superseded


class StatusServer:
    """The status stream and its HTTP side, run in the current event loop.

    Args:
        host: interface to bind; anything but loopback requires ``token``.
        port: websocket port (0 picks a free one).
        http_port: HTTP port for ``/``, ``/health`` and ``/metrics`` (0 picks one, None disables).
        token: shared secret required from every websocket and HTTP client when set.
        interval: seconds between ``stats`` messages.
        queue_size: events queued per peer before the oldest is dropped.
        max_message_size: largest message a peer may send, in bytes (larger ones close it, 1009).
        max_connections: websocket peers served at once; more are refused with HTTP 503.
        header_timeout: seconds a connection (HTTP, or a websocket handshake) has to send its
            first request's headers.
        idle_timeout: seconds an idle keep-alive HTTP connection is kept open.
        max_http_connections: HTTP connections open at once (see ``hardened.status.http``).
        recent_events: events kept for the snapshot of a newly connected peer.
        aggregate_s: window in which repeated ``call_failed``/``stale_served`` events are merged.
        inbox_size: events waiting for the loop before new ones are dropped (counted).
        write_limit: bytes buffered for a peer's socket beyond which it counts as slow.
        allowed_origins: browser origins accepted besides the page's own loopback origins.
        event_bus, stats_source, tracker: what to read (the process-wide ones by default).
        health_gate: decides ``/health``'s 200/503 from the smoothed score (a fresh one by default).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        http_port: int | None = 8766,
        token: str | None = None,
        *,
        interval: float = 1.0,
        queue_size: int = 100,
        max_message_size: int = 4096,
        max_connections: int = 1024,
        header_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        max_http_connections: int = 256,
        recent_events: int = 100,
        aggregate_s: float = 1.0,
        inbox_size: int = 10_000,
        write_limit: int = 64 * 1024,
        allowed_origins: Iterable[str] = (),
        event_bus: EventBus | None = None,
        stats_source: StatsSource | None = None,
        tracker: ErrorTracker | None = None,
        health_gate: HealthGate | None = None,
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string (or None on loopback)")
        if not is_loopback(host) and token is None:
            raise ValueError(
                f"refusing to serve the status stream on {host!r} without a token: "
                "pass token=... (clients send ?token= or 'Authorization: Bearer'), or bind 127.0.0.1"
            )
        for name, value in (("port", port), ("http_port", http_port)):
            if value is not None and not 0 <= value <= 65_535:
                raise ValueError(f"{name} must be 0-65535 (0 picks a free port), got {value}")
        if interval <= 0 or queue_size < 1 or max_message_size < 64 or max_connections < 1:
            raise ValueError(
                "interval must be > 0, queue_size >= 1, max_message_size >= 64 and max_connections >= 1"
            )
        if header_timeout <= 0 or idle_timeout <= 0 or max_http_connections < 1:
            raise ValueError(
                f"header_timeout and idle_timeout must be > 0 and max_http_connections >= 1, got "
                f"{header_timeout}, {idle_timeout} and {max_http_connections}"
            )
        self.host = host
        self.port = port
        self.http_port = http_port
        self.token = token
        self.interval = interval
        self.queue_size = queue_size
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_http_connections = max_http_connections
        self.aggregate_s = aggregate_s
        self.inbox_size = inbox_size
        self.write_limit = write_limit
        self._batch = max(1, min(256, queue_size // 2))
        self.allowed_origins = tuple(allowed_origins)
        self._bus = event_bus or bus
        self._stats_source = stats_source or registry_stats
        self._tracker = tracker or default_tracker
        self.health_gate = health_gate or HealthGate()
        self._recent: deque[Event] = deque(maxlen=recent_events)
        self._alerts: deque[Event] = deque(maxlen=50)
        self._inbox: deque[Event] = deque()
        self._wake_pending = False
        self._closed = True
        self._peers: set[_Peer] = set()
        self._pending_failures: dict[tuple[Any, ...], list[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_server: Server | None = None
        self._http_runner: Any = None
        self._stopped: asyncio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._started_at = 0.0
        self._seq = 0
        self.counters = {
            "events": 0,  # bus events received
            "inbox_dropped": 0,  # events refused because the loop was behind
            "dropped": 0,  # messages dropped for slow peers (queue full or stats superseded)
            "sent": 0,  # messages written to peers
            "malformed": 0,  # peer messages ignored
            "connections_total": 0,
            "refused": 0,  # handshakes refused (token, origin, too many peers)
            "http_header_timeouts": 0,  # HTTP connections closed for not sending headers in time
            "http_evicted": 0,  # HTTP connections still waiting for headers, closed at the cap
            "http_refused": 0,  # HTTP connections refused at the cap (503)
        }
        self.collector = HardenedCollector(self._stats_source, self._tracker, extra=self._server_metrics)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> StatusServer:
        """Bind both servers, subscribe to the bus and start the tickers; returns ``self``."""
        from hardened.status.http import start_http

        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._started_at = time.time()
        try:
            if self.http_port is not None:
                self._http_runner, self.http_port = await start_http(self, self.host, self.http_port)
            self._ws_server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._check_handshake,
                origins=self._origins(),
                max_size=self.max_message_size,
                compression=None,  # per-peer compression would compress every message once per peer
                ping_interval=20,
                ping_timeout=20,
                close_timeout=1,  # stopping (Ctrl-C) must not wait 10 s for a peer that does not answer
                open_timeout=self.header_timeout,  # a handshake that never finishes is closed, as on HTTP
                write_limit=self.write_limit,
                server_header=None,
            )
        except BaseException:
            await self._close_servers()
            raise
        self.port = self._ws_server.sockets[0].getsockname()[1]
        self._closed = False
        self._unsubscribe = self._bus.subscribe(self._on_bus_event)
        self._tasks = [
            asyncio.create_task(self._stats_ticker(), name="hardened-status-stats"),
            asyncio.create_task(self._flush_ticker(), name="hardened-status-flush"),
        ]
        return self

    async def stop(self) -> None:
        """Unsubscribe, close every peer and both servers; safe to call twice."""
        if self._closed:
            if self._stopped is not None:
                self._stopped.set()
            return
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_servers()
        if self._stopped is not None:
            self._stopped.set()

    async def _close_servers(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None

    async def wait_stopped(self) -> None:
        """Return once ``stop()`` has finished."""
        if self._stopped is None:
            raise RuntimeError("the status server was not started")
        await self._stopped.wait()

    async def __aenter__(self) -> StatusServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The websocket URL (``ws://127.0.0.1:8765``)."""
        return f"ws://{_url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """The HTTP base URL, or None when HTTP is off."""
        return None if self.http_port is None else f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def connections(self) -> int:
        """Websocket peers connected now."""
        return len(self._peers)

    # --- handshake ----------------------------------------------------------------------------

    def _origins(self) -> list[str | None] | None:
        """Browser origins accepted: the page's loopback origins when there is no token."""
        if self.token is not None and not self.allowed_origins:
            return None  # the token is the guard; browsers elsewhere may use the page
        origins: list[str | None] = [None, *self.allowed_origins]
        if self.http_port is not None:
            for name in ("127.0.0.1", "localhost", "[::1]"):
                origins.append(f"http://{name}:{self.http_port}")
            if not is_loopback(self.host):
                origins.append(f"http://{_url_host(self.host)}:{self.http_port}")
        return origins

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.token is not None and not token_matches(
            token_from(request.path, request.headers), self.token
        ):
            self.counters["refused"] += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        if len(self._peers) >= self.max_connections:
            self.counters["refused"] += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many status connections\n")
        return None

    # --- peers ----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        peer = _Peer(ws, self.queue_size)
        snapshot = self.snapshot_bytes()  # built and queued with no await between: it comes first
        self._peers.add(peer)
        self.counters["connections_total"] += 1
        peer.offer(snapshot)
        peer.last_snapshot = time.monotonic()
        peer.sender = asyncio.create_task(self._send_loop(peer))
        try:
            with contextlib.suppress(ConnectionClosed):  # a peer leaving is not an error
                async for raw in ws:
                    self._on_peer_message(peer, raw)
        finally:
            self._peers.discard(peer)
            peer.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await peer.sender

    async def _send_loop(self, peer: _Peer) -> None:
        ws = peer.ws
        while True:
            if peer.stats is None and not peer.events:
                peer.wakeup.clear()
                await peer.wakeup.wait()
                continue
            if peer.events:
                message = peer.events.popleft()
            else:
                message, peer.stats = peer.stats, None
            try:
                await ws.send(message, text=True)
            except ConnectionClosed:
                return
            peer.sent += 1
            self.counters["sent"] += 1

    def _refuse_message(self, peer: _Peer, problem: str) -> None:
        """Count a message that cannot be served and tell the peer what is wrong with it."""
        self.counters["malformed"] += 1
        peer.offer(dumps({"type": "error", "version": SCHEMA_VERSION, "error": problem}))

    def _on_peer_message(self, peer: _Peer, raw: str | bytes) -> None:
        """Answer ``ping`` and ``snapshot`` requests; anything else gets an ``error`` reply."""
        message, problem = parse_peer_message(raw)
        if problem is not None:
            self._refuse_message(peer, problem)
            return
        assert message is not None
        kind = message.get("type")
        if kind == "ping":
            reply: dict[str, Any] = {"type": "pong", "version": SCHEMA_VERSION, "ts": time.time()}
            if "id" in message and isinstance(message["id"], str | int | float):
                reply["id"] = message["id"]
            peer.offer(dumps(reply))
        elif kind == "snapshot":
            now = time.monotonic()
            if now - peer.last_snapshot < 0.5:  # a peer asking in a loop must not cost the bot CPU
                self.counters["malformed"] += 1
                return
            peer.last_snapshot = now
            peer.offer(self.snapshot_bytes())
        else:
            self._refuse_message(peer, f"unknown message type {str(kind)[:40]!r}; known: 'ping', 'snapshot'")

    # --- events -----------------------------------------------------------------------------------

    def _on_bus_event(self, event: Event) -> None:
        """Bus subscriber, called in the producer's thread: a bounded, non-blocking hand-off."""
        if self._closed:
            return
        if len(self._inbox) >= self.inbox_size:
            self.counters["inbox_dropped"] += 1
            return
        self._inbox.append(event)
        if not self._wake_pending:
            self._wake_pending = True
            loop = self._loop
            if loop is None:
                return
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closing
                self._wake_pending = False

    def _drain(self) -> None:
        """Move inbox events to the peers, in batches so the loop stays responsive."""
        self._wake_pending = False
        inbox = self._inbox
        messages: list[bytes] = []
        # Small batches: between two of them the peers' sender tasks run and empty their queues,
        # so a burst does not overflow the queue of a peer that keeps up.
        for _ in range(self._batch):
            if not inbox:
                break
            message = self._dispatch(inbox.popleft())
            if message is not None:
                messages.append(message)
        if messages:
            self._fan_out(messages)
        if inbox and not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            self._loop.call_soon(self._drain)

    def _dispatch(self, event: Event) -> bytes | None:
        """Record one bus event; returns its message, or None when held back for aggregation."""
        self.counters["events"] += 1
        kind = event.get("kind")
        if kind in AGGREGATED_KINDS:
            key = (
                kind,
                event.get("client"),
                event.get("exchange"),
                event.get("endpoint"),
                event.get("error"),
            )
            # An event may stand for several occurrences already (``request_skipped`` carries the
            # calls skipped since the last one): its own count is kept and summed, not reset to 1.
            own = event.get("count")
            weight = own if isinstance(own, int) and not isinstance(own, bool) and own > 0 else 1
            pending = self._pending_failures.get(key)
            if pending is not None:  # already forwarded one in this window: count, send at the flush
                pending[0] += weight
                pending[1] = event
                return None
            self._pending_failures[key] = [0, None, event.get("ts")]
            event = {**event, "count": weight}
        return self._record(event)

    def _record(self, event: Event) -> bytes:
        event = dict(event)
        self._recent.append(event)
        if event.get("kind") == "alert":
            self._alerts.append(event)
        return dumps({"type": "event", "version": SCHEMA_VERSION, "event": event})

    def publish_event(self, event: Event) -> None:
        """Send ``event`` to every peer and keep it for the next snapshots (loop thread only)."""
        self._fan_out([self._record(event)])

    def _fan_out(self, messages: list[bytes]) -> None:
        """Hand ``messages`` to every peer: written at once to those that keep up, queued for others.

        A server's frames are not masked, so a message's frame is the same bytes for every peer:
        it is built once, and a peer that keeps up gets the whole batch in one socket write.
        """
        frames: bytes | None = None
        written = dropped = 0
        for peer in self._peers:
            ws = peer.ws
            if ws.state is State.OPEN and peer.writable(self.write_limit):
                if frames is None:
                    frames = b"".join(_text_frame(m) for m in messages)
                ws.transport.write(frames)
                peer.sent += len(messages)
                written += len(messages)
            else:
                for message in messages:
                    if not peer.offer(message):
                        dropped += 1
        self.counters["sent"] += written
        self.counters["dropped"] += dropped

    async def _flush_ticker(self) -> None:
        while True:
            await asyncio.sleep(self.aggregate_s)
            self.flush_aggregates()

    def flush_aggregates(self) -> None:
        """Send one merged event per key for the repeats held back in this window."""
        pending, self._pending_failures = self._pending_failures, {}
        for count, last, first_ts in pending.values():
            if count and last is not None:
                self.publish_event({**last, "count": count, "aggregated": True, "first_ts": first_ts})

    # --- snapshots and stats ---------------------------------------------------------------------

    def client_stats(self) -> Mapping[str, dict[str, Any]]:
        """``stats()`` of every client this server reports on, by name."""
        return self._stats_source()

    def state(self, recent_errors: int = 10) -> dict[str, Any]:
        """Clients (endpoints, breakers, health), overall health, tracker and server counters."""
        all_stats = self.client_stats()
        health = self.health_gate.report(overall_health(all_stats))
        clients: dict[str, Any] = {}
        for name, stats in all_stats.items():
            endpoints: dict[str, Any] = {}
            breakers: dict[str, Any] = {}
            for endpoint, data in stats.get("endpoints", {}).items():
                data = dict(data)
                breaker = data.pop("breaker", None)
                endpoints[endpoint] = data
                if breaker:
                    breakers[breaker.get("name", f"{stats.get('exchange')}_{endpoint}")] = {
                        **breaker,
                        "endpoint": endpoint,
                    }
            clients[name] = {
                "exchange": stats.get("exchange"),
                "endpoints": endpoints,
                "breakers": breakers,
                "health": health["clients"].get(name),
                "retry_budget": stats.get("retry_budget"),
            }
        return {
            "ts": time.time(),
            "server": self.server_info(),
            "health": {k: v for k, v in health.items() if k != "clients"},
            "clients": clients,
            "tracker": self._tracker.summary(recent=recent_errors),
            "alert_delivery": delivery_stats(),
        }

    def server_info(self) -> dict[str, Any]:
        """Connections, counters and uptime of this server."""
        return {
            "connections": len(self._peers),
            "uptime_s": round(time.time() - self._started_at, 1) if self._started_at else 0.0,
            "interval_s": self.interval,
            "queue_size": self.queue_size,
            **self.counters,
        }

    def snapshot(self) -> dict[str, Any]:
        """The ``snapshot`` message a peer receives on connect."""
        body = self.state(recent_errors=20)
        return {
            "type": "snapshot",
            "version": SCHEMA_VERSION,
            **body,
            "events": list(self._recent),
            "alerts": list(self._alerts),
        }

    def snapshot_bytes(self) -> bytes:
        """``snapshot()`` serialised."""
        return dumps(self.snapshot())

    def stats_message(self) -> dict[str, Any]:
        """The ``stats`` message sent every ``interval`` (without the per-peer ``you`` part)."""
        self._seq += 1
        return {"type": "stats", "version": SCHEMA_VERSION, "seq": self._seq, **self.state(recent_errors=5)}

    def broadcast_stats(self) -> None:
        """Send a ``stats`` message to every peer now: the body is serialised once."""
        if not self._peers:
            return
        body = dumps(self.stats_message())
        for peer in list(self._peers):
            message = b'{"you":{"dropped":%d,"sent":%d},' % (peer.dropped, peer.sent) + body[1:]
            if peer.ws.state is State.OPEN and peer.writable(self.write_limit):
                peer.ws.transport.write(_text_frame(message))
                peer.sent += 1
                self.counters["sent"] += 1
            elif not peer.offer_stats(message):
                self.counters["dropped"] += 1

    async def _stats_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                self.broadcast_stats()
            except Exception:  # a client torn down mid-reading: skip this tick, not the ticker
                continue
            if loop.time() > next_at + self.interval:
                next_at = loop.time()  # fell behind (a suspended laptop): do not burst

    def _server_metrics(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "hardened_status_connections", "Websocket peers connected.", value=len(self._peers)
        )
        for key, doc in (
            ("events", "Bus events received by the status server."),
            ("dropped", "Status messages dropped for slow peers."),
            ("inbox_dropped", "Bus events dropped because the status loop was behind."),
            ("sent", "Status messages written to peers."),
        ):
            yield CounterMetricFamily(f"hardened_status_{key}", doc, value=self.counters[key])
        delivery = delivery_stats()
        if delivery.get("running"):
            alerts = CounterMetricFamily(
                "hardened_alerts", "Alerts per channel and outcome.", labels=["channel", "outcome"]
            )
            for name, counts in delivery["channels"].items():
                for outcome in ("sent", "failed", "dropped", "suppressed"):
                    alerts.add_metric([name, outcome], counts[outcome])
            yield alerts


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class StatusServerHandle:
    """A status server running in its own thread: ``.port``, ``.http_port``, ``.url``, ``.stop()``."""

    def __init__(self, server: StatusServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread):
        self.server = server
        self._loop = loop
        self._thread = thread

    @property
    def port(self) -> int:
        """The websocket port actually bound."""
        return self.server.port

    @property
    def http_port(self) -> int | None:
        """The HTTP port actually bound (None when HTTP is off)."""
        return self.server.http_port

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return self.server.url

    @property
    def http_url(self) -> str | None:
        """``http://host:http_port``."""
        return self.server.http_url

    @property
    def running(self) -> bool:
        """True until ``stop()``."""
        return self._thread.is_alive()

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn()`` in the server's loop and return its result (for tests and tools)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for its thread."""
        if self._thread.is_alive() and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout)
        self._thread.join(timeout)

    def __enter__(self) -> StatusServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<StatusServerHandle {self.url} http={self.http_url} running={self.running}>"


def start_status_server(
    host: str = "127.0.0.1",
    port: int = 8765,
    http_port: int | None = 8766,
    token: str | None = None,
    *,
    start_timeout: float = 10.0,
    **options: Any,
) -> StatusServerHandle:
    """Start the status server in a background thread with its own loop (for sync bots).

    Options are those of ``StatusServer``. Raises at once when the ports cannot be bound or a
    non-loopback ``host`` comes without a token.
    """
    server = StatusServer(host, port, http_port, token, **options)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_until_complete(server.wait_stopped())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=f"hardened-status-{port}", daemon=True)
    thread.start()
    if not ready.wait(start_timeout):
        raise TimeoutError(f"status server did not start within {start_timeout} s")
    if failure:
        thread.join(1.0)
        raise failure[0]
    return StatusServerHandle(server, loop, thread)


async def serve_status(
    host: str = "127.0.0.1",
    port: int = 8765,
    http_port: int | None = 8766,
    token: str | None = None,
    *,
    ready: Callable[[StatusServer], Awaitable[None] | None] | None = None,
    **options: Any,
) -> None:
    """Run the status server in the current loop until cancelled (for async bots).

    ``asyncio.create_task(serve_status(port=8765))``; ``ready(server)`` is called once bound.
    """
    server = StatusServer(host, port, http_port, token, **options)
    await server.start()
    try:
        if ready is not None:
            result = ready(server)
            if asyncio.iscoroutine(result):
                await result
        await server.wait_stopped()
    finally:
        await server.stop()


_shared_lock = threading.Lock()
_shared: dict[int, StatusServerHandle] = {}


def ensure_status_server(
    port: int, http_port: int | None = None, **options: Any
) -> StatusServerHandle | None:
    """The process's status server on ``port``, started once (what ``status_port=`` uses).

    ``http_port`` defaults to ``port + 1``. Later calls with the same port return the same handle.
    The status server is an optional view of the bot, so a port that cannot be bound (another
    process holds it, or it is not permitted) does not stop the bot: a ``status_server_unavailable``
    warning says which ports and why, and None is returned (a later call tries again).
    """
    with _shared_lock:
        handle = _shared.get(port)
        if handle is not None and handle.running:
            return handle
        if http_port is None and port:
            http_port = port + 1 if port < 65_535 else None
        try:
            handle = start_status_server(port=port, http_port=http_port, **options)
        except (OSError, TimeoutError) as exc:
            _log.warning(
                "status_server_unavailable",
                port=port,
                http_port=http_port,
                error=f"{type(exc).__name__}: {exc}",
                hint="the bot runs without the status server; free the port or choose another status_port",
            )
            return None
        _shared[port] = handle
        return handle
