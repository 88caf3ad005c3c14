"""The contract between the simulator core and one exchange's REST dialect.

The core (``hardened.sim.server``) owns HTTP, faults, the clock and the ground-truth log; a
:class:`Dialect` owns one exchange's URLs, JSON shapes, authentication and error words. It turns
a :class:`SimRequest` into a :class:`SimResponse` by calling the exchange-neutral
:class:`~hardened.sim.venue.Venue`. Writing a dialect (stable API):

1. Subclass :class:`Dialect`; set ``exchange_id`` (the ccxt id) and, if needed,
   ``client_order_id_scope`` (``"open"`` or ``"all"``) and ``fee_rate``.
2. ``routes()`` returns :class:`Route` objects: ``Route("GET", "/api/v3/ticker/24hr", "ticker",
   self.ticker)``. Paths are relative to the exchange's prefix (``/binance``), may hold
   ``{name}`` placeholders (read from ``req.path_params``), and ``endpoint`` is one of
   :data:`ENDPOINTS` (faults are declared per endpoint) or any other short name.
3. A handler is ``def handler(req: SimRequest) -> SimResponse | Any``: return a JSON-able object
   for a 200, a :class:`SimResponse` for anything else, or raise :class:`DialectError` (carrying a
   response) or :class:`~hardened.sim.venue.VenueError` (worded by ``venue_error``). Handlers
   are synchronous and run on the server thread; the venue is thread-safe.
4. Pass market data through ``req.apply_bad_data(obj)`` before serialising it (a
   ``list[Candle]``, a ``Ticker``, an ``OrderBook`` or a ``list[Trade]``): it returns the object
   unchanged unless the fault profile injects bad data into this request.
5. ``api_urls(base)`` returns the ``exchange.urls["api"]`` value that points ccxt at ``base``
   (``http://127.0.0.1:PORT/binance``); ``configure(exchange)`` sets the options that keep ccxt
   on faked endpoints; ``default_credentials()`` gives credentials for ``Simulator.attach``.
6. ``venue_error``, ``fault_error`` (semantic kinds ``rate_limit``, ``clock_skew``,
   ``maintenance``), ``throttled`` (429/418 with Retry-After), ``server_error`` (5xx) and
   ``not_found`` word errors as the exchange does. ``before(req)`` runs before every routed
   handler (after injected faults) and may answer instead (e.g. the exchange's own rate limit
   when ``self.enforce_rate_limits`` is set from the profile); ``after(req, resp)`` may add
   headers (rate-limit counters) to every answer that is sent.
7. Register: put the class in ``hardened/sim/dialects/<exchange_id>.py`` with a module-level
   ``DIALECT = TheClass``; :func:`dialect_class` imports it by name. (Or call
   :func:`register_dialect` for a dialect defined elsewhere, e.g. in a test.)
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import importlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl

from hardened.sim.venue import Venue, VenueError

if TYPE_CHECKING:
    from hardened.sim.faults import BadData

__all__ = [
    "ENDPOINTS",
    "FAULT_ERROR_KINDS",
    "Dialect",
    "DialectError",
    "Handler",
    "Route",
    "SimRequest",
    "SimResponse",
    "WeightWindow",
    "dialect_class",
    "hmac_sha256_b64",
    "hmac_sha256_hex",
    "register_dialect",
    "retry_after_header",
]

ENDPOINTS = (
    "time",
    "markets",
    "ticker",
    "ohlcv",
    "order_book",
    "trades",
    "balance",
    "create_order",
    "fetch_order",
    "cancel_order",
    "open_orders",
    "orders",
    "my_trades",
    "status",
)
FAULT_ERROR_KINDS = ("rate_limit", "clock_skew", "maintenance")


@dataclass(slots=True)
class SimResponse:
    """An answer: ``body`` is JSON-encoded unless it is ``str``/``bytes`` (then sent as is)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        """The body as bytes."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


class DialectError(Exception):
    """Raised by a handler to answer with ``response`` (an exchange error)."""

    def __init__(self, response: SimResponse) -> None:
        self.response = response
        super().__init__(f"{response.status}: {response.body!r}")


class SimRequest:
    """One HTTP request as a dialect sees it; built by the core, read by handlers."""

    __slots__ = (
        "_form",
        "_json",
        "bad_data",
        "body",
        "endpoint",
        "exchange",
        "headers",
        "method",
        "now_ms",
        "path",
        "path_params",
        "query",
        "raw_query",
        "remote",
        "venue",
    )

    def __init__(
        self,
        exchange: str,
        method: str,
        path: str,
        raw_query: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        remote: str,
        now_ms: int,
        venue: Venue,
        endpoint: str = "",
        path_params: dict[str, str] | None = None,
        bad_data: BadData | None = None,
    ) -> None:
        self.exchange = exchange
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.query = query
        self.headers = headers
        self.body = body
        self.remote = remote
        self.now_ms = now_ms
        self.venue = venue
        self.endpoint = endpoint
        self.path_params = path_params or {}
        self.bad_data = bad_data
        self._form: dict[str, str] | None = None
        self._json: Any = None

    @property
    def form(self) -> dict[str, str]:
        """The body decoded as ``application/x-www-form-urlencoded`` (empty if it is not)."""
        if self._form is None:
            self._form = {}
            if self.body and b"=" in self.body and not self.body.lstrip().startswith((b"{", b"[")):
                self._form = dict(parse_qsl(self.body.decode(), keep_blank_values=True))
        return self._form

    @property
    def json(self) -> Any:
        """The body decoded as JSON (None if empty or not JSON)."""
        if self._json is None and self.body and self.body.lstrip().startswith((b"{", b"[")):
            try:
                self._json = json.loads(self.body)
            except ValueError:
                self._json = None
        return self._json

    @property
    def body_text(self) -> str:
        """The raw body as text (what signatures are computed over)."""
        return self.body.decode() if self.body else ""

    def body_str(self, name: str) -> str | None:
        """A field of a JSON object body as text (numbers and booleans as the exchange reads them)."""
        data = self.json
        if not isinstance(data, dict):
            return None
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def param(self, name: str, default: str | None = None) -> str | None:
        """A parameter from the query string, the form body or a JSON object body, in that order."""
        value = self.query.get(name)
        if value is not None:
            return value
        value = self.form.get(name)
        if value is not None:
            return value
        data = self.json
        if isinstance(data, dict) and name in data:
            found = data[name]
            return found if isinstance(found, str) or found is None else str(found)
        return default

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitive."""
        return self.headers.get(name, default)

    def apply_bad_data(self, obj: Any) -> Any:
        """``obj`` corrupted as the fault profile decided for this request (usually unchanged)."""
        if self.bad_data is None:
            return obj
        return self.bad_data.apply(obj, self)


Handler = Callable[[SimRequest], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """``method`` + ``path`` (relative to the exchange prefix, ``{name}`` placeholders) -> handler."""

    method: str
    path: str
    endpoint: str
    handler: Handler
    weight: int = 1

    def pattern(self) -> re.Pattern[str] | None:
        """A regex for templated paths, None for literal ones."""
        if "{" not in self.path:
            return None
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")


class Dialect(abc.ABC):
    """Base class of an exchange dialect (see the module docstring for the contract)."""

    exchange_id: ClassVar[str] = ""
    client_order_id_scope: ClassVar[Literal["open", "all"]] = "open"
    fee_rate: ClassVar[float] = 0.001

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.enforce_rate_limits = False  # set by the simulator from the profile

    # -- wiring ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def routes(self) -> Sequence[Route]:
        """Every route this dialect answers."""

    @abc.abstractmethod
    def api_urls(self, base: str) -> Any:
        """The value for ``exchange.urls["api"]`` pointing every API family at ``base``."""

    def configure(self, exchange: Any) -> None:
        """Set ccxt options so the exchange only calls faked endpoints (default: nothing)."""
        return None  # an optional hook: most dialects need no options

    def default_credentials(self) -> dict[str, str]:
        """Credentials ``Simulator.attach`` installs when the exchange has none."""
        return {"apiKey": f"sim-{self.exchange_id}-key", "secret": f"sim-{self.exchange_id}-secret"}

    @staticmethod
    def order_id(seq: int) -> str:
        """The exchange's order id for the venue's ``seq``-th order (default: the number)."""
        return str(seq)

    # -- errors ---------------------------------------------------------------------------------
    def venue_error(self, error: VenueError, req: SimRequest) -> SimResponse:
        """The exchange's answer to a venue refusal (insufficient funds, unknown order...)."""
        return SimResponse(400, {"error": error.kind, "message": error.detail})

    def fault_error(self, kind: str, req: SimRequest) -> SimResponse:
        """The exchange's answer for an injected semantic error: rate_limit, clock_skew, maintenance."""
        return SimResponse(503 if kind == "maintenance" else 400, {"error": kind})

    def throttled(self, status: int, retry_after: float, req: SimRequest) -> SimResponse:
        """A 429 (rate limited) or 418 (banned) answer with Retry-After."""
        return SimResponse(
            status, {"error": "too many requests"}, {"Retry-After": retry_after_header(retry_after)}
        )

    def server_error(self, status: int, req: SimRequest) -> SimResponse:
        """A 5xx answer as the exchange's front end sends it (HTML by default, as CDNs do)."""
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
            status, "Gateway Timeout"
        )
        title = f"{status} {reason}"
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return SimResponse(status, html, content_type="text/html")

    def not_found(self, req: SimRequest) -> SimResponse:
        """The answer to a path the dialect does not know."""
        return SimResponse(404, "<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html")

    def before(self, req: SimRequest) -> SimResponse | None:
        """Called before a routed handler; return a response to answer instead (default: None)."""
        return None

    def after(self, req: SimRequest, resp: SimResponse) -> None:
        """Called on every answer that is sent (not on resets/timeouts): add headers here."""
        return None  # an optional hook: dialects without rate-limit headers add nothing


_DIALECTS: dict[str, type[Dialect]] = {}


def dialect_class(exchange_id: str) -> type[Dialect]:
    """The dialect for a ccxt exchange id, imported from ``hardened.sim.dialects.<id>``."""
    found = _DIALECTS.get(exchange_id)
    if found is None:
        try:
            module = importlib.import_module(f"hardened.sim.dialects.{exchange_id}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hardened.sim.dialects.{exchange_id}":
                raise
            raise ValueError(f"the simulator has no dialect for exchange {exchange_id!r}") from None
        found = module.DIALECT
        _DIALECTS[exchange_id] = found
    return found


def register_dialect(cls: type[Dialect]) -> type[Dialect]:
    """Make ``cls`` the dialect of ``cls.exchange_id`` (usable as a class decorator)."""
    if not cls.exchange_id:
        raise ValueError(f"{cls.__name__} has no exchange_id")
    _DIALECTS[cls.exchange_id] = cls
    return cls


class WeightWindow:
    """Request weight per caller (API key or IP) over a fixed window that starts with the caller's
    first request, as KuCoin's pools and Bitvavo's budget count it. Thread-safe."""

    __slots__ = ("_lock", "_used", "limit", "window_ms")

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self._used: dict[str, tuple[int, int]] = {}  # who -> (window start, used)
        self._lock = threading.Lock()

    def charge(self, who: str, weight: int, now_ms: int) -> tuple[int, int]:
        """Spend ``weight``; returns (used in this window, epoch ms when the window resets)."""
        with self._lock:
            start, used = self._used.get(who, (now_ms, 0))
            if now_ms - start >= self.window_ms:
                start, used = now_ms, 0
            used += weight
            self._used[who] = (start, used)
        return used, start + self.window_ms

    def peek(self, who: str, now_ms: int) -> tuple[int, int]:
        """(used in the current window, epoch ms when it resets) without spending."""
        start, used = self._used.get(who, (now_ms, 0))
        if now_ms - start >= self.window_ms:
            return 0, now_ms + self.window_ms
        return used, start + self.window_ms


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up: the header says "not before", so a 0.5 s wait
    must not become ``0`` (retry at once) nor 2.5 s become ``2``."""
    return str(max(0, math.ceil(seconds)))


def hmac_sha256_hex(secret: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` keyed by ``secret``, hex (Binance)."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def hmac_sha256_b64(secret: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` keyed by ``secret``, base64 (KuCoin)."""
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()
