"""Exchange profiles: what each exchange's errors mean, its rate-limit pools and client order id rules.

The profiles are data (one TOML file per exchange in the top-level ``adapters/`` folder, shipped inside
the package as ``hardened._adapters``) validated here by pydantic models, so that supporting a new
exchange is one file. ``load_profile(exchange_id)`` returns the validated, cached profile, or a
generic default for an exchange without a file, so that any ccxt exchange still works.
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from hardened.errors import ErrorKind, http_status_of

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "ENDPOINTS",
    "ENDPOINT_ALIASES",
    "Action",
    "ClientOrderIdSpec",
    "ClockSpec",
    "EndpointCost",
    "ErrorRule",
    "ExchangeProfile",
    "FailureKind",
    "HeaderSpec",
    "LookupCall",
    "MarketDataSpec",
    "PoolSpec",
    "ProfileError",
    "RateLimitSpec",
    "available_profiles",
    "load_profile",
    "load_profile_file",
    "profile_dir",
]

# Endpoint names: a unified ccxt method without its ``fetch_`` prefix (``fetch_ohlcv`` -> ``ohlcv``),
# the names breakers (``binance_ohlcv``), stats and per-endpoint settings use.
ENDPOINTS = (
    "markets",
    "ticker",
    "tickers",
    "ohlcv",
    "order_book",
    "trades",
    "balance",
    "create_order",
    "fetch_order",
    "cancel_order",
    "open_orders",
    "closed_orders",
    "orders",
    "my_trades",
    "time",
)
# hardened.endpoints names fetch_order "order" (the method without ``fetch_``): the same endpoint.
ENDPOINT_ALIASES = {"order": "fetch_order"}

_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names the file and the field."""


class FailureKind(enum.Enum):
    """What an exchange's answer means, finer than ``hardened.errors.ErrorKind``."""

    TRANSIENT = "transient"
    RATE_LIMIT = "rate_limit"
    BAN = "ban"
    CLOCK_SKEW = "clock_skew"
    MAINTENANCE = "maintenance"
    PERMANENT = "permanent"
    ORDER_NOT_FOUND = "order_not_found"
    DUPLICATE_ORDER = "duplicate_order"
    INSUFFICIENT_FUNDS = "insufficient_funds"


class Action(enum.Enum):
    """What the caller should do about a failure of a given kind."""

    RETRY = "retry"
    BACKOFF_UNTIL_RESET = "backoff_until_reset"
    RESYNC_CLOCK_THEN_RETRY_ONCE = "resync_clock_then_retry_once"
    FAIL = "fail"


# How each kind reads in the coarser classification the retry and breaker stages use.
_ERROR_KIND: dict[FailureKind, ErrorKind] = {
    FailureKind.TRANSIENT: ErrorKind.TRANSIENT,
    FailureKind.RATE_LIMIT: ErrorKind.RATE_LIMIT,
    FailureKind.BAN: ErrorKind.RATE_LIMIT,
    FailureKind.CLOCK_SKEW: ErrorKind.CLOCK_SKEW,
    FailureKind.MAINTENANCE: ErrorKind.TRANSIENT,
    FailureKind.PERMANENT: ErrorKind.PERMANENT,
    FailureKind.ORDER_NOT_FOUND: ErrorKind.PERMANENT,
    FailureKind.DUPLICATE_ORDER: ErrorKind.PERMANENT,
    FailureKind.INSUFFICIENT_FUNDS: ErrorKind.PERMANENT,
}

# Which actions make sense for which kind: a profile that asks to retry a missing order is refused.
_ALLOWED_ACTIONS: dict[FailureKind, frozenset[Action]] = {
    FailureKind.TRANSIENT: frozenset({Action.RETRY, Action.BACKOFF_UNTIL_RESET}),
    FailureKind.RATE_LIMIT: frozenset({Action.BACKOFF_UNTIL_RESET}),
    FailureKind.BAN: frozenset({Action.BACKOFF_UNTIL_RESET}),
    FailureKind.CLOCK_SKEW: frozenset({Action.RESYNC_CLOCK_THEN_RETRY_ONCE}),
    FailureKind.MAINTENANCE: frozenset({Action.BACKOFF_UNTIL_RESET, Action.FAIL}),
    FailureKind.PERMANENT: frozenset({Action.FAIL}),
    FailureKind.ORDER_NOT_FOUND: frozenset({Action.FAIL}),
    FailureKind.DUPLICATE_ORDER: frozenset({Action.FAIL}),
    FailureKind.INSUFFICIENT_FUNDS: frozenset({Action.FAIL}),
}


# Numbers, integers and flags as TOML writes them: ``limit = true`` or ``limit = "6000"`` is an error
# naming the field, not a pool of 1 unit (pydantic's lax mode would take both). Integers pass as numbers.
Number = Annotated[float, Strict()]
Integer = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]


class _Model(BaseModel):
    """Frozen, strict-keyed base: a misspelt field in a profile is an error, not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorPayload(_Model):
    """Where the exchange puts its error code and message in a JSON error body."""

    code_keys: tuple[str, ...] = ("code",)
    message_keys: tuple[str, ...] = ("msg", "message", "error")
    code_type: Literal["int", "str"] = "str"
    success_codes: tuple[str, ...] = ()


class ErrorRule(_Model):
    """One entry of an exchange's error map: what to match and what it means.

    A rule matches when every matcher it sets matches: ``code`` (exact), ``http_status`` (one of) and
    ``message`` (regular expression, searched). ``until`` extracts the epoch-ms end of a ban from the
    message; ``backoff_s`` is the wait when the exchange gives no time, counted from ``backoff_from``.
    ``ambiguous`` marks answers after which an order may or may not exist. ``ccxt`` records the class
    ccxt raises for ``example`` (sent as a JSON body or as plain text, ``example_body``) at
    ``example_status``; the tests hold both to it.
    """

    name: str = Field(min_length=1)
    code: str | None = None
    http_status: tuple[Integer, ...] = ()
    message: re.Pattern[str] | None = None
    kind: FailureKind
    action: Action
    ambiguous: Flag = False
    backoff_s: Number | None = Field(default=None, gt=0)
    backoff_from: Literal["now", "window_reset"] = "now"
    until: re.Pattern[str] | None = None
    pool: str | None = None
    source: str = Field(min_length=1)
    ccxt: str | None = None
    example: str | None = None
    example_status: Integer | None = Field(default=None, ge=100, le=599)
    example_body: Literal["json", "text"] = "json"
    note: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("http_status", mode="before")
    @classmethod
    def _status_as_tuple(cls, value: Any) -> Any:
        return (value,) if isinstance(value, int) else value

    @field_validator("until")
    @classmethod
    def _until_has_one_group(cls, value: re.Pattern[str] | None) -> re.Pattern[str] | None:
        if value is not None and value.groups != 1:
            raise ValueError("must capture exactly one group (the epoch-ms end of the ban)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ErrorRule:
        if self.code is None and not self.http_status and self.message is None:
            raise ValueError("a rule needs at least one of code, http_status, message")
        if self.action not in _ALLOWED_ACTIONS[self.kind]:
            allowed = ", ".join(sorted(a.value for a in _ALLOWED_ACTIONS[self.kind]))
            raise ValueError(
                f"action {self.action.value!r} does not fit kind {self.kind.value!r} ({allowed})"
            )
        return self

    @property
    def error_kind(self) -> ErrorKind:
        """This rule's kind in ``hardened.errors.ErrorKind`` terms (bans are rate limits there)."""
        return _ERROR_KIND[self.kind]

    def matches(self, code: str | None, message: str, http_status: int | None) -> bool:
        """Whether this rule covers an answer with that code, message and HTTP status."""
        if self.code is not None and self.code != code:
            return False
        if self.http_status and http_status not in self.http_status:
            return False
        return self.message is None or self.message.search(message) is not None

    def ban_end(self, message: str) -> float | None:
        """The epoch-seconds end of a ban the message announces (``until`` pattern), if any."""
        if self.until is None:
            return None
        found = self.until.search(message)
        if found is None:
            return None
        stamp = int(found.group(1))
        return stamp / 1000.0 if stamp > 10**11 else float(stamp)


class PoolSpec(_Model):
    """One rate-limit pool: ``limit`` units per ``interval_s`` seconds."""

    name: str = Field(min_length=1)
    limit: Number = Field(gt=0)
    interval_s: Number = Field(gt=0)
    window: Literal["aligned", "first_request"] = "aligned"
    scope: Literal["ip", "account", "api_key", "unknown"] = "unknown"
    per_request: Flag = False
    source: str = Field(min_length=1)


class HeaderSpec(_Model):
    """A response header that publishes usage; ``pool`` unset means the pool of the answering endpoint."""

    name: str = Field(min_length=1)
    pool: str | None = None
    meaning: Literal["used", "remaining", "limit", "reset_after_ms", "reset_at_epoch_ms", "allow_at_epoch_ms"]
    source: str = Field(min_length=1)


class EndpointCost(_Model):
    """What one call of an endpoint costs: ``weight`` in its pool plus ``also`` in other pools.

    ``ccxt_api`` (``"<api> <METHOD> <path> [cost key]"``) and ``ccxt_cost`` record the entry of ccxt's
    ``describe()['api']`` the weight was checked against; ``ccxt_differs`` says why ``weight`` is not
    that cost (ccxt lags a weight the exchange has since changed), else they must agree.
    """

    weight: Number = Field(ge=0)
    pool: str | None = None
    also: dict[str, Annotated[Number, Field(ge=0)]] = Field(default_factory=dict)
    by_limit: tuple[tuple[Annotated[Integer, Field(gt=0)], Annotated[Number, Field(ge=0)]], ...] = ()
    no_symbol_weight: Number | None = Field(default=None, ge=0)
    ccxt_cost: Number | None = None
    ccxt_api: str | None = Field(default=None, pattern=r"^\w+ (GET|POST|PUT|DELETE) \S+( \w+)?$")
    ccxt_differs: str | None = Field(default=None, min_length=1)
    source: str = Field(min_length=1)

    @field_validator("by_limit")
    @classmethod
    def _limits_ascend(cls, value: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        """``weight_for`` takes the first step whose limit covers the call: steps out of order
        would charge a small call the weight of a large one (or the reverse)."""
        limits = [upto for upto, _weight in value]
        if limits != sorted(set(limits)):
            raise ValueError(f"the limits must be strictly ascending, got {limits}")
        return value

    def weight_for(self, *, limit: int | None = None, has_symbol: bool = True) -> float:
        """The weight in the endpoint's own pool for a call with that ``limit`` / without a symbol."""
        if not has_symbol and self.no_symbol_weight is not None:
            return self.no_symbol_weight
        if limit is not None:
            for upto, weight in self.by_limit:
                if limit <= upto:
                    return weight
            if self.by_limit:
                return self.by_limit[-1][1]
        return self.weight


class RateLimitSpec(_Model):
    """The exchange's pools, the headers that publish usage and each endpoint's cost."""

    default_pool: str | None = None
    default_weight: Number = Field(default=1.0, ge=0)
    ccxt_weight_per_cost: Number = Field(default=1.0, gt=0)
    retry_after_header: str = Field(default="Retry-After", min_length=1)
    pools: tuple[PoolSpec, ...] = ()
    headers: tuple[HeaderSpec, ...] = ()
    endpoints: dict[str, EndpointCost] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _pools_exist(self) -> RateLimitSpec:
        names = [pool.name for pool in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        known = set(names)
        if self.default_pool is not None and self.default_pool not in known:
            raise ValueError(f"default_pool {self.default_pool!r} is not one of the pools {sorted(known)}")
        if self.pools and self.default_pool is None:
            raise ValueError("default_pool is required when pools are declared")
        seen: set[str] = set()
        for header in self.headers:
            if header.pool is not None and header.pool not in known:
                raise ValueError(f"header {header.name!r} names unknown pool {header.pool!r}")
            if header.name.lower() in seen:  # HTTP header names are case-insensitive
                raise ValueError(f"header {header.name!r} is declared twice")
            seen.add(header.name.lower())
        for endpoint, cost in self.endpoints.items():
            if endpoint not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {endpoint!r}; endpoints are {', '.join(ENDPOINTS)}")
            for pool in (cost.pool, *cost.also):
                if pool is not None and pool not in known:
                    raise ValueError(f"endpoint {endpoint!r} names unknown pool {pool!r}")
        return self

    def pool_of(self, endpoint: str) -> str | None:
        """The pool an endpoint's ``weight`` is charged to."""
        cost = self.endpoints.get(ENDPOINT_ALIASES.get(endpoint, endpoint))
        if cost is not None and cost.pool is not None:
            return cost.pool
        return self.default_pool

    def weight_of(self, endpoint: str) -> float:
        """The default weight of one call of ``endpoint`` in its own pool."""
        cost = self.endpoints.get(ENDPOINT_ALIASES.get(endpoint, endpoint))
        return cost.weight if cost is not None else self.default_weight


class LookupSpec(_Model):
    """How to reach an order by its client order id through a unified ccxt method.

    ``keep``: create_order params that choose the order's endpoint (KuCoin ``hf``, a margin mode):
    carried to the lookup, or it asks an endpoint that never held the order. ``trigger``: the lookup
    param set true for an order that ``trigger_params`` made a trigger order (KuCoin keeps those in
    a book of their own), on markets of ``trigger_markets`` types only (empty: all).
    """

    method: Literal["fetch_order", "cancel_order"]
    param: str = Field(min_length=1)
    keep: tuple[str, ...] = ()
    trigger: str | None = None
    trigger_params: tuple[str, ...] = ()
    trigger_markets: tuple[str, ...] = ()

    def routing(self, placed_with: Mapping[str, Any] | None, market_type: str | None) -> dict[str, Any]:
        """The params, beside the id, that reach the order ``placed_with`` (its create params) made."""
        if not isinstance(placed_with, Mapping):
            return {}
        routed = {name: placed_with[name] for name in self.keep if placed_with.get(name) is not None}
        if (
            self.trigger is not None
            and any(placed_with.get(name) is not None for name in self.trigger_params)
            and (not self.trigger_markets or market_type in self.trigger_markets)
        ):
            routed[self.trigger] = True
        return routed


class LookupCall(NamedTuple):
    """A ccxt call to make: ``getattr(exchange, method)(*args, params=params)``."""

    method: str
    args: tuple[Any, ...]
    params: dict[str, Any]


class ClientOrderIdSpec(_Model):
    """The exchange's client order id: parameter name, syntax, uniqueness and how to look one up."""

    param: str = Field(min_length=1)
    accepted_params: tuple[str, ...] = ()
    format: Literal["token", "uuid"] = "token"
    prefix: str = "hd"
    max_length: Integer = Field(ge=8, le=128)
    pattern: re.Pattern[str]
    rule: str = Field(min_length=1)
    unique_among: Literal["open_orders", "all_orders", "unknown"] = "unknown"
    visibility_lag_ms: Integer = Field(ge=0, le=60_000)
    lookup: LookupSpec
    cancel: LookupSpec
    # the create_order param (true) that makes ccxt send a test order: validated, never placed,
    # answered without an order id (Binance spot's POST /api/v3/order/test answers {})
    test_param: str | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _param_is_accepted(self) -> ClientOrderIdSpec:
        if self.accepted_params and self.param not in self.accepted_params:
            raise ValueError(f"param {self.param!r} must be listed in accepted_params")
        if self.lookup.method != "fetch_order" or self.cancel.method != "cancel_order":
            raise ValueError("lookup must use fetch_order and cancel must use cancel_order")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Every parameter name a caller may use for the id, the canonical one first."""
        rest = tuple(name for name in self.accepted_params if name != self.param)
        return (self.param, *rest)

    def is_valid(self, client_order_id: str) -> bool:
        """Whether ``client_order_id`` satisfies the exchange's rule."""
        return len(client_order_id) <= self.max_length and self.pattern.fullmatch(client_order_id) is not None

    def lookup_call(
        self,
        client_order_id: str,
        symbol: str | None,
        placed_with: Mapping[str, Any] | None = None,
        market_type: str | None = None,
    ) -> LookupCall:
        """The ccxt call that fetches the order placed with ``client_order_id``; with its create
        params (``placed_with``) and market type, on the endpoint that holds such an order."""
        params = {**self.lookup.routing(placed_with, market_type), self.lookup.param: client_order_id}
        return LookupCall(self.lookup.method, (None, symbol), params)

    def cancel_call(self, client_order_id: str, symbol: str | None) -> LookupCall:
        """The ccxt call that cancels the order placed with ``client_order_id``."""
        return LookupCall(self.cancel.method, (None, symbol), {self.cancel.param: client_order_id})


class ClockSpec(_Model):
    """Whether the exchange checks request timestamps, in which window, and how ccxt resyncs."""

    checks_timestamp: Flag
    window_ms: Integer | None = Field(default=None, gt=0)
    max_window_ms: Integer | None = Field(default=None, gt=0)
    window_option: str | None = None
    resync: Literal["load_time_difference", "widen_window", "none"]
    adjust_option: str | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _resync_possible(self) -> ClockSpec:
        if self.resync == "widen_window" and (self.window_option is None or self.max_window_ms is None):
            raise ValueError("resync 'widen_window' needs window_option and max_window_ms")
        if (
            self.window_ms is not None
            and self.max_window_ms is not None
            and self.window_ms > self.max_window_ms
        ):
            raise ValueError(f"window_ms {self.window_ms} is over max_window_ms {self.max_window_ms}")
        return self


_TICKER_PRICES = ("bid", "ask", "last", "close", "open", "high", "low")


class MarketDataSpec(_Model):
    """What this exchange's market-data answers always hold, so that an answer without it is refused
    under policy ``raise`` (``hardened.quality``): facts about the exchange, not tunable limits.

    ``ticker_prices``: unified ticker fields the exchange sends with a positive value for every
    market that trades (ccxt's ``omit_zero`` turns a zero into None, so a zeroed price arrives as
    None and only this list tells it from a field the exchange never sends).
    ``continuous_candles``: the exchange sends a candle for every interval, traded or not, so a
    gap, a stale last candle or an empty answer in a window that reaches now is impossible (KuCoin
    skips intervals without trades: false there).
    """

    ticker_prices: tuple[str, ...] = ()
    continuous_candles: Flag = False
    source: str = ""

    @field_validator("ticker_prices")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(_TICKER_PRICES))
        if unknown:
            raise ValueError(f"unknown ticker price field(s) {unknown}; one of {', '.join(_TICKER_PRICES)}")
        return value


class ExchangeProfile(_Model):
    """Everything hardened knows about one exchange, validated from its TOML file."""

    exchange: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    ccxt_version: str = Field(min_length=1)
    generic: Flag = False
    notes: tuple[str, ...] = ()
    error_payload: ErrorPayload = Field(default_factory=ErrorPayload)
    errors: tuple[ErrorRule, ...] = ()
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    client_order_id: ClientOrderIdSpec
    clock: ClockSpec
    market_data: MarketDataSpec = Field(default_factory=MarketDataSpec)

    @model_validator(mode="after")
    def _rule_names_and_pools(self) -> ExchangeProfile:
        names = [rule.name for rule in self.errors]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"error rule names must be unique, repeated: {duplicates}")
        pools = {pool.name for pool in self.rate_limit.pools}
        for rule in self.errors:
            if rule.pool is not None and rule.pool not in pools:
                raise ValueError(f"error rule {rule.name!r} names unknown pool {rule.pool!r}")
        return self

    def classify_error(
        self, code: str | int | None = None, message: str = "", http_status: int | None = None
    ) -> ErrorRule | None:
        """The first rule covering this answer (code, message, HTTP status), or None if none does."""
        text_code = None if code is None else str(code)
        for rule in self.errors:
            if rule.matches(text_code, message, http_status):
                return rule
        return None

    def error_fields(self, text: str) -> tuple[str | None, str]:
        """The exchange's error code and message read from the JSON object inside ``text``.

        ccxt's error messages carry the body (``binance {"code":-1003,"msg":"..."}``); a text without
        a JSON object gives no code and the whole text as the message.
        """
        found = _JSON_OBJECT.search(text)
        if found is None:
            return None, text
        try:
            payload = json.loads(found.group(0))
        except ValueError:
            return None, text
        if not isinstance(payload, dict):
            return None, text
        code = _first(payload, self.error_payload.code_keys)
        message = _first(payload, self.error_payload.message_keys)
        code_text = None if code is None else str(code)
        if code_text is not None and code_text in self.error_payload.success_codes:
            code_text = None
        return code_text, "" if message is None else str(message)

    def classify_text(self, text: str, http_status: int | None = None) -> ErrorRule | None:
        """Classify an error body or a ccxt error message (see ``error_fields``)."""
        code, message = self.error_fields(text)
        return self.classify_error(code, message, http_status)

    def classify_exception(self, exc: BaseException) -> ErrorRule | None:
        """Classify a ccxt exception by the exchange code, message and HTTP status in its text."""
        return self.classify_text(str(exc), http_status_of(exc))


def _first(payload: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = payload.get(key)
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------------------------------------------
# Loading


def profile_dir() -> Traversable:
    """Where the profiles live: the installed ``hardened._adapters`` package, else the repo folder.

    The fallback covers an editable install in which setuptools does not map ``adapters/`` to
    ``hardened._adapters`` (and a source checkout run without installing).
    """
    try:
        root = importlib.resources.files("hardened._adapters")
    except ModuleNotFoundError:
        root = None
    if root is not None and any(entry.name.endswith(".toml") for entry in root.iterdir()):
        return root
    fallback = Path(__file__).resolve().parent.parent / "adapters"
    if not fallback.is_dir():
        raise ProfileError(f"no exchange profiles: neither hardened._adapters nor {fallback} exists")
    return fallback


def _format_validation(path: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: field {location}: {item['msg']}")
    return "\n".join(lines)


def _parse(path: str, text: str, expected_exchange: str | None) -> ExchangeProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    try:
        profile = ExchangeProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_format_validation(path, exc)) from exc
    if expected_exchange is not None and profile.exchange != expected_exchange:
        raise ProfileError(
            f"{path}: field exchange: is {profile.exchange!r} but the file is named for {expected_exchange!r}"
        )
    return profile


def load_profile_file(path: str | Path) -> ExchangeProfile:
    """Load and validate one profile file; a bad file raises ``ProfileError`` naming file and field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{file}: cannot read profile: {exc}") from exc
    return _parse(str(file), text, file.stem)


def available_profiles(directory: str | Path | None = None) -> tuple[str, ...]:
    """The exchange ids that have a profile file, sorted."""
    root: Traversable = Path(directory) if directory is not None else profile_dir()
    ids = (entry.name[: -len(".toml")] for entry in root.iterdir() if entry.name.endswith(".toml"))
    return tuple(sorted(exchange for exchange in ids if _EXCHANGE_ID.match(exchange)))


@functools.lru_cache(maxsize=256)
def load_profile(exchange_id: str, directory: str | Path | None = None) -> ExchangeProfile:
    """The validated profile of ``exchange_id`` (cached); a generic default when it has no file."""
    if not _EXCHANGE_ID.match(exchange_id):
        raise ProfileError(f"exchange id {exchange_id!r} is not a ccxt exchange id")
    root: Traversable = Path(directory) if directory is not None else profile_dir()
    entry = root.joinpath(f"{exchange_id}.toml")
    if not entry.is_file():
        return _generic_profile(exchange_id)
    return _parse(str(entry), entry.read_text(encoding="utf-8"), exchange_id)


def _generic_profile(exchange_id: str) -> ExchangeProfile:
    """A profile for an exchange without a file: HTTP-status rules only, a conservative id syntax."""
    http = "RFC 9110 status semantics; no exchange-specific codes known"
    return ExchangeProfile.model_validate(
        {
            "exchange": exchange_id,
            "name": f"{exchange_id} (generic profile)",
            "ccxt_version": "any",
            "generic": True,
            "notes": ["No profile file: error codes are left to ccxt's classes, no pools are tracked."],
            "errors": [
                {
                    "name": "http_ip_banned",
                    "http_status": [418],
                    "kind": "ban",
                    "action": "backoff_until_reset",
                    "source": "ccxt default httpExceptions: 418 DDoSProtection",
                },
                {
                    "name": "http_rate_limited",
                    "http_status": [429],
                    "kind": "rate_limit",
                    "action": "backoff_until_reset",
                    "backoff_s": 1.0,
                    "source": f"{http}: 429 Too Many Requests, Retry-After (1 s when absent: our choice)",
                },
                {
                    "name": "http_unavailable",
                    "http_status": [503],
                    "kind": "transient",
                    "action": "retry",
                    "ambiguous": True,
                    "source": f"{http}: 503 Service Unavailable",
                },
                {
                    "name": "http_server_error",
                    "http_status": [500, 502, 504],
                    "kind": "transient",
                    "action": "retry",
                    "ambiguous": True,
                    "source": f"{http}: 5xx, the request may have been processed",
                },
            ],
            "client_order_id": {
                "param": "clientOrderId",
                "accepted_params": ["clientOrderId"],
                "format": "token",
                "max_length": 32,
                "pattern": "^[A-Za-z0-9]{1,32}$",
                "rule": "1 to 32 letters and digits (a syntax most exchanges accept)",
                "unique_among": "unknown",
                "visibility_lag_ms": 2000,
                "lookup": {"method": "fetch_order", "param": "clientOrderId"},
                "cancel": {"method": "cancel_order", "param": "clientOrderId"},
                "source": "ccxt unified params.clientOrderId; syntax chosen to fit the strictest common rule",
            },
            "clock": {
                "checks_timestamp": True,
                "resync": "load_time_difference",
                "adjust_option": "adjustForTimeDifference",
                "source": "ccxt Exchange.load_time_difference(); whether nonce() uses it varies by exchange",
            },
        }
    )
