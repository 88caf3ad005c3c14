"""One JSON POST with a timeout, for the webhook and Telegram channels (stdlib ``urllib``).

urllib rather than aiohttp: the channels run in their own sender threads, where a blocking call
with a timeout is the simplest correct thing and needs no event loop. Errors never include the
URL (it may hold a bot token or be a secret webhook address).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from hardened.alerts.channels import deadline as _deadline
from hardened.alerts.channels.base import DeliveryError

__all__ = ["check_sendable", "check_url", "post_json"]

_RETRYABLE = frozenset({408, 425, 429})
# Every 5xx is the server's trouble, often passing (Cloudflare, in front of Discord's webhooks,
# answers 520-524 while the origin is down), except these, which another try will not change.
_FINAL_5XX = frozenset({501, 505, 511})


def _retryable(code: int) -> bool:
    """Whether another try can help after HTTP ``code``."""
    return code in _RETRYABLE or (500 <= code < 600 and code not in _FINAL_5XX)


# What http.client refuses to put in a request line (its _contains_disallowed_url_pchar_re).
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")


def check_sendable(text: str, what: str, hint: str = "") -> str:
    """``text`` if it has no character http.client refuses in a request line; ValueError naming
    ``what`` otherwise (urllib's own error would quote the path, and a token with it)."""
    if _UNSENDABLE.search(text):
        raise ValueError(f"{what} must not contain spaces or control characters{hint}")
    return text


def check_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL that urllib can send; ValueError naming ``what``
    otherwise (no URL shown: it may hold a token)."""
    check_sendable(url, what, " (percent-encode them, e.g. a space as %20)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
    except ValueError:  # its text would quote a piece of the URL
        raise ValueError(f"{what} is not a valid URL (its host or port does not parse)") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an absolute http:// or https:// URL")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib follows a 301/302/303 to a POST with a GET that drops the body, and
    the alert would count as sent although no receiver got it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class _Watched:
    """Handler mixin: each connection it opens is watched by the calling thread's ``Deadline``."""

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        def connection(*args: Any, **kw: Any) -> Any:
            conn = http_class(*args, **kw)
            deadline = _deadline.current()
            if deadline is not None:
                deadline.watch(conn)
                connect = conn.connect

                def connect_then_check() -> None:
                    connect()
                    deadline.connected(conn)

                conn.connect = connect_then_check
            return conn

        return super().do_open(connection, req, **kwargs)  # type: ignore[misc]


class _HTTPHandler(_Watched, urllib.request.HTTPHandler):
    """urllib's plain HTTP handler under the send deadline."""


class _HTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    """urllib's HTTPS handler under the send deadline."""


_OPENER = urllib.request.build_opener(_NoRedirect, _HTTPHandler, _HTTPSHandler)


def post_json(url: str, payload: Any, timeout: float, what: str) -> tuple[int, bytes]:
    """POST ``payload`` as JSON; returns (status, body) for 2xx, raises ``DeliveryError`` otherwise
    (a redirect included: it is not followed)."""
    data = json.dumps(payload, default=str).encode("utf-8")
    deadline = _deadline.Deadline(timeout)  # the timeout bounds the whole exchange, not each read
    try:
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "hardened-alerts/1"},
        )
        with deadline, _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read(65_536)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:  # its Location is not shown: it may hold a token too
            raise DeliveryError(
                f"{what}: HTTP {exc.code} redirect not followed (it would drop the alert); "
                "configure the URL it redirects to",
                retryable=False,
            ) from None
        body = b""
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):  # cut by the deadline
            body = exc.read(4096) if exc.fp is not None else b""
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None, body)
        raise DeliveryError(
            f"{what}: HTTP {exc.code}",
            retryable=_retryable(exc.code),
            retry_after=retry_after,
        ) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise _failure(exc, what, timeout, deadline.expired) from None


def _failure(exc: Exception, what: str, timeout: float, expired: bool) -> DeliveryError:
    """The ``DeliveryError`` for an exchange that raised ``exc``; never quotes the URL."""
    if expired:  # the deadline shut the socket: whatever broke, it broke because time was up
        return DeliveryError(f"{what}: no complete answer within {timeout:g} s", retryable=True)
    if isinstance(exc, OSError):  # URLError included
        reason = getattr(exc, "reason", exc)
        return DeliveryError(f"{what}: {type(reason).__name__}: {reason}", retryable=True)
    if isinstance(exc, ValueError | http.client.InvalidURL):  # their refusals quote the URL
        return DeliveryError(f"{what}: invalid URL", retryable=False)
    # a garbled answer (bad status line): its text is theirs
    return DeliveryError(f"{what}: {type(exc).__name__}", retryable=True)


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
