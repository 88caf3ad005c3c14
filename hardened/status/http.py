"""The HTTP side of the status server (aiohttp.web): the live page, ``/health`` and ``/metrics``.

Routes: ``/`` the status page (static HTML and vanilla JS, no CDN), ``/config.json`` what the
page needs to reach the websocket, ``/health`` (JSON; 200 or 503 as the server's ``HealthGate``
decides: a smoothed score with hysteresis, see ``hardened.telemetry.health``), ``/metrics``
(Prometheus text, read at scrape time) and ``/snapshot.json`` (the websocket's snapshot, for
scripts). With a token every route requires it; without one only loopback ``Host`` headers are
served (no DNS rebinding from a web page).

Bounds, so that a client holding connections open cannot starve the process (a slowloris once held
19,900 of them): a connection must finish its first request's headers within ``header_timeout``
seconds; a keep-alive connection idle for ``idle_timeout`` seconds is closed (aiohttp's
``keepalive_timeout``); at most ``max_http_connections`` are open at once. At the cap the oldest
connection still waiting for its headers is closed to make room, so ``/health`` keeps answering a
load balancer during such an attack; when every open connection has been served (none is merely
waiting), the newcomer gets ``503`` and is closed. Only an accepted request counts as served: one
refused for its token or ``Host`` header is answered and its connection closed, so a client
without the token cannot hold connection slots.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hardened.status.auth import host_allowed, token_from, token_matches
from hardened.telemetry.health import overall_health
from hardened.telemetry.metrics import metrics_text

if TYPE_CHECKING:
    from hardened.status.server import StatusServer

__all__ = ["ConnectionBounds", "build_app", "start_http"]
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Inline script and style only; the websocket may go to any host (the page says where).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
}


def _page() -> bytes:
    return resources.files("hardened.status").joinpath("static/index.html").read_bytes()


_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 29\r\n"
    b"Connection: close\r\n\r\ntoo many status connections\r\n"
)


class ConnectionBounds:
    """The header deadline and the connection cap of the HTTP side (see the module docstring).

    Hand-written because aiohttp closes idle keep-alive connections but has neither a deadline for
    a request's headers nor a cap on connections. Runs in the server's loop only (no lock).
    """

    __slots__ = ("_loop", "_open", "_waiting", "counters", "header_timeout", "max_connections")

    def __init__(self, header_timeout: float, max_connections: int, counters: dict[str, int]) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.counters = counters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: dict[Any, _Tracked] = {}  # request handler -> its connection, oldest first
        self._waiting: dict[Any, asyncio.TimerHandle] = {}  # not yet a whole request, oldest first

    def protocol(self, factory: Any) -> asyncio.Protocol:
        """A new connection's protocol: aiohttp's request handler, watched by these bounds."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return _Tracked(factory(), self)

    def opened(self, conn: _Tracked) -> bool:
        """Admit a connection (evicting the oldest waiting one at the cap); False refuses it."""
        while len(self._open) >= self.max_connections and self._waiting:
            self._expire(next(iter(self._waiting)), "http_evicted")
        if len(self._open) >= self.max_connections:
            self.counters["http_refused"] += 1
            return False
        assert self._loop is not None
        self._open[conn.handler] = conn
        self._waiting[conn.handler] = self._loop.call_later(
            self.header_timeout, self._expire, conn.handler, "http_header_timeouts"
        )
        return True

    def served(self, handler: Any) -> None:
        """The connection of ``handler`` sent a whole request: no header deadline any more."""
        timer = self._waiting.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def closed(self, conn: _Tracked) -> None:
        """Forget a connection that closed."""
        self._open.pop(conn.handler, None)
        self.served(conn.handler)

    def _expire(self, handler: Any, counter: str) -> None:
        if self._waiting.pop(handler, None) is None:
            return
        conn = self._open.pop(handler, None)
        self.counters[counter] += 1
        if conn is not None:
            conn.abort()

    def close_all(self) -> None:
        """Cancel every deadline (the server is stopping; aiohttp closes the connections)."""
        for timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()


class _Tracked(asyncio.Protocol):
    """One connection: aiohttp's request handler behind it, its opening and closing reported to
    the bounds (a thin pass-through: the handler's slots leave no other place to hook)."""

    __slots__ = ("bounds", "handler", "refused", "transport")

    def __init__(self, handler: Any, bounds: ConnectionBounds) -> None:
        self.handler = handler
        self.bounds = bounds
        self.refused = False
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.bounds.opened(self):
            self.refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_REFUSAL)
            transport.close()
            return
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.handler.eof_received()

    def pause_writing(self) -> None:
        if not self.refused:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.bounds.closed(self)
        self.handler.connection_lost(exc)

    def abort(self) -> None:
        """Close at once (a missed header deadline, or evicted at the cap)."""
        if self.transport is not None:
            self.transport.abort()


class _BoundedSite(web.BaseSite):
    """A TCP site whose connections go through ``ConnectionBounds``."""

    __slots__ = ("_bounds", "_host", "_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int, bounds: ConnectionBounds) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._bounds = bounds

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        factory = self._runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._bounds.protocol(factory), self._host, self._port, backlog=self._backlog
        )

    async def stop(self) -> None:
        self._bounds.close_all()
        await super().stop()


def build_app(server: StatusServer, bounds: ConnectionBounds | None = None) -> web.Application:
    """The aiohttp application serving ``server``'s page, health and metrics."""
    page = _page()

    def refuse(error: str, status: int) -> web.Response:
        # Closed after the answer, and never marked served: a client without the token must not
        # keep a connection slot (kept alive and re-used, it would count as served and could never
        # be evicted, so a few of them would get every operator and load balancer a 503).
        response = web.json_response({"error": error}, status=status)
        response.force_close()
        return response

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if server.token is not None:
            if not token_matches(token_from(request.path_qs, request.headers), server.token):
                return refuse("missing or wrong token", 401)
        elif not host_allowed(request.headers.get("Host")):
            return refuse("unknown Host header", 421)
        if bounds is not None:
            bounds.served(request.protocol)
        return await handler(request)

    async def index(_request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)

    async def config(_request: web.Request) -> web.Response:
        return web.json_response(
            {"version": 1, "ws_port": server.port, "token_required": server.token is not None},
            headers={"Cache-Control": "no-store"},
        )

    async def health(_request: web.Request) -> web.Response:
        report = server.health_gate.report(overall_health(server.client_stats()))
        status = 200 if report["healthy"] else 503
        return web.json_response(report, status=status, headers={"Cache-Control": "no-store"})

    async def metrics(_request: web.Request) -> web.Response:
        body = metrics_text(server.collector)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def snapshot(_request: web.Request) -> web.Response:
        return web.Response(
            body=server.snapshot_bytes(),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    app = web.Application(middlewares=[guard], client_max_size=server.max_message_size)
    app.router.add_get("/", index)
    app.router.add_get("/config.json", config)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/snapshot.json", snapshot)
    return app


async def start_http(server: StatusServer, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind the HTTP server; returns the runner (for cleanup) and the port actually bound."""
    bounds = ConnectionBounds(server.header_timeout, server.max_http_connections, server.counters)
    runner = web.AppRunner(
        build_app(server, bounds),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=server.idle_timeout,
    )
    await runner.setup()
    site = _BoundedSite(runner, host, port, bounds)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound
