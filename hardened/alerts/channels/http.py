"""One JSON POST with a timeout, for the webhook and Telegram channels (stdlib ``urllib``).

urllib rather than aiohttp: the channels run in their own sender threads, where a blocking call
with a timeout is the simplest correct thing and needs no event loop. Errors never include the
URL (it may hold a bot token or be a secret webhook address).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from hardened.alerts.channels.base import DeliveryError

__all__ = ["check_url", "post_json"]

_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def check_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL; ValueError naming ``what`` otherwise (no URL shown)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an absolute http:// or https:// URL")
    return url


def post_json(url: str, payload: Any, timeout: float, what: str) -> tuple[int, bytes]:
    """POST ``payload`` as JSON; returns (status, body) for 2xx, raises ``DeliveryError`` otherwise."""
    data = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "hardened-alerts/1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(65_536)
    except urllib.error.HTTPError as exc:
        body = exc.read(4096) if exc.fp is not None else b""
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None, body)
        raise DeliveryError(
            f"{what}: HTTP {exc.code}",
            retryable=exc.code in _RETRYABLE,
            retry_after=retry_after,
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{what}: {type(reason).__name__}: {reason}", retryable=True) from None


def _retry_after(header: str | None, body: bytes) -> float | None:
    """Seconds to wait from a Retry-After header or Telegram's ``parameters.retry_after``."""
    if header:
        with contextlib.suppress(ValueError):  # an HTTP-date form: fall back to the body
            return max(0.0, float(header))
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(parsed, dict):
        value = (parsed.get("parameters") or {}).get("retry_after")
        if isinstance(value, int | float):
            return max(0.0, float(value))
    return None
