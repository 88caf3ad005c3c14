"""``hardened monitor``: a live terminal dashboard (rich) of a running status server.

Connects to the websocket (``--url``, ``--token``), starts from the snapshot and keeps its view
current from the events and stats that follow: totals, error types with their rates, recent
errors, breakers with latencies, health and recent events, redrawn every ``--interval`` seconds.
``--once`` prints one snapshot and exits; ``--export FILE`` writes the snapshot as JSON (and exits
unless ``--once`` also asks for the printout). Reconnects with back-off when the server goes away.

The lead's CLI calls ``add_arguments(subparser)`` and ``run(args)``, or ``main_argv(argv)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

__all__ = ["DashboardState", "add_arguments", "main_argv", "render", "run"]

DEFAULT_URL = "ws://127.0.0.1:8765"
_STATE_STYLE = {"closed": "green", "open": "bold red", "half_open": "yellow"}
_STATE_MARK = {"closed": "✅", "open": "❌", "half_open": "🟡"}
_LEVEL_STYLE = {
    "excellent": "bold green",
    "good": "green",
    "fair": "yellow",
    "poor": "dark_orange",
    "critical": "bold red",
}


class DashboardState:
    """What the dashboard shows, kept current from snapshot, stats and event messages."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.clients: dict[str, Any] = {}
        self.health: dict[str, Any] = {}
        self.tracker: dict[str, Any] = {}
        self.server: dict[str, Any] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=50)
        self.updated: float | None = None

    def apply(self, message: dict[str, Any]) -> bool:
        """Fold one server message in; returns False for messages it does not know."""
        if not isinstance(message, dict) or message.get("version") != 1:
            return False
        kind = message.get("type")
        if kind in ("snapshot", "stats"):
            self.clients = message.get("clients") or {}
            self.health = message.get("health") or {}
            self.tracker = message.get("tracker") or {}
            self.server = message.get("server") or {}
            if kind == "snapshot":
                self.snapshot = message
                self.events.clear()
                self.events.extend(message.get("events") or [])
        elif kind == "event" and isinstance(message.get("event"), dict):
            event = message["event"]
            self.events.append(event)
            if event.get("kind") == "breaker_transition":
                for name, client in self.clients.items():
                    breaker = (client.get("breakers") or {}).get(event.get("breaker"))
                    if breaker is not None and event.get("client") in (None, name):
                        breaker["state"] = event.get("new")
        else:
            return kind == "pong"
        self.updated = time.time()
        return True

    def export(self) -> dict[str, Any]:
        """The latest snapshot with the current clients, health, tracker and events folded in."""
        base = dict(self.snapshot or {"type": "snapshot", "version": 1})
        base.update(
            clients=self.clients,
            health=self.health,
            tracker=self.tracker,
            server=self.server,
            events=list(self.events),
            exported_at=datetime.now().astimezone().isoformat(),
        )
        return base


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _event_line(event: dict[str, Any]) -> str:
    kind = event.get("kind", "?")
    if kind == "breaker_transition":
        detail = f"{event.get('breaker')}: {event.get('old')} -> {event.get('new')}"
    elif kind == "call_failed":
        count = event.get("count", 1)
        detail = f"{event.get('exchange')} {event.get('endpoint')}: {event.get('error')}"
        detail += f" x{count}" if count and count > 1 else ""
    else:
        detail = " ".join(
            f"{k}={event[k]}" for k in ("client", "exchange", "endpoint", "message", "reason") if event.get(k)
        )
    stamp = datetime.fromtimestamp(event["ts"]).strftime("%H:%M:%S") if event.get("ts") else ""
    return f"{stamp} {kind} {detail}"


def render(state: DashboardState, url: str = "", status: str = "live") -> RenderableType:
    """The dashboard as one rich renderable."""
    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    server = state.server
    header = Text(f"HARDENED MONITOR - {now} - {url} - {status}", style="bold")
    if server:
        header.append(
            f"   viewers {server.get('connections', 0)}, dropped {server.get('dropped', 0)}", style="dim"
        )

    calls = failed = 0
    for client in state.clients.values():
        for data in (client.get("endpoints") or {}).values():
            calls += int(data.get("calls", 0))
            failed += int(data.get("failed", 0))
    health = state.health
    level = str(health.get("status", "?"))
    totals = Table.grid(padding=(0, 3))
    totals.add_row(
        Text(f"Calls: {calls}"),
        Text(f"Failed: {failed}"),
        Text(f"Errors tracked: {state.tracker.get('total_errors', 0)}"),
        Text(f"Rate: {_fmt(state.tracker.get('rate_per_min'), 2)}/min"),
        Text(f"Health: {_fmt(health.get('score'))} {level.upper()}", style=_LEVEL_STYLE.get(level, "")),
    )

    types = Table(title="ERROR TYPES", title_justify="left", expand=True)
    types.add_column("type")
    types.add_column("count", justify="right")
    types.add_column("per min", justify="right")
    for name, data in (state.tracker.get("by_type") or {}).items():
        types.add_row(name, str(data.get("count", 0)), _fmt(data.get("rate_per_min"), 2))
    if not types.rows:
        types.add_row(Text("no errors", style="dim"), "", "")

    recent = Table(title="RECENT ERRORS", title_justify="left", expand=True, show_header=False)
    recent.add_column("error", overflow="fold")
    for entry in list(state.tracker.get("recent") or [])[-5:][::-1]:
        stamp = str(entry.get("time", ""))[11:19]
        message = entry.get("message") or ""
        recent.add_row(f"[{stamp}] {entry.get('error_type')} @ {entry.get('endpoint')}  {message}"[:300])
    if not recent.rows:
        recent.add_row(Text("none", style="dim"))

    breakers = Table(title="CIRCUIT BREAKERS AND ENDPOINTS", title_justify="left", expand=True)
    for col, justify in (
        ("", "left"),
        ("breaker", "left"),
        ("state", "left"),
        ("calls", "right"),
        ("success", "right"),
        ("failed", "right"),
        ("rejected", "right"),
        ("trips", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("retry in", "right"),
    ):
        breakers.add_column(col, justify=justify)  # type: ignore[arg-type]
    idle = 0
    for name in sorted(state.clients):
        client = state.clients[name]
        endpoints = client.get("endpoints") or {}
        for bname, breaker in sorted((client.get("breakers") or {}).items()):
            data = endpoints.get(breaker.get("endpoint"), {})
            bstate = str(breaker.get("state", "?"))
            if not data.get("calls") and bstate == "closed":
                idle += 1
                continue
            ok = data.get("successes", 0)
            total = data.get("calls", 0)
            latency = data.get("latency_ms") or {}
            breakers.add_row(
                _STATE_MARK.get(bstate, "?"),
                bname if len(state.clients) == 1 else f"{name}:{bname}",
                Text(bstate.upper(), style=_STATE_STYLE.get(bstate, "")),
                str(total),
                f"{100.0 * ok / total:.2f}%" if total else "-",
                str(data.get("failed", 0)),
                str(breaker.get("rejected", 0)),
                str(breaker.get("trips", 0)),
                _fmt(latency.get("p50"), 2),
                _fmt(latency.get("p95"), 2),
                _fmt(latency.get("p99"), 2),
                f"{breaker.get('retry_in', 0):.1f}s" if bstate == "open" else "",
            )
    if idle:
        breakers.caption = f"{idle} idle breaker(s) closed and not shown"

    health_lines = [Text(f"{_fmt(health.get('score'))} {level.upper()}", style=_LEVEL_STYLE.get(level, ""))]
    for reason in list(health.get("reasons") or [])[:8]:
        health_lines.append(Text(f"  • {reason}"))
    open_count = sum(
        1
        for client in state.clients.values()
        for b in (client.get("breakers") or {}).values()
        if b.get("state") == "open"
    )
    if open_count:
        health_lines.append(Text(f"  {open_count} circuit breaker(s) OPEN", style="bold red"))

    events = [Text(_event_line(e)[:200]) for e in list(state.events)[-6:][::-1]] or [
        Text("none", style="dim")
    ]
    return Group(
        header,
        totals,
        types,
        recent,
        breakers,
        Panel(Group(*health_lines), title="HEALTH", title_align="left"),
        Panel(Group(*events), title="RECENT EVENTS", title_align="left"),
    )


def _write_json(path: str, data: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open(url: str, token: str | None, timeout: float) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url, additional_headers=headers, open_timeout=timeout, max_size=2**24, compression=None)


def _first_snapshot(ws: ClientConnection, state: DashboardState, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while state.snapshot is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no snapshot from the status server")
        try:
            state.apply(json.loads(ws.recv(timeout=remaining)))
        except ValueError:
            continue


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the monitor's options to ``parser`` (the lead's ``hardened monitor`` subcommand)."""
    parser.add_argument("--url", default=DEFAULT_URL, help=f"status websocket (default {DEFAULT_URL})")
    parser.add_argument("--token", default=os.environ.get("HARDENED_STATUS_TOKEN"), help="status token")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default 2)")
    parser.add_argument(
        "--export", metavar="FILE", help="write the snapshot as JSON and exit (with --once: also print it)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server")
    return parser


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 140)


def run(args: argparse.Namespace) -> int:
    """Run the monitor with parsed ``args``; returns the exit status (0 ok, 1 the export cannot be
    written, 2 a bad option or the server cannot be read)."""
    for flag, value in (("--interval", args.interval), ("--timeout", args.timeout)):
        if not (math.isfinite(value) and value > 0):  # nan and inf too: nan never redraws, or crashes
            print(
                f"hardened monitor: {flag} must be a positive number of seconds, got {value}", file=sys.stderr
            )
            return 2
    if args.once or args.export:
        return _run_once(args)
    return _run_live(args)


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        return "the server refused the token (401)" if code == 401 else f"the server answered HTTP {code}"
    return f"{type(exc).__name__}: {exc}"


def _run_once(args: argparse.Namespace) -> int:
    state = DashboardState()
    try:
        with _open(args.url, args.token, args.timeout) as ws:
            _first_snapshot(ws, state, args.timeout)
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
        print(f"hardened monitor: cannot read {args.url}: {_describe_failure(exc)}", file=sys.stderr)
        return 2
    if args.export:
        try:
            _write_json(args.export, state.export())
        except OSError as exc:  # a directory, a missing or read-only place: one line, not a traceback
            print(f"hardened monitor: cannot write {args.export}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.once:
        _console().print(render(state, args.url))
    if args.export:
        print(f"snapshot written to {args.export}", file=sys.stderr)
    return 0


def _run_live(args: argparse.Namespace) -> int:
    state = DashboardState()
    console = _console()
    backoff = 1.0
    status = "connecting"
    try:
        with Live(render(state, args.url, status), console=console, refresh_per_second=4) as live:
            while True:
                try:
                    with _open(args.url, args.token, args.timeout) as ws:
                        backoff = 1.0
                        status = "live"
                        next_draw = 0.0
                        while True:
                            now = time.monotonic()
                            if now >= next_draw:
                                live.update(render(state, args.url, status))
                                next_draw = now + args.interval
                            try:
                                raw = ws.recv(timeout=max(0.05, next_draw - time.monotonic()))
                            except TimeoutError:
                                continue
                            try:
                                state.apply(json.loads(raw))
                            except ValueError:
                                continue
                except InvalidStatus as exc:
                    if exc.response.status_code == 401:
                        live.stop()
                        print(f"hardened monitor: {_describe_failure(exc)}", file=sys.stderr)
                        return 2
                    status = f"{_describe_failure(exc)}; retrying in {backoff:.0f}s"
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    status = f"disconnected ({type(exc).__name__}); retrying in {backoff:.0f}s"
                live.update(render(state, args.url, status))
                time.sleep(backoff)
                backoff = min(10.0, backoff * 2)
    except KeyboardInterrupt:
        return 0


def main_argv(argv: list[str] | None = None) -> int:
    """``hardened monitor [options]`` as a function: parse ``argv`` and run."""
    parser = add_arguments(
        argparse.ArgumentParser(prog="hardened monitor", description=__doc__.splitlines()[0])
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_argv())
