"""``AlertConfig``: channels, credentials, cooldowns, rate limits and escalation, validated once.

Sources, highest first: keyword arguments, the seed documents' environment variables, a TOML or
JSON file shaped like the seeds' ``monitoring_config.json`` (``AlertConfig.from_file(path)`` or
``ALERT_CONFIG_FILE``; a TOML file may keep it under an ``[alerts]`` table, beside ``[hardened]``),
then the defaults. An unknown key in the file is an error, except the seeds' switches for other
parts (``enabled``, ``check_interval``, ``enable_*``).

| environment | field |
| --- | --- |
| ``ALERT_CHANNELS`` (``log,email,telegram,webhook``) | ``alert_channels`` |
| ``ALERT_COOLDOWN`` (seconds) | ``alert_cooldown`` |
| ``ALERT_EMAIL_USER``, ``ALERT_EMAIL_PASS``, ``ALERT_EMAIL_FROM``, ``ALERT_EMAIL_TO`` | ``email_config`` |
| ``ALERT_SMTP_SERVER``, ``ALERT_SMTP_PORT``, ``ALERT_SMTP_SECURITY`` (``ssl`` on 465) | ``email_config`` |
| ``TELEGRAM_ALERT_BOT_TOKEN``, ``TELEGRAM_ALERT_CHAT_IDS`` | ``telegram_config`` |
| ``TELEGRAM_ALERT_BASE_URL`` (a Bot API server of your own) | ``telegram_config`` |
| ``ALERT_WEBHOOK_URLS``, ``ALERT_WEBHOOK_FORMAT`` (``json`` or ``slack``) | ``webhook_config`` |

Lists in the environment are comma-separated; an ``ALERT_*`` or ``TELEGRAM_ALERT_*`` name not in
this table is warned about (a typo), and a channel given half of what it needs is an error. The
password and the bot token are ``SecretStr``: they show as ``**********`` in a repr, a dump or an
error. An invalid value raises ``hardened.config.ConfigError`` naming the field.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hardened.alerts.alert import Level
from hardened.alerts.channels.http import check_sendable, check_url
from hardened.alerts.escalation import DEFAULT_RULES, EscalationRule
from hardened.alerts.rules import ErrorRateRule, HealthRule
from hardened.alerts.throttle import DEFAULT_RATE_LIMITS, RateLimit
from hardened.config import ConfigError, Float, Int, holds_secret, unknown_setting, warn_unknown_environment

__all__ = ["AlertConfig", "EmailConfig", "TelegramConfig", "WebhookConfig"]

LevelName = Literal["info", "warning", "error", "critical"]

_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("hardened_alert_file", default=None)

# environment variable -> (path in the configuration, is a comma-separated list)
ENVIRONMENT: dict[str, tuple[tuple[str, ...], bool]] = {
    "ALERT_CHANNELS": (("alert_channels",), True),
    "ALERT_COOLDOWN": (("alert_cooldown",), False),
    "ALERT_EMAIL_USER": (("email_config", "username"), False),
    "ALERT_EMAIL_PASS": (("email_config", "password"), False),
    "ALERT_EMAIL_FROM": (("email_config", "from_email"), False),
    "ALERT_EMAIL_TO": (("email_config", "to_emails"), True),
    "ALERT_SMTP_SERVER": (("email_config", "smtp_server"), False),
    "ALERT_SMTP_PORT": (("email_config", "smtp_port"), False),
    "ALERT_SMTP_SECURITY": (("email_config", "security"), False),
    "TELEGRAM_ALERT_BOT_TOKEN": (("telegram_config", "bot_token"), False),
    "TELEGRAM_ALERT_CHAT_IDS": (("telegram_config", "chat_ids"), True),
    "TELEGRAM_ALERT_BASE_URL": (("telegram_config", "base_url"), False),
    "ALERT_WEBHOOK_URLS": (("webhook_config", "urls"), True),
    "ALERT_WEBHOOK_FORMAT": (("webhook_config", "format"), False),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmailConfig(_Section):
    """SMTP delivery (the seeds' ``email_config``)."""

    smtp_server: str | None = None
    smtp_port: Int = Field(587, ge=1, le=65_535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = Field(None, repr=False)
    from_email: str | None = None
    to_emails: list[str] = Field(default_factory=list)
    ca_file: str | None = None  # a CA bundle to verify the server with (self-signed relays)
    subject_prefix: str = "[hardened]"

    @property
    def configured(self) -> bool:
        """True when there is a server and somebody to write to."""
        return bool(self.smtp_server and self.to_emails)

    @model_validator(mode="after")
    def _security_of_the_port(self) -> EmailConfig:
        """Port 465 is SMTPS (TLS from the first byte): with no ``security`` given, use ``ssl``
        there. The default, STARTTLS, would wait for a greeting the server never sends in clear,
        and every mail fail after the timeout with nothing said about the port."""
        if "security" not in self.model_fields_set and self.smtp_port == 465:
            object.__setattr__(self, "security", "ssl")
        return self

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(
                "no such file (a PEM bundle of the CAs that signed the SMTP server's certificate)"
            )
        return value

    @field_validator("to_emails")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address or any(c.isspace() for c in address.strip()):
                raise ValueError(f"{address!r} is not an e-mail address")
        return [a.strip() for a in value]

    @field_validator("from_email")
    @classmethod
    def _from_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c < " " or c == "\x7f" for c in value) or "@" not in parseaddr(value)[1]:
            raise ValueError("not an e-mail address (one address, 'Name <a@b>' allowed, no line breaks)")
        return value.strip()

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c < " " or c == "\x7f" for c in value):  # a header: a line break would end it
            raise ValueError("must not contain line breaks or control characters")
        return value


class TelegramConfig(_Section):
    """Telegram Bot API delivery (the seeds' ``telegram_config``)."""

    bot_token: SecretStr | None = Field(None, repr=False)
    chat_ids: list[str] = Field(default_factory=list)
    base_url: str = "https://api.telegram.org"

    @property
    def configured(self) -> bool:
        """True when there is a token and a chat."""
        return bool(self.bot_token and self.bot_token.get_secret_value() and self.chat_ids)

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list | tuple) else value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_url(value, "base_url")

    @field_validator("bot_token")
    @classmethod
    def _token_sendable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_sendable(value.get_secret_value(), "bot_token")  # it goes into the URL's path
        return value


class WebhookConfig(_Section):
    """JSON POST delivery (the seeds' ``webhook_config``); ``format="slack"`` for Slack's shape."""

    urls: list[SecretStr] = Field(default_factory=list, repr=False)
    format: Literal["json", "slack"] = "json"

    @property
    def configured(self) -> bool:
        """True when there is at least one URL."""
        return bool(self.urls)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, url in enumerate(value):
            check_url(url.get_secret_value(), f"url #{i + 1}")
        return value


class RateLimitConfig(_Section):
    """At most ``count`` alerts of a level in ``window_s`` seconds."""

    count: Int = Field(ge=1, le=100_000)
    window_s: Float = Field(gt=0, le=86_400)


class EscalationConfig(_Section):
    """Alerts of ``min_level`` or worse go to ``channel`` after ``delay_s`` if still firing."""

    channel: Literal["log", "webhook", "email", "telegram"]
    min_level: LevelName
    delay_s: Float = Field(0.0, ge=0, le=86_400)


class ErrorRateConfig(_Section):
    """Errors per minute, or errors counted in a window, that raise an ``error_rate`` alert."""

    per_minute: Int = Field(5, ge=1, le=1_000_000)
    count: Int = Field(10, ge=1, le=1_000_000)
    window_s: Float = Field(300.0, gt=0, le=86_400)


def _default_rate_limits() -> dict[str, RateLimitConfig]:
    return {
        level.name.lower(): RateLimitConfig(count=limit.count, window_s=limit.window_s)
        for level, limit in DEFAULT_RATE_LIMITS.items()
    }


def _default_escalation() -> list[EscalationConfig]:
    return [
        EscalationConfig(channel=r.channel, min_level=r.min_level.name.lower(), delay_s=r.delay_s)  # type: ignore[arg-type]
        for r in DEFAULT_RULES
    ]


class _EnvSource(PydanticBaseSettingsSource):
    """The seed documents' environment names, mapped onto the nested configuration."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        warn_unknown_environment(("ALERT_", "TELEGRAM_ALERT_"), {*ENVIRONMENT, "ALERT_CONFIG_FILE"})
        found: dict[str, Any] = {}
        for name, (path, is_list) in ENVIRONMENT.items():
            raw = os.environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            value: Any = [part.strip() for part in raw.split(",") if part.strip()] if is_list else raw.strip()
            target = found
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return found


class _FileSource(PydanticBaseSettingsSource):
    """A TOML/JSON file like the seeds' ``monitoring_config.json`` (or its ``[alerts]`` table)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _file.get()
        if path is None and os.environ.get("ALERT_CONFIG_FILE"):
            path = Path(os.environ["ALERT_CONFIG_FILE"])
        if path is None:
            return {}
        data = _read(Path(path))
        if isinstance(data.get("alerts"), dict):
            data = data["alerts"]
        # The seeds' monitoring_config.json carries switches for other parts: those are left to
        # their owners; any other unknown key is an error (a typo must not pass silently).
        return {k: v for k, v in data.items() if k not in _OTHER_PARTS}


# Keys of the seeds' monitoring_config.json that configure other parts than the alerts.
_OTHER_PARTS = frozenset(
    {
        "enabled",
        "check_interval",
        "enable_health_checks",
        "enable_performance_monitoring",
        "enable_error_tracking",
        "hardened",
    }
)


def _read(path: Path) -> dict[str, Any]:
    """The whole file as a dict (``hardened.config.load_file`` would unwrap a ``[hardened]`` table,
    and a hardened.toml may keep the client settings there beside an ``[alerts]`` table)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read alert configuration file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"alert configuration file {path} is not valid {path.suffix[1:].upper()}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"alert configuration file {path} must hold a table/object of settings")
    return data


class AlertConfig(BaseSettings):
    """Every setting of the alert dispatcher; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    alert_channels: list[Literal["log", "webhook", "email", "telegram"]] | None = Field(
        None,
        min_length=1,  # an empty list would send every alert nowhere
        description="channel kinds to use; None: log plus every channel that is configured",
    )
    alert_cooldown: Float = Field(300.0, ge=0, le=86_400, description="seconds between alerts of one key")
    # A level left out keeps its default limit; ``None`` (``null``) lifts it.
    rate_limits: dict[LevelName, RateLimitConfig | None] = Field(default_factory=_default_rate_limits)
    escalation: list[EscalationConfig] = Field(default_factory=_default_escalation)
    error_rate: ErrorRateConfig = Field(default_factory=ErrorRateConfig)
    health_min_score: Float = Field(60.0, ge=0, le=100, description="health score below which to warn")
    health_critical_score: Float = Field(40.0, ge=0, le=100, description="health score for an ERROR")
    health_interval: Float = Field(30.0, ge=0, le=3600, description="seconds between health checks; 0 off")
    queue_size: Int = Field(1000, ge=1, le=1_000_000, description="alerts queued per channel")
    inbox_size: Int = Field(10_000, ge=1, le=10_000_000, description="bus events waiting for the sender")
    delivery_attempts: Int = Field(4, ge=1, le=20, description="tries per alert and channel")
    retry_initial_delay: Float = Field(1.0, ge=0, le=600, description="first back-off, seconds")
    retry_max_delay: Float = Field(60.0, gt=0, le=3600, description="longest back-off, seconds")
    timeout: Float = Field(10.0, gt=0, le=300, description="seconds per HTTP or SMTP exchange")
    email_config: EmailConfig = Field(default_factory=EmailConfig)
    telegram_config: TelegramConfig = Field(default_factory=TelegramConfig)
    webhook_config: WebhookConfig = Field(default_factory=WebhookConfig)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _keep_default_limits(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = dict(_default_rate_limits())
        merged.update(value)
        return merged

    @model_validator(mode="after")
    def _consistent(self) -> AlertConfig:
        if self.health_critical_score > self.health_min_score:
            raise ValueError(
                f"health_critical_score ({self.health_critical_score}) must not exceed "
                f"health_min_score ({self.health_min_score})"
            )
        for kind in self.alert_channels or ():
            if kind == "email" and not self.email_config.configured:
                raise ValueError(
                    "alert_channels lists email but email_config.smtp_server and email_config.to_emails "
                    "are not both set (ALERT_SMTP_SERVER, ALERT_EMAIL_TO)"
                )
            if kind == "telegram" and not self.telegram_config.configured:
                raise ValueError(
                    "alert_channels lists telegram but telegram_config.bot_token and "
                    "telegram_config.chat_ids are not both set "
                    "(TELEGRAM_ALERT_BOT_TOKEN, TELEGRAM_ALERT_CHAT_IDS)"
                )
            if kind == "webhook" and not self.webhook_config.configured:
                raise ValueError(
                    "alert_channels lists webhook but webhook_config.urls is empty (ALERT_WEBHOOK_URLS)"
                )
        self._no_half_set_channel()
        self._every_channel_reached()
        mail = self.email_config
        if mail.configured and not mail.from_email and "@" not in (mail.username or ""):
            # the login name stands in for the sender only when it is an address ("apikey" is not)
            raise ValueError(
                "email_config.from_email (ALERT_EMAIL_FROM) is needed to send mail "
                "(the login name, if any, is not an e-mail address)"
            )
        return self

    def _every_channel_reached(self) -> None:
        """A channel in use that no escalation rule names would never get an alert: ``escalation``
        replaces the default rules, and a list written for one channel silently mutes the others.
        The log, when only added by default, may be left out."""
        reached = {rule.channel for rule in self.escalation}
        listed = set(self.alert_channels or ())
        for kind in self.channel_kinds():
            if kind not in reached and (kind != "log" or kind in listed):
                raise ValueError(
                    f"escalation has no rule for the {kind} channel, so it would never get an alert "
                    f"(the list replaces the defaults): add {{channel = {kind!r}, min_level = ...}} "
                    f"or leave {kind} out of alert_channels"
                )

    def _no_half_set_channel(self) -> None:
        """A channel given part of what it needs (a bot token without a chat, an SMTP server
        without recipients) is an error: left out silently, its alerts would go nowhere."""
        telegram, email = self.telegram_config, self.email_config
        token = bool(telegram.bot_token and telegram.bot_token.get_secret_value())
        if token != bool(telegram.chat_ids):
            missing = (
                "telegram_config.chat_ids (TELEGRAM_ALERT_CHAT_IDS)"
                if token
                else "telegram_config.bot_token (TELEGRAM_ALERT_BOT_TOKEN)"
            )
            raise ValueError(f"the telegram channel is half configured: {missing} is not set")
        if not email.configured and (
            email.smtp_server or email.to_emails or email.username or email.password
        ):
            missing = [
                name
                for name, given in (
                    ("email_config.smtp_server (ALERT_SMTP_SERVER)", email.smtp_server),
                    ("email_config.to_emails (ALERT_EMAIL_TO)", email.to_emails),
                )
                if not given
            ]
            verb = "are" if len(missing) > 1 else "is"
            raise ValueError(f"the email channel is half configured: {' and '.join(missing)} {verb} not set")

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
        return init_settings, _EnvSource(settings_cls), _FileSource(settings_cls)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> AlertConfig:
        """Load from a TOML or JSON file; the environment and ``overrides`` win over it."""
        token = _file.set(Path(path))
        try:
            return cls(**overrides)
        finally:
            _file.reset(token)

    # -- resolved views for the dispatcher ----------------------------------------------------------

    def channel_kinds(self) -> tuple[str, ...]:
        """The channel kinds in use: the listed ones, or log plus every configured one."""
        if self.alert_channels is not None:
            return tuple(dict.fromkeys(self.alert_channels))
        kinds = ["log"]
        kinds += [
            k
            for k, c in (
                ("webhook", self.webhook_config),
                ("email", self.email_config),
                ("telegram", self.telegram_config),
            )
            if c.configured
        ]
        return tuple(kinds)

    def rate_limit_rules(self) -> dict[Level, RateLimit]:
        """``rate_limits`` keyed by ``Level``."""
        return {
            Level.parse(n): RateLimit(c.count, c.window_s)
            for n, c in self.rate_limits.items()
            if c is not None
        }

    def escalation_rules(self) -> tuple[EscalationRule, ...]:
        """``escalation`` as rules."""
        return tuple(EscalationRule(e.channel, Level.parse(e.min_level), e.delay_s) for e in self.escalation)

    def error_rate_rule(self) -> ErrorRateRule:
        """``error_rate`` as a rule."""
        return ErrorRateRule(self.error_rate.per_minute, self.error_rate.count, self.error_rate.window_s)

    def health_rule(self) -> HealthRule:
        """The health thresholds as a rule."""
        return HealthRule(self.health_min_score, self.health_critical_score)

    def secrets(self) -> tuple[str, ...]:
        """Every credential value, for redaction of anything the alerts code writes."""
        values = [
            self.email_config.password.get_secret_value() if self.email_config.password else None,
            self.telegram_config.bot_token.get_secret_value() if self.telegram_config.bot_token else None,
            *(u.get_secret_value() for u in self.webhook_config.urls),
        ]
        return tuple(v for v in values if v)


def _describe(exc: ValidationError) -> str:
    """One line per bad field: its dotted name, the value (never a secret's, nor an unknown key's:
    ``pasword`` misspelt holds a password) and what is wrong."""
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        field = ".".join(str(p) for p in loc) or "configuration"
        if err["type"] == "extra_forbidden":
            lines.append(f"{field}: {unknown_setting(AlertConfig, loc)}")
            continue
        given = err.get("input")
        urls = any(p in ("urls", "base_url") for p in loc)  # a URL may hold a key or a token
        secret = urls or holds_secret(AlertConfig, loc) or _is_section(loc)
        shown = "" if secret or isinstance(given, dict | list) else f" = {given!r}"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{field}{shown}: {message}")
    return "invalid alert configuration: " + "; ".join(lines)


def _is_section(loc: tuple[Any, ...]) -> bool:
    """True for a whole channel section (``webhook_config``): a value given in its place is often
    the URL, token or password that belongs inside it, so it is never shown."""
    info = AlertConfig.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    annotation = info.annotation if info is not None else None
    return isinstance(annotation, type) and issubclass(annotation, _Section)
