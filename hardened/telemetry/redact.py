"""Keep credentials out of every log line, event, export and error message the wrapper builds.

ccxt writes the request URL into its error messages, and a signed Binance URL carries
``signature=...`` (other exchanges put keys in headers that can end up in verbose output). Two
defences: known credential values of the wrapped exchange are replaced wherever they appear, and
anything that looks like a signature, key, passphrase or authorization parameter is masked by
pattern, in ``key=value`` form, as a header (``KC-API-SIGN: ...``) or quoted as JSON or a Python
repr prints it (``"apiKey": "..."``, ``'X-MBX-APIKEY': '...'``). A key of structured data (a
context dict, a log event's field) is secret when ``is_secret_key`` says so.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterable, Mapping, MutableMapping
from functools import lru_cache
from typing import Any

__all__ = ["MASK", "SECRET_FIELDS", "is_secret_key", "redact_event", "redact_text", "redact_value"]

MASK = "***"
# Attributes of a ccxt exchange that hold credentials.
SECRET_FIELDS = ("apiKey", "secret", "password", "uid", "login", "privateKey", "walletAddress", "token")
# A key holding one of these anywhere is secret (``X-MBX-APIKEY``, ``api_secret``, ``bot_token``)...
_SECRET_KEY_PARTS = (
    "secret",
    "password",
    "passphrase",
    "passwd",
    "signature",
    "apikey",
    "api_key",
    "access_key",
    "token",
    "private",
    "authorization",
    "credential",
    "cookie",
)
# ...and one with one of these as a whole word (``KC-API-SIGN``, ``apiSign``, ``ALERT_EMAIL_PASS``),
# so that ``signal``, ``design``, ``passed`` or ``author`` stay readable.
_SECRET_KEY_WORDS = frozenset({"sign", "auth", "pass", "pwd"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
# Parameter names masked in free text, then what joins a name to its value: a closing quote (JSON,
# a dict's repr), ``=`` or ``:``, an opening quote, and an auth scheme (``Bearer``, ``Basic``).
_SECRET_PARAMS = re.compile(
    r"(?i)(signature|api_?key|apikey|secret|passphrase|password|token|access[-_]?key|access[-_]?signature"
    r"|authorization|kc-api-sign|kc-api-key|kc-api-passphrase|x-mbx-apikey|bitvavo-access-key"
    r"|bitvavo-access-signature)"
    r"([\"']?\s*[=:]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?)([^&\s\"',}]+)"
)
# A bearer token shown without its header name (token-like: not "the bearer of the news").
_BEARER = re.compile(r"(\b[Bb]earer\s+)([A-Za-z0-9._~+/=-]{8,})")
_BOT_PATH = re.compile(r"(/bot)([^/\s:?#]+:[^/\s?#]+)")  # Telegram's /bot<id>:<token>/sendMessage
# Every name the patterns mask contains one of these (case-insensitively): a text without any of
# them has nothing to mask, and skips the regular expressions.
_HINTS = ("sign", "key", "secret", "pass", "token", "auth", "bearer", "/bot")


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with known secret values and secret-looking parameters masked."""
    for value in secrets:
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, MASK)
    low = text.lower()
    if not any(hint in low for hint in _HINTS):
        return text
    text = _SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _BOT_PATH.sub(lambda m: m.group(1) + MASK, text)


@lru_cache(maxsize=4096)  # keys repeat; the bound keeps a caller with endless distinct keys harmless
def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` holds a credential (``apiKey``, ``KC-API-SIGN``, ``password``)."""
    low = _CAMEL.sub("_", key).lower()
    if any(part in low.replace("-", "_") for part in _SECRET_KEY_PARTS):
        return True
    return not _SECRET_KEY_WORDS.isdisjoint(_WORD_SPLIT.split(low))


def secrets_of(exchange: Any) -> tuple[str, ...]:
    """The credential values currently set on a ccxt exchange (read each time: users rotate keys)."""
    values = []
    for field in SECRET_FIELDS:
        value = getattr(exchange, field, None)
        if isinstance(value, str) and value:
            values.append(value)
    return tuple(values)


def redact_value(value: Any, secrets: Iterable[str | None] = (), depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named keys and secret-looking text masked, nested containers
    included (four levels; deeper ones become their redacted repr)."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= 4:
        return redact_text(repr(value), secrets)
    if isinstance(value, Mapping):
        return {
            k: MASK if is_secret_key(str(k)) else redact_value(v, secrets, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, secrets, depth + 1) for v in value]
    if isinstance(value, BaseException):  # its text may quote a signed URL
        return redact_text(f"{type(value).__name__}: {value}", secrets)
    return value


def _exception_text(value: Any) -> str | None:
    """The traceback ``exc_info`` stands for (an exception, an ``exc_info`` tuple, or True for the
    one being handled), as structlog's ``format_exc_info`` writes it; None when there is none."""
    if isinstance(value, BaseException):
        info: tuple[Any, Any, Any] = (type(value), value, value.__traceback__)
    elif isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        info = value
    elif value:
        info = sys.exc_info()
        if info[1] is None:
            return None
    else:
        return None
    return "".join(traceback.format_exception(*info)).rstrip("\n")


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask secret-named keys and secret-looking text in values (a dict or a
    list value too).

    An ``exc_info`` (``log.exception(...)``) is turned into its ``exception`` text here, so that the
    traceback is masked too: a renderer formatting it later would print a ccxt error's signed URL.
    """
    if "exc_info" in event:
        text = _exception_text(event.pop("exc_info"))
        if text is not None:
            event["exception"] = text
    for key, value in list(event.items()):
        if is_secret_key(key):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = redact_text(value)
        elif isinstance(value, Mapping | list | tuple | BaseException):
            event[key] = redact_value(value)
    return event
