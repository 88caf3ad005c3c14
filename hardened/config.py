"""Configuration: one validated object from kwargs, ``HARDENED_*`` environment variables and a file.

Precedence, highest first: keyword arguments, environment variables, the TOML/JSON file named by
``HardenedConfig.from_file`` or ``HARDENED_CONFIG_FILE``, then the defaults. Field names are the
ones users know from the seed documents (``max_retries``, ``failure_threshold``, ...). An invalid
value fails at construction with ``ConfigError`` naming the field and what is allowed (never the
value of a secret field or of an unknown key); a ``HARDENED_*`` environment variable that no
setting reads (a typo) is warned about once, naming the one probably meant.
Per-endpoint overrides (``endpoints={"ohlcv": {"max_retries": 5}}``) are resolved once per endpoint
into an ``EndpointPolicy`` so the hot path reads plain attributes.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import structlog
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from hardened.endpoints import endpoint_for, unified_methods
from hardened.shared.url import check_redis_url
from hardened.telemetry.redact import is_secret_key

__all__ = ["ConfigError", "EndpointOverrides", "EndpointPolicy", "HardenedConfig", "QualityPolicy"]

QualityPolicy = Literal["raise", "repair", "warn", "off"]

log = structlog.get_logger("hardened")
# HARDENED_* names read beside the settings' own (HARDENED_<FIELD>, HARDENED_ENDPOINTS__<...>):
# the settings file, the memory limit of the health score, and the test suite's switches.
OTHER_ENVIRONMENT = frozenset(
    {"HARDENED_CONFIG_FILE", "HARDENED_MEMORY_LIMIT_MB", "HARDENED_SIM_URL", "HARDENED_CHAOS_ORDERS"}
)
_warned_environment: set[str] = set()  # each unknown name is said once per process

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "hardened_config_file", default=None
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value (never a secret's)
    and what is allowed."""


def _refuse_bool(value: Any) -> Any:
    """``max_retries=True`` is a mistake, not 1: bools do not pass as numbers (strings from the
    environment still parse, which pydantic's strict mode would refuse)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the bool {value}")
    return value


Int = Annotated[int, BeforeValidator(_refuse_bool)]
Float = Annotated[FiniteFloat, BeforeValidator(_refuse_bool)]  # nan/inf: "should be a finite number"

# The endpoints users set most, listed in the message about an unknown one.
_COMMON_ENDPOINTS = (
    "markets",
    "ticker",
    "tickers",
    "ohlcv",
    "order_book",
    "trades",
    "balance",
    "order",
    "open_orders",
    "my_trades",
    "create_order",
    "cancel_order",
)


@cache
def known_endpoints() -> frozenset[str]:
    """Every endpoint name: a unified ccxt method's name without its ``fetch_`` prefix."""
    names = set()
    for method in set(unified_methods().values()):
        found = endpoint_for(method)
        if found is not None:
            names.add(found.name)
    return frozenset(names)


def _unknown_endpoint(name: str) -> str:
    """Why ``name`` is not an endpoint, with the one that was probably meant."""
    meant = endpoint_for(name)  # a method name given instead of its endpoint: fetch_ohlcv, fetchOHLCV
    guess = meant.name if meant is not None else None
    if guess is None:
        close = difflib.get_close_matches(name, sorted(known_endpoints()), n=1, cutoff=0.7)
        guess = close[0] if close else None
    hint = f" (did you mean '{guess}'?)" if guess else ""
    return (
        f"unknown endpoint '{name}'{hint}; an endpoint is a unified method name without its fetch_ "
        f"prefix, e.g. {', '.join(_COMMON_ENDPOINTS)} ({len(known_endpoints())} known)"
    )


class _Tunables(BaseModel):
    """The settings that may differ per endpoint; ``None`` in an override means "inherit"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: Int | None = Field(None, ge=0, le=20, description="retries after the first attempt")
    initial_delay: Float | None = Field(None, ge=0, le=60, description="first back-off, seconds")
    max_delay: Float | None = Field(None, gt=0, le=600, description="longest back-off, seconds")
    exponential_base: Float | None = Field(None, ge=1, le=10, description="back-off growth factor")
    jitter: Float | None = Field(None, ge=0, le=60, description="random extra back-off, up to seconds")
    rate_limit_delay: Float | None = Field(None, ge=0, le=600, description="least back-off after 429")
    failure_threshold: Int | None = Field(None, ge=1, le=10_000, description="consecutive failures to trip")
    failure_rate_threshold: Float | None = Field(None, gt=0, le=1, description="failure share to trip")
    minimum_calls: Int | None = Field(None, ge=1, le=100_000, description="calls in window before rate trip")
    window_seconds: Int | None = Field(None, ge=1, le=3600, description="failure-rate window, seconds")
    recovery_timeout: Float | None = Field(None, gt=0, le=86_400, description="open time before a probe")
    recovery_timeout_min: Float | None = Field(
        None, gt=0, le=86_400, description="first open time; doubles per failed probe up to recovery_timeout"
    )
    success_threshold: Int | None = Field(None, ge=1, le=1000, description="probe successes to close")
    half_open_max_calls: Int | None = Field(None, ge=1, le=1000, description="probes in flight at once")
    quality_policy: QualityPolicy | None = None
    min_quality_score: Float | None = Field(None, ge=0, le=100, description="score below which to act")
    cache_ttl: Float | None = Field(None, ge=0, le=86_400, description="seconds an answer is reused")
    stale_if_error: Float | None = Field(None, ge=0, le=604_800, description="oldest answer served on errors")
    call_deadline: Float | None = Field(None, gt=0, le=3600, description="whole call incl. retries, seconds")


class EndpointOverrides(_Tunables):
    """Per-endpoint overrides: any field left out inherits the client-wide value."""


class EndpointPolicy:
    """The resolved, immutable settings of one endpoint, read on the hot path as plain attributes."""

    __slots__ = tuple(_Tunables.model_fields)

    def __init__(self, values: dict[str, Any]) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("EndpointPolicy is immutable; change the HardenedConfig instead")

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"EndpointPolicy({fields})"


class _FileSource(PydanticBaseSettingsSource):
    """Reads settings from a TOML or JSON file (the ``[hardened]`` table of a TOML file if present)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get() or _env_path()
        return load_file(path) if path is not None else {}


def _env_path() -> Path | None:
    value = os.environ.get("HARDENED_CONFIG_FILE")
    return Path(value) if value else None


def load_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML or JSON settings file into a dict; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"configuration file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("hardened"), dict):
        data = data["hardened"]
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a table/object of settings")
    return data


class HardenedConfig(BaseSettings):
    """Every setting of a hardened client; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="HARDENED_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Retries (tenacity): exponential back-off with jitter, transient errors only.
    max_retries: Int = Field(3, ge=0, le=20, description="retries after the first attempt")
    initial_delay: Float = Field(0.5, ge=0, le=60, description="first back-off, seconds")
    max_delay: Float = Field(30.0, gt=0, le=600, description="longest back-off, seconds")
    exponential_base: Float = Field(2.0, ge=1, le=10, description="back-off growth factor")
    jitter: Float = Field(0.5, ge=0, le=60, description="random extra back-off, up to seconds")
    rate_limit_delay: Float = Field(1.0, ge=0, le=600, description="least back-off after 429")
    # Every call ends by this many seconds, retries and waits included (a trickling server too).
    call_deadline: Float = Field(60.0, gt=0, le=3600, description="whole call incl. retries, seconds")
    retry_budget_ratio: Float = Field(0.2, ge=0, le=10, description="retries per request in window")
    retry_budget_min: Int = Field(10, ge=0, le=100_000, description="retries always allowed in window")
    retry_budget_window: Float = Field(10.0, gt=0, le=3600, description="retry budget window, seconds")
    # Circuit breakers (pybreaker state): consecutive and failure-rate trips, bounded half-open probes.
    failure_threshold: Int = Field(5, ge=1, le=10_000, description="consecutive failures to trip")
    failure_rate_threshold: Float = Field(0.5, gt=0, le=1, description="failure share to trip")
    minimum_calls: Int = Field(20, ge=1, le=100_000, description="calls in window before rate trip")
    window_seconds: Int = Field(60, ge=1, le=3600, description="failure-rate window, seconds")
    recovery_timeout: Float = Field(30.0, gt=0, le=86_400, description="open time before a probe")
    # Open-state back-off (Polly's break-duration generator, resilience4j's exponential wait in open
    # state): a short outage is probed after 5 s, a long one no more often than recovery_timeout.
    recovery_timeout_min: Float = Field(
        5.0, gt=0, le=86_400, description="first open time; doubles per failed probe up to recovery_timeout"
    )
    success_threshold: Int = Field(2, ge=1, le=1000, description="probe successes to close")
    half_open_max_calls: Int = Field(1, ge=1, le=1000, description="probes in flight at once")
    # Data quality.
    quality_policy: QualityPolicy = "raise"
    min_quality_score: Float = Field(50.0, ge=0, le=100, description="score below which to act")
    # Cache: None means the per-endpoint defaults (markets long, tickers short, private never).
    cache_ttl: Float | None = Field(None, ge=0, le=86_400, description="seconds an answer is reused")
    stale_if_error: Float | None = Field(None, ge=0, le=604_800, description="oldest answer served on errors")
    cache_max_entries: Int = Field(
        10_000, ge=0, le=10_000_000, description="answers held before LRU eviction"
    )
    cache_max_bytes: Int = Field(
        64 * 1024 * 1024, ge=0, le=1 << 40, description="approximate bytes held before LRU eviction"
    )
    # Orders placed exactly once: lookups by client order id after a lost answer.
    order_lookups: Int = Field(5, ge=1, le=100, description="lookups before OrderStateUnknown")
    order_lookup_lag_ms: Int | None = Field(None, ge=0, le=60_000, description="exchange visibility lag")
    order_resends: Int = Field(3, ge=0, le=20, description="resends with the same id, refused if duplicate")
    # Rate-limit budgets read from the exchange's headers (hardened/ratelimit.py).
    rate_limit_pacing: bool = True
    rate_limit_headroom: Float = Field(
        0.95, gt=0, le=1, description="share of each published limit the client (or group) may use"
    )
    # Shared state across processes and hosts (hardened/shared/): None keeps everything in memory.
    redis_url: str | None = Field(None, repr=False, description="redis://[:password@]host:port/db")
    redis_timeout_ms: Int = Field(100, ge=1, le=5000, description="Redis connect and read timeout, ms")
    shared_cache: bool = False  # with redis_url: processes also share cached answers
    # The learning gate (hardened/learning): every call recorded; skipping is opt-in (gate_enabled)
    # because a fresh install has no data, and a skip changes what a bot sees: turn it on once
    # 'hardened train' shows the gate beats the breaker on your own calls.
    gate_enabled: bool = False
    gate_threshold: Float = Field(0.8, gt=0, le=1, description="failure probability at which to skip")
    gate_probe_share: Float = Field(0.05, ge=0, le=1, description="share of would-be skips sent as probes")
    gate_min_samples: Int = Field(500, ge=10, le=10_000_000, description="outcomes before the gate may skip")
    learning_record: bool = True  # record every call's outcome to the learning store
    learning_store: str | None = Field(
        default_factory=lambda: default_learning_store(), description="SQLite file; ':memory:' or None"
    )
    learning_max_rows: Int = Field(500_000, ge=1_000, le=100_000_000, description="rows kept in the store")
    learning_retention: Float = Field(
        7 * 86_400.0, ge=60, le=366 * 86_400.0, description="seconds a record is kept"
    )
    # Observability.
    log_attempts: bool = False  # a debug event for every attempt, not only failures and retries
    status_port: Int | None = Field(None, ge=1, le=65_535, description="start the status server here")
    status_token: str | None = Field(None, min_length=8, repr=False, description="token for the stream")
    alerts: bool = False  # start the process's alert dispatcher (hardened.start_alerts) with the client
    endpoints: dict[str, EndpointOverrides] = Field(default_factory=dict)

    @field_validator("endpoints")
    @classmethod
    def _known_endpoints(cls, value: dict[str, EndpointOverrides]) -> dict[str, EndpointOverrides]:
        unknown = [name for name in value if name not in known_endpoints()]
        if unknown:
            raise ValueError("; ".join(_unknown_endpoint(name) for name in unknown))
        return value

    @field_validator("learning_store")
    @classmethod
    def _learning_store_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "must name a SQLite file, or be ':memory:' (records in memory) or None (no store)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @model_validator(mode="after")
    def _delays_ordered(self) -> HardenedConfig:
        if self.initial_delay > self.max_delay:
            raise ValueError(
                f"initial_delay ({self.initial_delay}) must not exceed max_delay ({self.max_delay})"
            )
        for name, override in self.endpoints.items():  # an override combined with client-wide values
            first = override.initial_delay if override.initial_delay is not None else self.initial_delay
            most = override.max_delay if override.max_delay is not None else self.max_delay
            if first > most:
                raise ValueError(
                    f"endpoints.{name}: initial_delay ({first}) must not exceed max_delay ({most}), "
                    "counting the client-wide value where the endpoint sets none"
                )
        return self

    def __init__(self, **values: Any) -> None:
        known = {f"HARDENED_{name.upper()}" for name in type(self).model_fields} | OTHER_ENVIRONMENT
        warn_unknown_environment(("HARDENED_",), known, nested=("HARDENED_ENDPOINTS__",))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        except SettingsError as exc:  # a value pydantic-settings could not even decode (bad JSON)
            raise ConfigError(_describe_source(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> HardenedConfig:
        """Load settings from a TOML or JSON file; environment variables and ``overrides`` win."""
        token = _config_file.set(Path(path))
        try:
            return cls(**overrides)
        finally:
            _config_file.reset(token)

    def with_overrides(self, **overrides: Any) -> HardenedConfig:
        """A copy with ``overrides`` applied and validated again."""
        if not overrides:
            return self
        return type(self)(**{**self.model_dump(), **overrides})

    def for_endpoint(self, endpoint: str) -> EndpointPolicy:
        """The settings of ``endpoint``: its overrides on top of the client-wide values."""
        values = {name: getattr(self, name) for name in _Tunables.model_fields}
        override = self.endpoints.get(endpoint)
        if override is not None:
            values.update({k: v for k, v in override.model_dump().items() if v is not None})
        return EndpointPolicy(values)


def warn_unknown_environment(
    prefixes: tuple[str, ...], known: Iterable[str], nested: tuple[str, ...] = ()
) -> list[str]:
    """Warn (once per name) about environment variables starting with one of ``prefixes`` that no
    setting reads, naming the one probably meant (``HARDENED_MAX_RETRYS``: a typo would otherwise
    pass silently). Names only: a value may be a secret. Returns the unknown names."""
    known = {name.upper() for name in known}
    unknown = [
        name
        for name in os.environ
        if name.upper().startswith(prefixes)
        and name.upper() not in known
        and not name.upper().startswith(nested)
    ]
    for name in unknown:
        if name not in _warned_environment:
            _warned_environment.add(name)
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
            log.warning("unknown_environment_variable", variable=name, meant=close[0] if close else None)
    return unknown


def default_learning_store() -> str:
    """``$XDG_DATA_HOME/hardened/learning.db`` (``~/.local/share/...``), or under ``%LOCALAPPDATA%``.

    Three lines of the XDG rule rather than a dependency (platformdirs) for one path."""
    base = os.environ.get("XDG_DATA_HOME") or os.environ.get("LOCALAPPDATA")
    root = Path(base) if base else Path.home() / ".local" / "share"
    return str(root / "hardened" / "learning.db")


def _allowed(loc: tuple[Any, ...]) -> str:
    """`` (allowed 0 to 20)`` for a bounded field at ``loc``, else an empty string."""
    if len(loc) == 3 and loc[0] == "endpoints":
        info = _Tunables.model_fields.get(str(loc[2]))
    elif len(loc) == 1:
        info = HardenedConfig.model_fields.get(str(loc[0]))
    else:
        info = None
    if info is None:
        return ""
    low = high = None
    above = False  # the lower bound is excluded (gt): "above 0", not "0 to"
    for item in info.metadata:
        if getattr(item, "gt", None) is not None:
            low, above = item.gt, True
        elif getattr(item, "ge", None) is not None:
            low = item.ge
        high = getattr(item, "le", getattr(item, "lt", high))
    if low is None and high is None:
        return ""
    span = f"above {low}, up to {high}" if above else f"{low} to {high}"
    return f" (allowed {span}{'; ' + info.description if info.description else ''})"


def _describe_source(exc: SettingsError) -> str:
    """Name the environment variable (or source) whose value could not be decoded, and why."""
    found = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    cause = exc.__cause__ or exc.__context__
    why = f": {cause}" if cause is not None else ""
    if found is None:
        return f"invalid hardened configuration: {exc}{why}"
    field, source = found.groups()
    if source == "EnvSettingsSource":
        where = f"environment variable HARDENED_{field.upper()}"
    else:
        where = f"{field} (from {source})"
    return f"invalid hardened configuration: {where} is not valid JSON{why}"


# pydantic's error types for a value that is not the section (table) its field holds
_SECTION_ERRORS = frozenset({"dict_type", "model_type", "model_attributes_type", "dataclass_type"})


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per bad field: name, value given, what is allowed.

    The value is left out for a secret field (``status_token``, ``redis_url``: hidden from the
    repr), for an unknown key (``redis_uri`` misspelt holds what ``redis_url`` would) and for a
    bare value given where a section belongs (``endpoints = "redis://:pw@host"``: it may be any
    setting, a credential included)."""
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        field = ".".join(str(p) for p in loc) or "configuration"
        if err["type"] == "extra_forbidden":
            lines.append(f"{field}: {unknown_setting(HardenedConfig, loc)}")
            continue
        given = err.get("input")
        hidden = (
            holds_secret(HardenedConfig, loc) or isinstance(given, dict) or err["type"] in _SECTION_ERRORS
        )
        shown = "" if hidden else f" = {given!r}"
        lines.append(f"{field}{shown}: {err['msg']}{_allowed(loc)}")
    return "invalid hardened configuration: " + "; ".join(lines)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_along(
    model: type[BaseModel], loc: tuple[Any, ...]
) -> tuple[list[FieldInfo], type[BaseModel] | None]:
    """The fields an error location passes through, and the model holding its last part."""
    fields: list[FieldInfo] = []
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None:
            break
        info = current.model_fields.get(str(part))
        if info is None:
            continue  # a list index or a dict key: the model inside the container stays current
        fields.append(info)
        current = _model_in(info.annotation)
    if current is not None and loc and str(loc[-1]) in current.model_fields:
        fields.append(current.model_fields[str(loc[-1])])
    return fields, current


def holds_secret(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Whether the value at ``loc`` may be a credential: a field hidden from the repr on the way,
    or a part named like one (``password``, ``bot_token``)."""
    fields, _ = _fields_along(model, loc)
    return any(info.repr is False for info in fields) or any(is_secret_key(str(p)) for p in loc)


def unknown_setting(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """What is wrong with a key ``model`` has no field for, with the one probably meant; never its
    value (a misspelt ``pasword`` holds a password)."""
    _, holder = _fields_along(model, loc)
    names = sorted(holder.model_fields) if holder is not None else []
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6) if loc else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown setting{hint}; its value is not shown"
