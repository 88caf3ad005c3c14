"""Who may read the status stream: loopback by default, a token for anything else.

The token travels as ``?token=...`` (what a browser page can do) or ``Authorization: Bearer ...``
and is compared in constant time. Without a token the server only binds to loopback, and then
refuses browser origins and ``Host`` headers other than the loopback ones, so that a web page
the operator happens to visit can neither open the websocket nor read the HTTP endpoints through
DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

__all__ = ["LOOPBACK_NAMES", "host_allowed", "is_loopback", "token_from", "token_matches"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_from(target: str, headers: Mapping[str, str]) -> str | None:
    """The token a request carries: ``Authorization: Bearer <token>``, else ``?token=<token>``."""
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = urlsplit(target).query
    if query:
        values = parse_qs(query).get("token")
        if values:
            return values[0]
    return None


def token_matches(supplied: str | None, expected: str) -> bool:
    """Constant-time comparison of the supplied token with the expected one."""
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))


def host_allowed(host_header: str | None, extra: Iterable[str] = ()) -> bool:
    """True when a ``Host`` header names this machine's loopback (or one of ``extra``)."""
    if not host_header:
        return False
    value = host_header.strip().lower()
    if value.startswith("["):
        name = value[1 : value.find("]")] if "]" in value else value[1:]
    else:
        name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return is_loopback(name) or name in {h.lower() for h in extra}
