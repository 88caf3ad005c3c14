"""Which ccxt methods are unified exchange calls, and the endpoint each one belongs to.

An endpoint is the unified method name without its ``fetch_`` prefix (``fetch_ohlcv`` -> ``ohlcv``,
``load_markets`` -> ``markets``); each exchange x endpoint gets its own breaker, stats and policy.
Methods that change state on the exchange (orders, transfers, leverage) are not idempotent: they
are never retried blindly, because a resend after a lost answer can place a second order.
"""

from __future__ import annotations

import re
from functools import cache

import ccxt

__all__ = ["Endpoint", "endpoint_for", "unified_methods"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Names that change state on the exchange: a second send is a second action.
_MUTATING_PREFIXES = (
    "create_",
    "cancel_",
    "edit_",
    "withdraw",
    "transfer",
    "set_",
    "add_margin",
    "reduce_margin",
    "borrow_",
    "repay_",
    "close_",
)
# Names ccxt lists in ``has`` that are not REST calls or not worth guarding.
_NOT_UNIFIED_PREFIXES = ("watch", "un_watch", "sign_in")
_EXTRA_METHODS = ("load_markets", "fetch_markets", "fetch_time", "fetch_currencies")
_ENDPOINT_ALIASES = {"load_markets": "markets", "fetch_markets": "markets"}


class Endpoint:
    """A unified method's endpoint name and whether repeating it is safe."""

    __slots__ = ("idempotent", "is_order", "method", "name")

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = _ENDPOINT_ALIASES.get(method) or method.removeprefix("fetch_")
        self.idempotent = not method.startswith(_MUTATING_PREFIXES)
        self.is_order = method in ("create_order", "cancel_order", "edit_order")

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, idempotent={self.idempotent})"


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


@cache
def unified_methods() -> dict[str, str]:
    """Map every unified method name, snake_case and camelCase alike, to its snake_case name."""
    names: dict[str, str] = {}
    probe = ccxt.Exchange()
    for camel in probe.has:
        snake = _snake(camel)
        if snake.startswith(_NOT_UNIFIED_PREFIXES) or not callable(getattr(probe, snake, None)):
            continue
        names[snake] = snake
        names[camel] = snake
    for snake in _EXTRA_METHODS:
        names[snake] = snake
        parts = snake.split("_")
        names[parts[0] + "".join(p.title() for p in parts[1:])] = snake
    names["fetchOHLCV"] = "fetch_ohlcv"
    return names


_endpoints: dict[str, Endpoint] = {}


def endpoint_for(method: str) -> Endpoint | None:
    """The endpoint of a unified method name (either spelling), or ``None`` for anything else."""
    found = _endpoints.get(method)
    if found is not None:
        return found
    snake = unified_methods().get(method)
    if snake is None:
        return None
    found = _endpoints.setdefault(snake, Endpoint(snake))
    _endpoints[method] = found
    return found
