"""``hardened demo``: the main job. Hardened clients trade against the simulator in changing weather.

It starts the status server (websocket on 8765, /health and /metrics on 8766), then the simulator
with the ``lively`` fault profile (mostly calm, with bursts of latency and 429s, a degraded spell
and a short outage every ~100 s; ``--profile storm`` for heavy weather throughout), wraps ccxt
clients for Binance, KuCoin and Bitvavo, starts the alerts with the log channel (breakers
opening, error rates, bans, health), runs a loop of realistic calls from a few bot threads, and
prints a live summary per endpoint, with the latest alerts, until Ctrl-C or ``--duration`` seconds.

Ctrl-C stops it within about a second: bots still inside a call (a retry back-off, an order
lookup) are not waited for beyond ``STOP_GRACE_S``; they are daemon threads and end with the
process. A port already in use (a demo already running) is one line naming the flag to change,
and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import ccxt
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hardened import alerts as alerting
from hardened.cli import non_negative_float, port_number, positive_float, positive_int
from hardened.client import HardenedClient
from hardened.sim import ProfileError, Simulator, load_profile

__all__ = ["build_parser", "main_argv", "run_demo"]

EXCHANGES = ("binance", "kucoin", "bitvavo")
STOP_GRACE_S = 1.0  # how long Ctrl-C waits, in all, for bots to finish the call they are in
_STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The demo's command-line options."""
    parser = parser or argparse.ArgumentParser(prog="hardened demo", description=__doc__)
    parser.add_argument(
        "--duration", type=non_negative_float, default=0.0, help="seconds to run; 0 runs until Ctrl-C"
    )
    parser.add_argument("--profile", default="lively", help="simulator fault profile (name or file)")
    parser.add_argument("--seed", type=int, default=7, help="seed for prices and faults")
    parser.add_argument("--exchanges", default=",".join(EXCHANGES), help="comma-separated exchange ids")
    parser.add_argument(
        "--status-port", type=port_number, default=8765, help="websocket status port (0: pick one)"
    )
    parser.add_argument(
        "--http-port", type=port_number, default=8766, help="/health, /metrics and the status page"
    )
    parser.add_argument("--no-status", action="store_true", help="do not start the status server")
    parser.add_argument("--no-alerts", action="store_true", help="do not start the alerts (log channel)")
    parser.add_argument(
        "--interval", type=positive_float, default=1.0, help="seconds between summary refreshes"
    )
    parser.add_argument("--bots", type=positive_int, default=2, help="bot threads per exchange")
    return parser


class _Bot:
    """One trading loop: mostly market data, sometimes balance and an order placed then cancelled."""

    def __init__(self, client: HardenedClient, seed: int, stop: threading.Event) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.stop = stop
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        symbols: list[str] = []
        while not self.stop.is_set():
            symbols = symbols or list(self.client.symbols or [])  # none until markets have loaded
            symbol = self.random.choice(symbols) if symbols else None
            try:
                self._step(symbol)
            except ccxt.BaseError as exc:  # what a bot sees after the pipeline did its best
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
            except Exception:
                if self.stop.is_set():  # the demo closed the exchange under a call in flight
                    return
                raise
            self.stop.wait(self.random.uniform(0.02, 0.12))

    def _step(self, symbol: str | None) -> None:
        if symbol is None:
            self.client.load_markets()
            return
        roll = self.random.random()
        if roll < 0.35:
            self.client.fetch_ticker(symbol)
        elif roll < 0.60:
            self.client.fetch_ohlcv(symbol, "1m", limit=100)
        elif roll < 0.80:
            self.client.fetch_order_book(symbol, 20)
        elif roll < 0.90:
            self.client.fetch_trades(symbol, limit=50)
        elif roll < 0.96:
            self.client.fetch_balance()
        else:
            ticker = self.client.fetch_ticker(symbol)
            bid = ticker.get("bid") or ticker.get("last")
            if not bid:
                return
            price = float(self.client.price_to_precision(symbol, bid * 0.9))
            market = self.client.market(symbol)
            amount = (market.get("limits", {}).get("amount", {}) or {}).get("min") or 0.001
            cost_min = (market.get("limits", {}).get("cost", {}) or {}).get("min") or 0
            if cost_min and price * amount < cost_min:
                amount = cost_min * 1.5 / price
            amount = float(self.client.amount_to_precision(symbol, amount))
            order = self.client.create_order(symbol, "limit", "buy", amount, price)
            self.client.cancel_order(order["id"], symbol)


_LEVEL_STYLE = {"INFO": "cyan", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold white on red"}


def _alert_lines(dispatcher: alerting.AlertDispatcher | None) -> list[Text]:
    """The latest alerts and the delivery counters, for the summary."""
    if dispatcher is None:
        return []
    stats = dispatcher.stats()
    sent = sum(c["sent"] for c in stats["channels"].values())
    lines = [
        Text(
            f"alerts  {stats['fired']} fired, {stats['suppressed']} held back by cooldowns and rate limits, "
            f"{stats['summaries']} summaries, {sent} delivered (log channel)",
            style="bold",
        )
    ]
    for alert in dispatcher.recent(5):
        first_line = str(alert["message"]).splitlines()[0][:110]
        lines.append(
            Text(
                f"  {alert['level']:<8} {alert['type']:<20} {first_line}", style=_LEVEL_STYLE[alert["level"]]
            )
        )
    return lines


def _summary(
    clients: dict[str, HardenedClient],
    started: float,
    status_line: str,
    dispatcher: alerting.AlertDispatcher | None = None,
) -> Group:
    table = Table(title=f"hardened demo — {time.monotonic() - started:,.0f}s", expand=False)
    for column in ("endpoint", "calls", "ok", "failed", "retries", "breaker", "skips", "cache", "quality"):
        table.add_column(column, justify="right" if column not in ("endpoint", "breaker") else "left")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    health_parts = []
    for name, client in clients.items():
        stats = client.stats()
        for endpoint, data in sorted(stats["endpoints"].items()):
            if not data["calls"]:
                continue
            state = data["breaker"]["state"]
            latency = data["latency_ms"]
            quality = data["last_quality"]
            table.add_row(
                f"{name}_{endpoint}",
                str(data["calls"]),
                str(data["successes"]),
                str(data["failed"]),
                str(data["retries"]),
                Text(state, style=_STATE_STYLE.get(state, "")),
                str(data["skips"]),
                str(data["cache_hits"]),
                "-" if quality is None else f"{quality:.0f}",
                "-" if latency["p50"] is None else f"{latency['p50']:.1f}",
                "-" if latency["p95"] is None else f"{latency['p95']:.1f}",
            )
        health = client.health()
        health_parts.append(f"{name}: {health['score']:.0f} {health['status']}")
    return Group(
        table,
        Text("health  " + "   ".join(health_parts)),
        *_alert_lines(dispatcher),
        Text(status_line, style="dim"),
    )


class PortInUse(Exception):
    """A port the demo needs is taken; ``str()`` is the one line to print."""


def _port_taken(port: int) -> bool:
    """True when ``port`` cannot be bound on loopback (another process listens there)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _start_status(args: argparse.Namespace) -> tuple[Any, str]:
    """Start the status server unless ``--no-status``; returns (handle, line to print).

    Raises ``PortInUse`` naming the flag to change when a port is taken.
    """
    if args.no_status:
        return None, "status server off (--no-status)"
    from hardened.status import start_status_server

    try:
        handle = start_status_server(port=args.status_port, http_port=args.http_port)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES) and "in use" not in str(exc):
            raise
        if args.http_port and _port_taken(args.http_port) and not _port_taken(args.status_port):
            port, flag, what = args.http_port, "--http-port", "the status page, /health and /metrics"
        else:
            port, flag, what = args.status_port, "--status-port", "the status websocket"
        raise PortInUse(
            f"hardened demo: port {port} ({what}) is in use, perhaps by another demo; "
            f"choose another with {flag} PORT (0 picks a free one) or run with --no-status"
        ) from exc
    return handle, f"status: {handle.url}  health/metrics/page: http://127.0.0.1:{handle.http_port}/"


def run_demo(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run the demo until ``args.duration`` elapses or Ctrl-C; returns the exit code."""
    console = console or Console(width=None if Console().is_terminal else 150)
    exchanges = list(dict.fromkeys(e.strip() for e in args.exchanges.split(",") if e.strip()))  # once each
    unknown = [e for e in exchanges if e not in EXCHANGES]
    if unknown or not exchanges:
        what = f"unknown exchange(s) {', '.join(unknown)}" if unknown else "--exchanges names no exchange"
        console.print(f"[red]{what}; the simulator speaks {', '.join(EXCHANGES)}")
        return 2
    if not args.no_status and args.status_port and args.status_port == args.http_port:
        print(
            f"hardened demo: --status-port and --http-port are both {args.status_port}: the status "
            "websocket and the status page need a port each",
            file=sys.stderr,
        )
        return 2
    try:  # before anything starts: a misspelt profile is one line, not a traceback
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"hardened demo: {exc}", file=sys.stderr)
        return 2
    try:
        status, status_line = _start_status(args)  # first: a busy port fails before anything starts
    except PortInUse as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = threading.Event()
    sim: Simulator | None = None
    dispatcher: alerting.AlertDispatcher | None = None
    own_alerts = False
    threads: list[threading.Thread] = []
    clients: dict[str, HardenedClient] = {}
    bots: list[_Bot] = []
    previous = signal.getsignal(signal.SIGINT)
    in_main = threading.current_thread() is threading.main_thread()
    try:
        sim = Simulator(exchanges=exchanges, profile=profile, seed=args.seed).start()
        for eid in exchanges:
            raw = getattr(ccxt, eid)({"enableRateLimit": False, "timeout": 3000})
            sim.attach(raw)
            clients[eid] = HardenedClient(raw, initial_delay=0.05, max_delay=2.0, recovery_timeout=5.0)
        if not args.no_alerts:
            own_alerts = alerting.current() is None
            # The log channel only: the demo's faults must not page anyone configured in the environment.
            dispatcher = alerting.start_alerts(alert_channels=["log"], health_interval=5.0)
        status_line = f"simulator: {sim.url} profile={args.profile}   {status_line}"
        if in_main:  # from here Ctrl-C asks the loop below to stop, and the summary is printed
            signal.signal(signal.SIGINT, lambda *_: stop.set())
        for eid, client in clients.items():
            if stop.is_set():
                break
            try:
                client.load_markets()
            except ccxt.BaseError as exc:
                console.print(f"[yellow]{eid}: load_markets failed once ({type(exc).__name__}); bots retry")
            for i in range(args.bots):
                bot = _Bot(client, seed=args.seed * 100 + i * 7 + EXCHANGES.index(eid), stop=stop)
                bots.append(bot)
                thread = threading.Thread(target=bot.run, name=f"bot-{eid}-{i}", daemon=True)
                threads.append(thread)
                thread.start()
        started = time.monotonic()
        deadline = started + args.duration if args.duration > 0 else float("inf")
        if console.is_terminal:
            with Live(
                _summary(clients, started, status_line, dispatcher), console=console, auto_refresh=False
            ) as live:
                while _next_refresh(stop, args.interval, deadline):
                    live.update(_summary(clients, started, status_line, dispatcher), refresh=True)
        else:
            while _next_refresh(stop, args.interval, deadline):
                console.print(_summary(clients, started, status_line, dispatcher))
        stop.set()
        # One grace period for all bots, not one per bot: a bot inside a retry back-off or an
        # order lookup may need seconds more, and Ctrl-C must not wait for it.
        grace_ends = time.monotonic() + STOP_GRACE_S
        for thread in threads:
            thread.join(max(0.0, grace_ends - time.monotonic()))
        console.print(_summary(clients, started, status_line, dispatcher))
        truth = sim.ground_truth_counts()
        console.print(
            f"simulator ground truth: {truth['requests']} requests, {truth['faulted']} faulted "
            f"{truth['by_fault']}; bots saw errors: {_bot_errors(bots)}"
        )
        return 0
    finally:
        stop.set()
        if in_main:
            signal.signal(signal.SIGINT, previous)
        if status is not None:
            status.stop()
        if own_alerts:
            alerting.stop_alerts()
        for client in clients.values():
            client.close()
        if sim is not None:
            sim.stop()


def _next_refresh(stop: threading.Event, interval: float, deadline: float) -> bool:
    """Wait for the next summary refresh; False once Ctrl-C or the deadline has come.

    Never waits past ``deadline``: ``--duration 1 --interval 15`` ran for 15 s, not 1.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    return not stop.wait(min(interval, remaining)) and time.monotonic() < deadline


def _bot_errors(bots: list[_Bot]) -> dict[str, int]:
    """What reached the bots after the pipeline did its best, by error class."""
    total: dict[str, int] = {}
    for bot in bots:
        for name, count in bot.errors.items():
            total[name] = total.get(name, 0) + count
    return total


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``hardened demo``."""
    # simulated calls never reach the learning store of the user's real ones (a model trained on
    # them would skip real calls): memory only, unless the environment names a store
    os.environ.setdefault("HARDENED_LEARNING_STORE", ":memory:")
    return run_demo(build_parser().parse_args(argv))
