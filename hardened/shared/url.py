"""Redis URLs: checked when the configuration is built, shown with the password masked.

Kept apart from ``connection.py`` so that ``hardened.config`` can validate ``redis_url`` without
importing redis (the in-memory default never imports it).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["check_redis_url", "redact_url"]

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***`` (works on malformed URLs too)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_redis_url(url: str) -> str:
    """Return ``url`` if redis-py can connect with it, else raise ``ValueError`` saying why.

    The message shows the URL with its password masked, never the password itself.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"{shown} is not a valid Redis URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"{shown} must start with redis://, rediss:// or unix:// (got scheme {parts.scheme!r})"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{shown} names no socket path (unix:///path/to/redis.sock)")
        return url
    if not parts.hostname:
        raise ValueError(f"{shown} names no host (redis://host:6379/0)")
    if port == 0:
        raise ValueError(f"{shown} has port 0; give the port Redis listens on")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"{shown} has database {db!r}; it must be a number (redis://host:6379/0)")
    return url
