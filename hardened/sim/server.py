"""The simulator's HTTP server: routing, fault injection, the clock and the ground-truth log.

:class:`Simulator` runs an ``aiohttp.web`` server on its own event loop in a background thread,
so sync and async code (and tests) talk to it over real HTTP. One server hosts several
exchanges, each under a path prefix (``/binance/api/v3/...``, ``/kucoin/api/v1/...``);
``attach(exchange)`` points an unmodified ccxt exchange (sync or async) at its prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from hardened.cli import port_number
from hardened.sim.dialect import Dialect, DialectError, Route, SimRequest, SimResponse, dialect_class
from hardened.sim.faults import Decision, FaultEngine, Profile, load_profile
from hardened.sim.venue import Balance, Order, Venue, VenueError

__all__ = ["Simulator", "attach_url", "build_parser", "main_argv", "run_server"]

_log = logging.getLogger("hardened.sim")
_SECRET_PARAMS = ("signature", "apikey", "api_key", "passphrase", "secret", "key", "sign")


class _Router:
    """Routes of one dialect: literal paths in a dict, templated ones tried in order."""

    __slots__ = ("literal", "templated")

    def __init__(self, routes: Sequence[Route]) -> None:
        self.literal: dict[tuple[str, str], Route] = {}
        self.templated: list[tuple[str, Any, Route]] = []
        for route in routes:
            pattern = route.pattern()
            if pattern is None:
                self.literal[(route.method.upper(), route.path)] = route
            else:
                self.templated.append((route.method.upper(), pattern, route))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        route = self.literal.get((method, path))
        if route is not None:
            return route, {}
        for m, pattern, candidate in self.templated:
            if m == method:
                found = pattern.match(path)
                if found is not None:
                    return candidate, found.groupdict()
        return None, {}


class Simulator:
    """A local exchange simulator over HTTP, with seeded prices, a ledger and fault profiles.

    Args:
        exchange: one ccxt exchange id to serve (``"binance"``), or use ``exchanges``.
        exchanges: several ids served by one server under ``/{id}/...``.
        profile: a fault profile (name such as ``"storm"``, file path, dict or ``Profile``);
            None is ``calm``.
        seed: same seed, same prices and same fault decisions (default: the profile's seed or 0).
        host, port: where to listen (``port=0`` picks a free port; read ``.url`` after start).
        clock_offset_ms: the exchange's clock minus ours (simulates skew); settable later.
        symbols: per exchange, the unified symbols to list (default: four per exchange).
        ground_truth_size: how many request records to keep.
    """

    def __init__(
        self,
        exchange: str | None = None,
        *,
        exchanges: Iterable[str] | None = None,
        profile: Profile | Mapping[str, Any] | str | Path | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_offset_ms: int = 0,
        symbols: Mapping[str, Iterable[str]] | None = None,
        ground_truth_size: int = 100_000,
    ) -> None:
        ids = list(exchanges or ([] if exchange is None else [exchange]))
        if exchange is not None and exchange not in ids:
            ids.insert(0, exchange)
        if not ids:
            ids = ["binance"]
        unserved = sorted(set(symbols or {}) - set(ids))
        if unserved:
            raise ValueError(
                f"symbols given for {', '.join(map(repr, unserved))}, not served by this simulator "
                f"(serving: {', '.join(ids)})"
            )
        port = _whole(port, "port")
        if not 0 <= port <= 65535:
            raise ValueError(
                f"port must be a whole number from 0 to 65535 (0 picks a free one), not {port!r}"
            )
        clock_offset_ms = _whole(clock_offset_ms, "clock_offset_ms")
        if seed is not None:
            seed = _whole(seed, "seed")
        if (
            isinstance(ground_truth_size, bool)
            or not isinstance(ground_truth_size, int)
            or ground_truth_size < 0
        ):
            raise ValueError(f"ground_truth_size must be a whole number >= 0, not {ground_truth_size!r}")
        self._profile = load_profile(profile)
        self.seed = int(seed if seed is not None else (self._profile.seed or 0))
        self.host = host
        self.port = int(port)
        self.clock_offset_ms = int(clock_offset_ms)
        self._venues: dict[str, Venue] = {}
        self._dialects: dict[str, Dialect] = {}
        self._routers: dict[str, _Router] = {}
        for eid in ids:
            cls = dialect_class(eid)
            venue = Venue(
                eid,
                seed=self.seed,
                symbols=(symbols or {}).get(eid),
                fee_rate=cls.fee_rate,
                client_order_id_scope=cls.client_order_id_scope,
                order_id=cls.order_id,
            )
            dialect = cls(venue)
            self._venues[eid] = venue
            self._dialects[eid] = dialect
            self._routers[eid] = _Router(dialect.routes())
            dialect.enforce_rate_limits = self._profile.enforce_rate_limits
            creds = dialect.default_credentials()
            venue.add_account(creds["apiKey"], creds.get("secret", ""), creds.get("password"))
        self._engine = FaultEngine(self._profile, self.seed)
        self._log: deque[dict[str, Any]] = deque(maxlen=ground_truth_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def exchanges(self) -> list[str]:
        """The exchange ids this server hosts."""
        return list(self._dialects)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """``http://host:port`` (valid after ``start()``)."""
        if not self.running:
            raise RuntimeError("the simulator is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    def exchange_url(self, exchange_id: str) -> str:
        """The base URL of one exchange's dialect (``http://127.0.0.1:PORT/binance``)."""
        return f"{self.url}/{exchange_id}"

    def start(self) -> Simulator:
        """Start serving in a background thread; returns once the port is bound."""
        if self.running:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:
                failure.append(exc)
                # a port already taken: release what was set up (the runner, the loop's own fds)
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._shutdown())
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="hardened-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            self._loop = None
            raise failure[0]
        return self

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{exchange}/{tail:.*}", self._handle)
        app.router.add_route("GET", "/", self._index)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        self._runner = runner  # set before binding, so a failed bind still cleans it up
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        """Stop serving and join the thread (open connections are closed)."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state for tests and the demo -------------------------------------------------------------
    def venue(self, exchange_id: str | None = None) -> Venue:
        """The venue behind an exchange (the only one when ``exchange_id`` is None)."""
        if exchange_id is None:
            if len(self._venues) != 1:
                raise ValueError(f"several exchanges served ({', '.join(self._venues)}): name one")
            return next(iter(self._venues.values()))
        try:
            return self._venues[exchange_id]
        except KeyError:
            raise ValueError(f"exchange {exchange_id!r} is not served by this simulator") from None

    def dialect(self, exchange_id: str) -> Dialect:
        """The dialect serving ``exchange_id``."""
        self.venue(exchange_id)
        return self._dialects[exchange_id]

    def orders(self, exchange_id: str | None = None, api_key: str | None = None) -> list[Order]:
        """Snapshots of every order in an exchange's ledger (of one API key if given)."""
        return self.venue(exchange_id).orders(api_key)

    def balances(self, exchange_id: str | None = None, api_key: str | None = None) -> dict[str, Balance]:
        """Balances of an account (default: the dialect's default credentials)."""
        venue = self.venue(exchange_id)
        key = api_key or self._dialects[venue.exchange].default_credentials()["apiKey"]
        return venue.balances(key, self.now_ms())

    def now_ms(self) -> int:
        """The exchange's clock: wall time plus ``clock_offset_ms``."""
        return int(time.time() * 1000) + self.clock_offset_ms

    @property
    def profile(self) -> Profile:
        """The active fault profile."""
        return self._profile

    def set_profile(self, profile: Profile | Mapping[str, Any] | str | Path | None) -> None:
        """Switch fault profile at run time (windows, schedules and hours of day keep counting from
        start)."""
        loaded = load_profile(profile)
        engine = FaultEngine(
            loaded, self.seed, started=self._engine.started, started_wall=self._engine.started_wall
        )
        self._profile = loaded
        self._engine = engine
        for dialect in self._dialects.values():
            dialect.enforce_rate_limits = loaded.enforce_rate_limits

    @property
    def faults(self) -> FaultEngine:
        """The fault engine (``sim_elapsed()``, ``regimes_at()``)."""
        return self._engine

    # -- attach -----------------------------------------------------------------------------------
    def attach(self, exchange: Any, credentials: bool = True) -> Any:
        """Point a ccxt exchange (sync or async) at this simulator and keep it on faked endpoints.

        With ``credentials`` the exchange gets the dialect's default API key when it has none,
        and its key is registered with the venue (a key already known keeps its first secret, so
        a second exchange with a wrong secret fails authentication as on the real exchange).
        Returns the exchange."""
        eid = exchange.id
        if eid not in self._dialects:
            raise ValueError(
                f"exchange {eid!r} is not served by this simulator (serving: {', '.join(self._dialects)})"
            )
        dialect = self._dialects[eid]
        exchange.urls = dict(exchange.urls)
        exchange.urls["api"] = dialect.api_urls(self.exchange_url(eid))
        dialect.configure(exchange)
        if credentials:
            if not exchange.apiKey:
                for field, value in dialect.default_credentials().items():
                    setattr(exchange, field, value)
            self._venues[eid].add_account(
                exchange.apiKey, exchange.secret or "", getattr(exchange, "password", None)
            )
        return exchange

    # -- ground truth -------------------------------------------------------------------------------
    def ground_truth(self) -> list[dict[str, Any]]:
        """Every request record kept (copies, oldest first): ts, exchange, endpoint, method, path
        (secrets stripped), fault (rule name), fault_kind, regime, status (None while in flight or
        when no answer was sent), outcome (ok, reset, timeout, dropped, client_gone),
        latency_added and duration (seconds; None while in flight)."""
        return [dict(record) for record in list(self._log)]

    def clear_ground_truth(self) -> None:
        """Forget the request records."""
        self._log.clear()

    def ground_truth_counts(self) -> dict[str, Any]:
        """Aggregates of the log: totals, by fault kind, by status, and per ``exchange:endpoint``."""
        records = self.ground_truth()
        by_endpoint: dict[str, dict[str, Any]] = {}
        for rec in records:
            entry = by_endpoint.setdefault(
                f"{rec['exchange']}:{rec['endpoint']}",
                {"requests": 0, "faults": Counter(), "statuses": Counter()},
            )
            entry["requests"] += 1
            if rec["fault_kind"]:
                entry["faults"][rec["fault_kind"]] += 1
            entry["statuses"][str(rec["status"])] += 1
        return {
            "requests": len(records),
            "faulted": sum(1 for r in records if r["fault_kind"]),
            "by_fault": dict(Counter(r["fault_kind"] for r in records if r["fault_kind"])),
            "by_status": dict(Counter(str(r["status"]) for r in records)),
            "by_outcome": dict(Counter(r["outcome"] for r in records)),
            "by_endpoint": {
                k: {"requests": v["requests"], "faults": dict(v["faults"]), "statuses": dict(v["statuses"])}
                for k, v in by_endpoint.items()
            },
        }

    # -- request handling ---------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"simulator": "hardened", "exchanges": self.exchanges, "profile": self._profile.name}
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info["exchange"]
        dialect = self._dialects.get(exchange)
        if dialect is None:
            return web.Response(status=404, text=f"no exchange {exchange!r} here")
        path = "/" + request.match_info["tail"]
        method = request.method
        route, params = self._routers[exchange].match(method, path)
        endpoint = route.endpoint if route is not None else "unknown"
        started = time.monotonic()
        record: dict[str, Any] = {
            "ts": time.time(),
            "exchange": exchange,
            "endpoint": endpoint,
            "method": method,
            "path": _clean_path(request.path, request.rel_url.raw_query_string),
            "fault": None,
            "fault_kind": None,
            "regime": None,
            "status": None,
            "outcome": "ok",
            "latency_added": 0.0,
            "duration": None,
        }
        self._log.append(record)  # visible at once; the decision, status and outcome fill in as it goes
        try:
            # The body is read before deciding: an order's market travels in it (Binance's form,
            # KuCoin's and Bitvavo's JSON), and rules narrowed to one market must see it there too.
            body = await request.read() if request.body_exists else b""
            req = SimRequest(
                exchange=exchange,
                method=method,
                path=path,
                raw_query=request.rel_url.raw_query_string,
                query=request.query,
                headers=request.headers,
                body=body,
                remote=request.remote or "",
                now_ms=self.now_ms(),
                venue=self._venues[exchange],
                endpoint=endpoint,
                path_params=params,
            )
            engine = self._engine
            decision: Decision | None = None
            if engine.active:
                symbol, limit = _market_and_limit(req)
                decision = engine.decide(exchange, endpoint, symbol=symbol, limit=limit)
            if decision is not None:
                req.bad_data = decision.bad_data
                record["fault"] = decision.fault
                record["fault_kind"] = decision.action or "latency"
                record["regime"] = decision.regime
                record["latency_added"] = decision.latency
                if decision.latency:
                    await asyncio.sleep(decision.latency)
                    req.now_ms = self.now_ms()
                early = await self._before(decision, dialect, req, request, record)
                if early is not None:
                    return early
            resp = self._answer(dialect, route, req)
            if decision is not None and decision.action is not None:
                action = decision.action
                if action == "accept_then_drop":
                    record["outcome"] = "dropped"
                    _abort(request, reset=True)
                    return web.Response(status=200)
                if action == "malformed_json" and resp.status == 200:
                    raw = resp.encoded()
                    resp = SimResponse(200, raw[: max(1, len(raw) // 2)], resp.headers, resp.content_type)
                if action == "bad_data":
                    applied = decision.bad_data.applied if decision.bad_data else None
                    record["fault"] = f"{decision.fault}:{applied}" if applied else decision.fault
            dialect.after(req, resp)
            record["status"] = resp.status
            return _web_response(resp)
        except asyncio.CancelledError:
            if record["outcome"] == "ok":
                record["outcome"] = "client_gone"
            raise
        finally:
            record["duration"] = time.monotonic() - started

    async def _before(
        self,
        decision: Decision,
        dialect: Dialect,
        req: SimRequest,
        request: web.Request,
        record: dict[str, Any],
    ) -> web.StreamResponse | None:
        """Faults that answer before the handler runs; None lets the request through."""
        action = decision.action
        rule = decision.rule
        if action is None or rule is None:
            return None
        resp: SimResponse | None = None
        if action == "reset":
            record["outcome"] = "reset"
            _abort(request, reset=True)
            return web.Response(status=200)
        if action == "timeout":
            record["outcome"] = "timeout"
            await asyncio.sleep(rule.hold)
            _abort(request, reset=False)
            return web.Response(status=200)
        if action == "http_5xx":
            resp = dialect.server_error(int(decision.choose(rule.status)), req)
        elif action == "rate_limit_429":
            resp = dialect.throttled(429, rule.retry_after, req)
        elif action == "ban_418":
            resp = dialect.throttled(418, rule.retry_after, req)
        elif action == "exchange_error":
            resp = dialect.fault_error(rule.error or "maintenance", req)
        elif action == "html_200":
            resp = SimResponse(
                200,
                "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                "<body><p>Checking your browser before accessing the API.</p></body></html>",
                content_type="text/html",
            )
        if resp is None:
            return None
        dialect.after(req, resp)
        record["status"] = resp.status
        return _web_response(resp)

    @staticmethod
    def _answer(dialect: Dialect, route: Route | None, req: SimRequest) -> SimResponse:
        if route is None:
            return dialect.not_found(req)
        try:
            early = dialect.before(req)
            if early is not None:
                return early
            result = route.handler(req)
        except DialectError as exc:
            return exc.response
        except VenueError as exc:
            return dialect.venue_error(exc, req)
        except Exception as exc:  # a bug in a dialect: answer, and say so loudly
            _log.exception("simulator: %s %s %s failed", req.exchange, req.method, req.path)
            return SimResponse(
                500, f"simulator error in {req.exchange} {route.path}: {exc!r}", content_type="text/plain"
            )
        if isinstance(result, SimResponse):
            return result
        return SimResponse(200, result)


def _whole(value: Any, name: str) -> int:
    """``value`` as an int (``9000`` or ``"9000"``), or a ValueError naming the argument."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


def _market_and_limit(req: SimRequest) -> tuple[str | None, int | None]:
    """The request's market (``symbol`` or ``market`` in the query, the path or the body: an order
    carries it in a form or JSON body) and ``limit``, for fault rules narrowed to one market or to
    large requests; best effort, never raises."""
    params = req.path_params
    try:
        symbol = req.param("symbol") or req.param("market") or params.get("market") or params.get("symbol")
        raw = req.param("limit") or req.param("depth")
    except ValueError:  # a body that is not text: the handler words the refusal
        return params.get("market") or params.get("symbol"), None
    try:
        limit = int(raw) if raw is not None else None
    except ValueError:
        limit = None
    return symbol, limit


def attach_url(exchange: Any, url: str, credentials: bool = True) -> Any:
    """Point a ccxt exchange at a simulator running elsewhere (``hardened sim``, another process):
    ``url`` is the server's base (``http://127.0.0.1:9000``). With ``credentials`` an exchange
    without an API key gets the dialect's default one, which every simulator knows."""
    dialect = dialect_class(exchange.id)(Venue(exchange.id))
    exchange.urls = dict(exchange.urls)
    exchange.urls["api"] = dialect.api_urls(f"{url.rstrip('/')}/{exchange.id}")
    dialect.configure(exchange)
    if credentials and not exchange.apiKey:
        for field, value in dialect.default_credentials().items():
            setattr(exchange, field, value)
    return exchange


def _web_response(resp: SimResponse) -> web.Response:
    headers = resp.headers
    if any(k.lower() == "content-type" for k in headers):
        return web.Response(status=resp.status, body=resp.encoded(), headers=headers)
    return web.Response(
        status=resp.status, body=resp.encoded(), headers=headers, content_type=resp.content_type
    )


def _abort(request: web.Request, reset: bool) -> None:
    """Close the client's connection without an answer (RST when ``reset``)."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _clean_path(path: str, raw_query: str) -> str:
    """The path with secret-bearing query parameters removed (signatures, keys)."""
    if not raw_query:
        return path
    kept = [
        part for part in raw_query.split("&") if part and part.split("=", 1)[0].lower() not in _SECRET_PARAMS
    ]
    return f"{path}?{'&'.join(kept)}" if kept else path


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def run_server(
    exchanges: Sequence[str] = ("binance",),
    host: str = "127.0.0.1",
    port: int = 9000,
    profile: Profile | Mapping[str, Any] | str | Path | None = None,
    seed: int | None = None,
    clock_offset_ms: int = 0,
) -> None:
    """Serve until Ctrl-C or SIGTERM, printing where each exchange is reachable (``hardened sim``)."""
    sim = Simulator(
        exchanges=exchanges, profile=profile, seed=seed, host=host, port=port, clock_offset_ms=clock_offset_ms
    )
    sim.start()
    print(f"hardened simulator on {sim.url} (profile {sim.profile.name!r}, seed {sim.seed})", flush=True)
    for eid in sim.exchanges:
        print(
            f"  {eid}: {sim.exchange_url(eid)}   (ccxt: Simulator.attach or urls['api'] -> this prefix)",
            flush=True,
        )
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()  # until Ctrl-C or SIGTERM sets it
    except KeyboardInterrupt:
        stop.set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sim.stop()
        counts = sim.ground_truth_counts()
        print(f"served {counts['requests']} requests, {counts['faulted']} with faults", flush=True)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``hardened sim`` (adds them to ``parser`` when given)."""
    parser = parser or argparse.ArgumentParser(prog="hardened sim", description="Run the exchange simulator.")
    parser.add_argument(
        "--exchange",
        action="append",
        dest="exchanges",
        metavar="ID",
        help="exchange to serve (repeat or comma-separate; default binance)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=9000, help="0 picks a free port")
    parser.add_argument("--profile", default="calm", help="built-in profile name or a .toml/.json file")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--clock-offset-ms", type=int, default=0, help="simulate exchange clock skew")
    return parser


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Parse ``hardened sim`` arguments and serve until Ctrl-C; returns an exit code."""
    from hardened.sim.faults import ProfileError

    args = build_parser().parse_args(argv)
    exchanges = [e.strip() for item in (args.exchanges or ["binance"]) for e in item.split(",") if e.strip()]
    try:
        run_server(exchanges, args.host, args.port, args.profile, args.seed, args.clock_offset_ms)
    except (ProfileError, ValueError, OSError) as exc:
        print(f"hardened sim: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
