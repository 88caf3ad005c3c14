"""Status stream under load: 500 websocket peers, fan-out rate and latency, and the cost to a bot.

Run: ``.venv/bin/python benchmarks/bench_status.py [--peers 500] [--rate 50] [--seconds 4]``.

1. ``tracker.record`` cost, in microseconds.
2. Median latency of a patched fast ``fetch_ticker`` through a ``HardenedClient`` without a
   status server (measured before and after, averaged: other processes on the machine drift).
3. The server started in its background thread and ``--peers`` websocket peers connected from a
   separate process (their CPU is not the bot's); the median again with stats going to every peer
   every second, then while events fan out; printed as ratios to (2).
4. Fan-out, twice: events published on the bus at ``--rate`` per second for ``--seconds``, first
   while the bot thread is idle (waiting on I/O, as a bot mostly is), then while it calls without
   pause (the worst case: the server thread has to win the GIL back after every socket write).
   Printed: messages delivered per second over all peers, the server-side latency (publish to
   written on all sockets) and the end-to-end latency (publish to read by a peer), p50 and p99.
5. Process memory (RSS) before the server, with the peers connected, and after the fan-out.

A plain script: exits 0, finishes in about 25 s on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import ccxt
import psutil

from hardened import HardenedClient
from hardened.status import StatusServerHandle, start_status_server
from hardened.telemetry.events import bus
from hardened.telemetry.tracker import ErrorTracker

PHASES = ("idle", "busy")


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (peers need one descriptor each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the peers' process ---------------------------------------------------------------------------


def peers_main(url: str, n: int, conn: Connection) -> None:
    """Connect ``n`` peers, report ready, then measure ``bench`` events per phase."""
    raise_fd_limit(n * 2 + 256)
    asyncio.run(_peers(url, n, conn))


class Tally:
    """What the peers saw, per phase: event messages, sampled latencies, end markers, stats."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(PHASES, 0)
        self.latencies: dict[str, list[float]] = {p: [] for p in PHASES}
        self.ended = dict.fromkeys(PHASES, 0)
        self.stats = 0
        self.peers = 0
        self.done = {p: asyncio.Event() for p in PHASES}

    def message(self, payload: bytes, now: float) -> None:
        if payload.startswith(b'{"type":"event"'):
            phase = "idle" if b'"phase":"idle"' in payload else "busy"
            if b'"kind":"bench"' in payload:  # the hot case, without a full parse
                self.counts[phase] += 1
                if self.counts[phase] % 7 == 0:  # a sample is plenty
                    self.latencies[phase].append(now - json.loads(payload)["event"]["ts"])
            elif b'"kind":"bench_end"' in payload:
                self.ended[phase] += 1
                if self.ended[phase] == self.peers:
                    self.done[phase].set()
        elif payload.startswith(b'{"you"'):
            self.stats += 1


class Peer(asyncio.Protocol):
    """A websocket client reduced to what a dashboard does: handshake, read frames, answer pings.

    Written against the wire format (RFC 6455) so that the peers' own CPU is small and the
    latency measured is the server's, not a client library's.
    """

    def __init__(self, host: str, port: int, tally: Tally, opened: asyncio.Future[None]) -> None:
        self.host, self.port, self.tally, self.opened = host, port, tally, opened
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        pos = 0
        while len(buf) - pos >= 2:
            opcode, length, head = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 1:
                self.tally.message(payload, now)
            elif opcode == 9 and self.transport is not None:  # ping: a masked pong with the same data
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
        del buf[:pos]


async def _peers(url: str, n: int, conn: Connection) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    tally = Tally()
    transports = []
    for start in range(0, n, 50):  # in batches: the listen backlog is finite
        batch = []
        for _ in range(start, min(n, start + 50)):
            opened: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda o=opened: Peer(host, port, tally, o), host, port
            )
            transports.append(transport)
            batch.append(opened)
        await asyncio.wait_for(asyncio.gather(*batch), 30)
    tally.peers = len(transports)
    conn.send({"ready": len(transports)})
    for phase in PHASES:
        cpu0 = time.process_time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done[phase].wait(), 120)
        conn.send(
            {
                "events": tally.counts[phase],
                "latencies": tally.latencies[phase],
                "ended": tally.ended[phase],
                "stats": tally.stats,
                "cpu_s": time.process_time() - cpu0,
            }
        )
    for transport in transports:
        transport.close()


# --- the bot's side -------------------------------------------------------------------------------


def call_latencies(client: HardenedClient, n: int) -> list[float]:
    """Per-call latency (seconds) of ``n`` calls of the patched fast ``fetch_ticker``."""
    perf = time.perf_counter
    out = []
    for _ in range(n):
        t0 = perf()
        client.fetch_ticker("BTC/USDT")
        out.append(perf() - t0)
    return out


def median_us(client: HardenedClient, n: int, blocks: int = 8) -> float:
    """The lowest of ``blocks`` block medians, in microseconds: other processes on the machine
    only ever add time, so the quietest block is the fairest reading of each condition."""
    size = max(100, n // blocks)
    return min(statistics.median(call_latencies(client, size)) for _ in range(blocks)) * 1e6


def bench_tracker(n: int = 100_000) -> tuple[float, float]:
    t = ErrorTracker()
    perf = time.perf_counter
    t0 = perf()
    for _ in range(n):
        t.record("NetworkError", "ticker")
    bare = (perf() - t0) / n * 1e6
    context = {"symbol": "BTC/USDT", "attempts": 3, "url": "https://api.binance.com/api/v3/ticker"}
    t0 = perf()
    for _ in range(n):
        t.record("NetworkError", "ticker", context, exchange="binance", message="connection reset")
    full = (perf() - t0) / n * 1e6
    return bare, full


def server_thread_cpu() -> float:
    """CPU seconds used so far by the status server's thread."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith("hardened-status")}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def fan_out(
    handle: StatusServerHandle,
    parent: Connection,
    phase: str,
    rate: float,
    seconds: float,
    while_publishing: Callable[[threading.Event], None],
) -> dict[str, Any]:
    """Publish ``rate`` events/s for ``seconds`` while ``while_publishing`` runs; gather the figures."""
    total = int(rate * seconds)
    done = threading.Event()
    server_side: list[float] = []  # publish -> written to every peer's socket, per batch
    original = handle.server._fan_out
    marker = b'"kind":"bench"'

    def timed(messages: list[bytes]) -> None:
        original(messages)
        if messages and marker in messages[0] and messages[0].startswith(b'{"type":"event"'):
            server_side.append(time.time() - json.loads(messages[0])["event"]["ts"])

    def publish() -> None:
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for seq in range(total):
            bus.publish("bench", seq=seq, phase=phase, client="bench", endpoint="ticker")
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        done.set()

    handle.server._fan_out = timed  # type: ignore[method-assign]
    counters = handle.server.counters
    dropped0, sent0, cpu0 = counters["dropped"], counters["sent"], server_thread_cpu()
    t0 = time.perf_counter()
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    while_publishing(done)
    publisher.join()
    time.sleep(0.3)
    bus.publish("bench_end", phase=phase)
    result = parent.recv() if parent.poll(60) else {"events": 0, "latencies": [], "cpu_s": 0.0, "stats": 0}
    elapsed = time.perf_counter() - t0
    handle.server._fan_out = original  # type: ignore[method-assign]
    result.update(
        total=total,
        elapsed=elapsed,
        dropped=counters["dropped"] - dropped0,
        sent=counters["sent"] - sent0,
        server_cpu=server_thread_cpu() - cpu0,
        server_side=server_side,
    )
    return result


def report(title: str, r: dict[str, Any], peers: int) -> None:
    expected = r["total"] * peers
    srv = [x * 1000 for x in r["server_side"]]
    lat = [x * 1000 for x in r["latencies"]]
    print(f"\nfan-out, {title}: {r['total']} events x {peers} peers = {expected} messages")
    share = 100.0 * r["events"] / max(1, expected)
    rate = r["events"] / r["elapsed"]
    print(f"  delivered {r['events']} ({share:.1f} %), dropped {r['dropped']}, ", end="")
    print(f"{rate:,.0f} event messages/s over {r['elapsed']:.1f} s")
    print(
        f"  server side (publish -> written to all sockets): p50 {percentile(srv, 0.5):.1f} ms,"
        f" p99 {percentile(srv, 0.99):.1f} ms"
    )
    print(
        f"  end to end (publish -> read by a peer):         p50 {percentile(lat, 0.5):.1f} ms,"
        f" p99 {percentile(lat, 0.99):.1f} ms"
    )
    print(
        f"  CPU: server thread {r['server_cpu']:.2f} s ({r['server_cpu'] * 1e6 / max(1, r['sent']):.1f} us"
        f" per message written), peers' process {r['cpu_s']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events published per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each fan-out phase")
    parser.add_argument("--calls", type=int, default=16_000, help="calls per latency measurement")
    args = parser.parse_args(argv)
    started = time.monotonic()
    limit = raise_fd_limit(args.peers * 2 + 256)
    print(
        f"hardened status benchmark: {args.peers} peers, {args.rate:g} events/s, {args.seconds:g} s a phase"
    )
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, open-files limit {limit}")

    bare, full = bench_tracker()
    print(f"\ntracker.record: {bare:.2f} us bare, {full:.2f} us with context, exchange and message")

    ex = ccxt.binance()
    ex.fetch_ticker = lambda *_a, **_k: {
        "symbol": "BTC/USDT",
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "timestamp": int(time.time() * 1000),
    }
    # No cache and no pacing: every call runs the pipeline and none waits for the weight budget.
    client = HardenedClient(ex, cache_ttl=0, rate_limit_pacing=False)
    call_latencies(client, 2000)  # warm-up
    base_before = median_us(client, args.calls)
    mem_before = rss_mb()

    handle = start_status_server(port=0, http_port=0, interval=1.0, max_connections=args.peers + 10)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=peers_main, args=(handle.url, args.peers, child), daemon=True)
    t0 = time.monotonic()
    proc.start()
    if not parent.poll(60):
        print("peers did not connect in time", file=sys.stderr)
        proc.kill()
        handle.stop()
        return 1
    peers = parent.recv()["ready"]
    deadline = time.monotonic() + 10
    while handle.server.connections < peers and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"{handle.server.connections} peers connected in {time.monotonic() - t0:.1f} s")
    time.sleep(1.5)  # every peer gets its snapshot and a first stats message
    mem_peers = rss_mb()
    with_server = median_us(client, args.calls)

    idle = fan_out(handle, parent, "idle", args.rate, args.seconds, lambda done: done.wait())
    during: list[float] = []

    def keep_calling(done: threading.Event) -> None:
        while not done.is_set():  # block medians, as in median_us
            during.append(statistics.median(call_latencies(client, 500)))

    busy = fan_out(handle, parent, "busy", args.rate, args.seconds, keep_calling)
    mem_after = rss_mb()
    stats_received = busy["stats"]
    handle.stop()
    proc.join(10)
    base_after = median_us(client, args.calls)
    base = (base_before + base_after) / 2
    during_median = min(during) * 1e6 if during else float("nan")

    report("bot idle (waiting on I/O)", idle, peers)
    report("bot calling without pause (GIL contention, worst case)", busy, peers)
    print(f"  stats messages received by all peers during the run: {stats_received}")

    print("\nfetch_ticker median latency (patched fast method, through HardenedClient)")
    print(
        f"  {'without server':<40}{base:8.1f} us   1.00x  (before {base_before:.1f}, after {base_after:.1f})"
    )
    label = f"server + {peers} peers (stats 1/s)"
    print(f"  {label:<40}{with_server:8.1f} us   {with_server / base:.2f}x")
    label = f"... while fanning out {args.rate:g} events/s"
    print(f"  {label:<40}{during_median:8.1f} us   {during_median / base:.2f}x")
    print("\nprocess memory (RSS)")
    print(f"  before the server {mem_before:.1f} MB, with {peers} peers {mem_peers:.1f} MB,", end="")
    print(f" after the fan-out {mem_after:.1f} MB")
    print(f"\ntotal {time.monotonic() - started:.1f} s")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
