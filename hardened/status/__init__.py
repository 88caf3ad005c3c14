"""The status stream: a websocket of snapshots, events and stats, with HTTP ``/health`` and ``/metrics``.

    handle = hardened.start_status_server()            # sync bots: a background thread
    asyncio.create_task(hardened.serve_status())       # async bots: a task in your loop

Message schema: ``hardened/status/SCHEMA.md``.
"""

from hardened.status.server import (
    SCHEMA_VERSION,
    StatusServer,
    StatusServerHandle,
    ensure_status_server,
    serve_status,
    start_status_server,
)

__all__ = [
    "SCHEMA_VERSION",
    "StatusServer",
    "StatusServerHandle",
    "ensure_status_server",
    "serve_status",
    "start_status_server",
]
