"""Redis URLs: checked when the configuration is built, shown with the password masked.

Kept apart from ``connection.py`` so that ``hardened.config`` can validate ``redis_url`` without
importing redis (the in-memory default never imports it).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["HIDDEN", "check_redis_url", "redact_url"]

_SCHEMES = ("redis", "rediss", "unix")
HIDDEN = "<redis url hidden>"  # what is shown of a URL whose password cannot be told apart
# Query parameters redis-py passes on as connection arguments that name or prove an identity
# (``?password=...``, ``?username=...``, ``ssl_password``): their values are masked.
_SECRET_QUERY = re.compile(r"(?i)((?:^|[&;])[^=&;]*(?:pass|user|secret|token|auth)[^=&;]*=)[^&;]*")


def redact_url(url: str) -> str:
    """``url`` with its password and username parameters masked as ``***``.

    A URL that does not parse (a password with an unencoded ``/``, ``#``, ``?`` or ``@`` splits it
    where nobody can tell the password from the rest) is not shown at all: ``HIDDEN``.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the "port" is a piece of a password
    except ValueError:
        if "@" in url or "[" in url:  # the user part was cut short, or nothing parses at all
            return HIDDEN
        parts = urlsplit(url)  # no user part: only the port is wrong, and the URL can be shown
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    if "@" in parts.path or "@" in query or "@" in parts.fragment:
        return HIDDEN  # an "@" past the host: the user part was cut short by a reserved character
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if at and ":" in userinfo else parts.netloc
    if netloc == parts.netloc and query == parts.query:
        return url
    shown = urlunsplit(parts._replace(netloc=netloc, query=query))
    if not netloc and not shown.startswith(f"{parts.scheme}://"):  # unix:///path lost its "//"
        shown = f"{parts.scheme}://{shown[len(parts.scheme) + 1 :]}"
    return shown


def check_redis_url(url: str) -> str:
    """Return ``url`` if redis-py can connect with it, else raise ``ValueError`` saying why.

    The message shows the URL with its password masked, never the password itself.
    """
    shown = redact_url(url)
    encode = "percent-encode a / # ? @ or : in the password, e.g. / as %2F"
    try:
        parts = urlsplit(url)
    except ValueError:  # its text may quote the host part, a password included
        raise ValueError(
            f"{shown} is not a valid Redis URL: its host part does not parse ({encode})"
        ) from None
    try:
        port = parts.port
    except ValueError:  # its text quotes what was taken for the port: a piece of a password
        raise ValueError(
            f"{shown} is not a valid Redis URL: what follows the host is not a port number 0-65535 ({encode})"
        ) from None
    if shown == HIDDEN:
        raise ValueError(f"{shown} is not a valid Redis URL: an '@' follows the host ({encode})")
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
