"""ccxt's order shortcuts (``create_limit_buy_order``, ``create_market_order``, ...) placed through
the hardened ``create_order``: its client order id, its lookup after a lost answer, its pipeline.

ccxt implements each shortcut by calling ``self.create_order(...)`` with the type and side filled
in. A shortcut run as the wrapped exchange's own method would send that order past the exactly-once
plan (a lost answer would end in a bare ``NetworkError`` while the order stands). So the client
runs ccxt's own implementation (``type(exchange).create_limit_buy_order``) with a stand-in for
``self`` (``ShortcutSelf``) whose ``create_order`` is the hardened one and whose every other
attribute is the exchange's. The shortcut runs no pipeline of its own: the one ``create_order``
it makes is counted once, by the ``create_order`` endpoint's stats and breaker.

Only a shortcut whose implementation on that exchange class places its order through
``self.create_order`` (directly or through another such shortcut) and sends nothing else that
changes state is routed so; that is read from its source once per class and name. Any other
``create_*`` method (``create_orders``, a shortcut an exchange reimplements on its own endpoint, a
method whose source cannot be read) keeps running as before: through its own pipeline endpoint,
never retried (it is not idempotent), with no lookup after a lost answer.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from ccxt.base.types import Entry

from hardened.endpoints import endpoint_for, unified_methods

__all__ = ["ShortcutSelf", "order_shortcut", "routed_shortcuts"]

# ccxt's own ways of sending a request: a method that calls one of these sends by itself
_SENDS = frozenset({"request", "fetch", "fetch2", "fetch_private", "sign_and_send"})
_PLACES = "create_order"
_BASE_MODULES = ("ccxt.base.", "ccxt.async_support.base.")


def _snake(name: str) -> str:
    return unified_methods().get(name, name)


@functools.cache
def _self_calls(func: Callable[..., Any]) -> frozenset[str] | None:
    """The names ``func`` calls as ``self.<name>(...)``; None when its source cannot be read or
    ``self`` escapes (handed to another function, ``getattr`` included), so its calls cannot be
    known."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return None
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = node.func
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                called.add(target.attr)
            for arg in [*node.args, *(keyword.value for keyword in node.keywords)]:
                if isinstance(arg, ast.Name) and arg.id == "self":
                    return None  # self handed to another function: its calls are not visible here
    return frozenset(called)


def _is_base(func: Any) -> bool:
    return getattr(func, "__module__", "").startswith(_BASE_MODULES)


def _verdict(cls: type, name: str, seen: frozenset[str]) -> bool | None:
    """True: ``cls.<name>`` places an order through ``self.create_order`` and sends nothing else;
    False: it sends nothing at all; None: it sends otherwise (or cannot be known)."""
    func = inspect.getattr_static(cls, name, None)
    if isinstance(func, (staticmethod, classmethod)) or not inspect.isfunction(func):
        return None
    calls = _self_calls(func)
    if calls is None:
        return None
    places = False
    for called in calls:
        snake = _snake(called)
        if snake == _PLACES:
            places = True
            continue
        attr = inspect.getattr_static(cls, called, None)
        if isinstance(attr, Entry) or called in _SENDS or snake in _SENDS:
            return None  # an implicit API endpoint or a raw request: sent past create_order
        if snake in seen:
            return None  # recursion between shortcuts: not a shape ccxt uses
        endpoint = endpoint_for(called)
        if endpoint is not None:
            if endpoint.idempotent:
                continue  # a read (load_markets, fetch_*): harmless, as before
            verdict = _verdict(cls, snake, seen | {snake})
            if verdict is None:
                return None  # another state-changing call that is not create_order
            places = places or verdict
            continue
        if _is_base(attr) or not inspect.isfunction(attr):
            continue  # ccxt's own helpers (extend, market, safe_*...) and attributes
        verdict = _verdict(cls, called, seen | {called})  # an exchange's own helper: read it too
        if verdict is None:
            return None
        places = places or verdict
    return places


@functools.cache
def order_shortcut(cls: type, method: str) -> Callable[..., Any] | None:
    """ccxt's implementation of the order shortcut ``method`` (snake_case) on exchange class
    ``cls`` when it places its order through ``self.create_order`` only; None otherwise (and for
    ``create_order`` itself, and any name that is not a ``create_*`` unified method)."""
    if method == _PLACES or not method.startswith("create_") or endpoint_for(method) is None:
        return None
    if _verdict(cls, method, frozenset({method})) is not True:
        return None
    func = inspect.getattr_static(cls, method)
    return func if inspect.isfunction(func) else None


def routed_shortcuts(cls: type) -> list[str]:
    """Every ``create_*`` shortcut that ``cls`` places through ``create_order`` (snake_case)."""
    names = {snake for snake in unified_methods().values() if snake.startswith("create_")}
    return sorted(name for name in names if order_shortcut(cls, name) is not None)


class ShortcutSelf:
    """What a routed shortcut sees as ``self``: the wrapped exchange, except that ``create_order``
    is the hardened client's (and another routed shortcut runs with this ``self`` too). Everything
    else is read from and written to the exchange. Holds no state of its own, so threads and tasks
    share it, and nothing on the shared exchange is patched.

    Args:
        inner: the wrapped ccxt exchange.
        create_order: the client's ``create_order`` (plan and pipeline).
    """

    __slots__ = ("_create_order", "_inner")

    def __init__(self, inner: Any, create_order: Callable[..., Any]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_create_order", create_order)

    def __getattr__(self, name: str) -> Any:
        inner = object.__getattribute__(self, "_inner")
        snake = _snake(name)
        if snake == _PLACES:
            return object.__getattribute__(self, "_create_order")
        shortcut = order_shortcut(type(inner), snake)
        if shortcut is not None:
            return types.MethodType(shortcut, self)
        return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_inner"), name)

    def __repr__(self) -> str:
        return f"<ShortcutSelf of {object.__getattribute__(self, '_inner')!r}>"
