"""Configuration: one validated object from kwargs, ``HARDENED_*`` environment variables and a file.

Precedence, highest first: keyword arguments, environment variables, the TOML/JSON file named by
``HardenedConfig.from_file`` or ``HARDENED_CONFIG_FILE``, then the defaults. Field names are the
ones users know from the seed documents (``max_retries``, ``failure_threshold``, ...). An invalid
value fails at construction with ``ConfigError`` naming the field and what is allowed.
Per-endpoint overrides (``endpoints={"ohlcv": {"max_retries": 5}}``) are resolved once per endpoint
into an ``EndpointPolicy`` so the hot path reads plain attributes.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hardened.shared.url import check_redis_url, redact_url

__all__ = ["ConfigError", "EndpointOverrides", "EndpointPolicy", "HardenedConfig", "QualityPolicy"]

QualityPolicy = Literal["raise", "repair", "warn", "off"]

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "hardened_config_file", default=None
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


class _Tunables(BaseModel):
    """The settings that may differ per endpoint; ``None`` in an override means "inherit"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: int | None = Field(None, ge=0, le=20, description="retries after the first attempt")
    initial_delay: float | None = Field(None, ge=0, le=60, description="first back-off, seconds")
    max_delay: float | None = Field(None, gt=0, le=600, description="longest back-off, seconds")
    exponential_base: float | None = Field(None, ge=1, le=10, description="back-off growth factor")
    jitter: float | None = Field(None, ge=0, le=60, description="random extra back-off, up to seconds")
    rate_limit_delay: float | None = Field(None, ge=0, le=600, description="least back-off after 429")
    failure_threshold: int | None = Field(None, ge=1, le=10_000, description="consecutive failures to trip")
    failure_rate_threshold: float | None = Field(None, gt=0, le=1, description="failure share to trip")
    minimum_calls: int | None = Field(None, ge=1, le=100_000, description="calls in window before rate trip")
    window_seconds: int | None = Field(None, ge=1, le=3600, description="failure-rate window, seconds")
    recovery_timeout: float | None = Field(None, gt=0, le=86_400, description="open time before a probe")
    success_threshold: int | None = Field(None, ge=1, le=1000, description="probe successes to close")
    half_open_max_calls: int | None = Field(None, ge=1, le=1000, description="probes in flight at once")
    quality_policy: QualityPolicy | None = None
    min_quality_score: float | None = Field(None, ge=0, le=100, description="score below which to act")
    cache_ttl: float | None = Field(None, ge=0, le=86_400, description="seconds an answer is reused")
    stale_if_error: float | None = Field(None, ge=0, le=604_800, description="oldest answer served on errors")


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
    max_retries: int = Field(3, ge=0, le=20, description="retries after the first attempt")
    initial_delay: float = Field(0.5, ge=0, le=60, description="first back-off, seconds")
    max_delay: float = Field(30.0, gt=0, le=600, description="longest back-off, seconds")
    exponential_base: float = Field(2.0, ge=1, le=10, description="back-off growth factor")
    jitter: float = Field(0.5, ge=0, le=60, description="random extra back-off, up to seconds")
    rate_limit_delay: float = Field(1.0, ge=0, le=600, description="least back-off after 429")
    retry_budget_ratio: float = Field(0.2, ge=0, le=10, description="retries per request in window")
    retry_budget_min: int = Field(10, ge=0, le=100_000, description="retries always allowed in window")
    retry_budget_window: float = Field(10.0, gt=0, le=3600, description="retry budget window, seconds")
    # Circuit breakers (pybreaker state): consecutive and failure-rate trips, bounded half-open probes.
    failure_threshold: int = Field(5, ge=1, le=10_000, description="consecutive failures to trip")
    failure_rate_threshold: float = Field(0.5, gt=0, le=1, description="failure share to trip")
    minimum_calls: int = Field(20, ge=1, le=100_000, description="calls in window before rate trip")
    window_seconds: int = Field(60, ge=1, le=3600, description="failure-rate window, seconds")
    recovery_timeout: float = Field(30.0, gt=0, le=86_400, description="open time before a probe")
    success_threshold: int = Field(2, ge=1, le=1000, description="probe successes to close")
    half_open_max_calls: int = Field(1, ge=1, le=1000, description="probes in flight at once")
    # Data quality.
    quality_policy: QualityPolicy = "raise"
    min_quality_score: float = Field(50.0, ge=0, le=100, description="score below which to act")
    # Cache: None means the per-endpoint defaults (markets long, tickers short, private never).
    cache_ttl: float | None = Field(None, ge=0, le=86_400, description="seconds an answer is reused")
    stale_if_error: float | None = Field(None, ge=0, le=604_800, description="oldest answer served on errors")
    cache_max_entries: int = Field(
        10_000, ge=0, le=10_000_000, description="answers held before LRU eviction"
    )
    # Orders placed exactly once: lookups by client order id after a lost answer.
    order_lookups: int = Field(5, ge=1, le=100, description="lookups before OrderStateUnknown")
    order_lookup_lag_ms: int | None = Field(None, ge=0, le=60_000, description="exchange visibility lag")
    order_resends: int = Field(3, ge=0, le=20, description="resends with the same id, refused if duplicate")
    # Rate-limit budgets read from the exchange's headers (hardened/ratelimit.py).
    rate_limit_pacing: bool = True
    rate_limit_headroom: float = Field(
        0.95, gt=0, le=1, description="share of each published limit the client (or group) may use"
    )
    # Shared state across processes and hosts (hardened/shared/): None keeps everything in memory.
    redis_url: str | None = Field(None, repr=False, description="redis://[:password@]host:port/db")
    redis_timeout_ms: int = Field(100, ge=1, le=5000, description="Redis connect and read timeout, ms")
    shared_cache: bool = False  # with redis_url: processes also share cached answers
    # Observability.
    log_attempts: bool = False  # a debug event for every attempt, not only failures and retries
    status_port: int | None = Field(None, ge=1, le=65_535, description="start the status server here")
    status_token: str | None = Field(None, min_length=8, repr=False, description="token for the stream")
    alerts: bool = False  # start the process's alert dispatcher (hardened.start_alerts) with the client
    endpoints: dict[str, EndpointOverrides] = Field(default_factory=dict)

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
        return self

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

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
    for item in info.metadata:
        low = getattr(item, "ge", getattr(item, "gt", low))
        high = getattr(item, "le", getattr(item, "lt", high))
    if low is None and high is None:
        return ""
    return f" (allowed {low} to {high}{'; ' + info.description if info.description else ''})"


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per bad field: name, value given, what is allowed."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "configuration"
        given = err.get("input")
        if err["loc"] == ("redis_url",) and isinstance(given, str):
            given = redact_url(given)  # a Redis URL may carry a password
        shown = "" if isinstance(given, dict) else f" = {given!r}"
        lines.append(f"{field}{shown}: {err['msg']}{_allowed(err['loc'])}")
    return "invalid hardened configuration: " + "; ".join(lines)
