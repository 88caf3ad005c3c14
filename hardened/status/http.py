"""The HTTP side of the status server (aiohttp.web): the live page, ``/health`` and ``/metrics``.

Routes: ``/`` the status page (static HTML and vanilla JS, no CDN), ``/config.json`` what the
page needs to reach the websocket, ``/health`` (JSON; 200 when the overall status is at least
fair, 503 otherwise), ``/metrics`` (Prometheus text, read at scrape time) and ``/snapshot.json``
(the websocket's snapshot, for scripts). With a token every route requires it; without one only
loopback ``Host`` headers are served (no DNS rebinding from a web page).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hardened.status.auth import host_allowed, token_from, token_matches
from hardened.telemetry.health import LEVELS, overall_health
from hardened.telemetry.metrics import metrics_text

if TYPE_CHECKING:
    from hardened.status.server import StatusServer

__all__ = ["HEALTHY_SCORE", "build_app", "start_http"]

HEALTHY_SCORE = next(floor for floor, name in LEVELS if name == "fair")  # /health is 200 from here up
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


def build_app(server: StatusServer) -> web.Application:
    """The aiohttp application serving ``server``'s page, health and metrics."""
    page = _page()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if server.token is not None:
            if not token_matches(token_from(request.path_qs, request.headers), server.token):
                return web.json_response({"error": "missing or wrong token"}, status=401)
        elif not host_allowed(request.headers.get("Host")):
            return web.json_response({"error": "unknown Host header"}, status=421)
        return await handler(request)

    async def index(_request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)

    async def config(_request: web.Request) -> web.Response:
        return web.json_response(
            {"version": 1, "ws_port": server.port, "token_required": server.token is not None},
            headers={"Cache-Control": "no-store"},
        )

    async def health(_request: web.Request) -> web.Response:
        report = overall_health(server.client_stats())
        status = 200 if report["score"] >= HEALTHY_SCORE else 503
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
    runner = web.AppRunner(build_app(server), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
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
