"""Keep credentials out of every log line, event, export and error message the wrapper builds.

ccxt writes the request URL into its error messages, and a signed Binance URL carries
``signature=...`` (other exchanges put keys in headers that can end up in verbose output). Two
defences: known credential values of the wrapped exchange are replaced wherever they appear, and
anything that looks like a signature, key or passphrase parameter is masked by pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["MASK", "SECRET_FIELDS", "redact_event", "redact_text"]

MASK = "***"
# Attributes of a ccxt exchange that hold credentials.
SECRET_FIELDS = ("apiKey", "secret", "password", "uid", "login", "privateKey", "walletAddress", "token")
_SECRET_KEYS = re.compile(
    r"(?i)^(api_?key|secret|password|passphrase|signature|sign|private_?key|token|access[-_]?key)$"
)
_SECRET_PARAMS = re.compile(
    r"(?i)(signature|api_?key|apikey|secret|passphrase|password|token|access[-_]?key|access[-_]?signature"
    r"|kc-api-sign|kc-api-key|kc-api-passphrase|x-mbx-apikey|bitvavo-access-key|bitvavo-access-signature)"
    r"(\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with known secret values and secret-looking parameters masked."""
    for value in secrets:
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, MASK)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def secrets_of(exchange: Any) -> tuple[str, ...]:
    """The credential values currently set on a ccxt exchange (read each time: users rotate keys)."""
    values = []
    for field in SECRET_FIELDS:
        value = getattr(exchange, field, None)
        if isinstance(value, str) and value:
            values.append(value)
    return tuple(values)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask secret-named keys and secret-looking parameters in string values."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.match(key):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event
