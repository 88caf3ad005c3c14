"""The contenders a user chooses between, built the way a user would build each.

- ``raw``: a plain ccxt exchange.
- ``ccxt_retry``: ccxt's own retries, ``options["maxRetriesOnFailure"] = 3`` with
  ``maxRetriesOnFailureDelay`` (milliseconds between tries).
- ``tenacity``: a plain ccxt exchange whose methods are wrapped by ``@tenacity.retry``
  (stop after 4 attempts, exponential back-off with jitter, retry on ``ccxt.NetworkError``), the
  loop most bots write by hand.
- ``hardened``: ``HardenedClient`` with its default configuration: the defaults themselves, not
  what ``HARDENED_*`` variables or a ``HARDENED_CONFIG_FILE`` of the shell (a bot's settings) say.

ccxt's own rate limiter is off on every side (``enableRateLimit=False``): the benchmark measures
the resilience layer, and the limiter would only add the same sleeps to everyone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt
import ccxt.async_support as accxt
import tenacity
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from hardened.client import AsyncHardenedClient, HardenedClient
from hardened.config import HardenedConfig

__all__ = [
    "CONTENDERS",
    "ENDPOINTS",
    "EXCHANGES",
    "Contender",
    "EndpointCall",
    "benchmark_config",
    "build_async",
    "build_sync",
    "symbol_for",
    "unbind_pacing",
]

CONTENDERS = ("raw", "ccxt_retry", "tenacity", "hardened")
EXCHANGES = ("binance", "kucoin", "bitvavo")
CCXT_RETRIES = 3
CCXT_RETRY_DELAY_MS = 500
TENACITY_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class EndpointCall:
    """A unified method and the arguments the benchmark calls it with (after the symbol)."""

    method: str
    endpoint: str  # hardened's endpoint name (its stats and breaker key)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


ENDPOINTS: dict[str, EndpointCall] = {
    "fetch_ticker": EndpointCall("fetch_ticker", "ticker"),
    "fetch_ohlcv": EndpointCall("fetch_ohlcv", "ohlcv", ("1m",), {"limit": 100}),
    "fetch_order_book": EndpointCall("fetch_order_book", "order_book", (20,)),
    "fetch_trades": EndpointCall("fetch_trades", "trades", (), {"limit": 100}),
}


def symbol_for(exchange: str) -> str:
    """A symbol every simulator (and the real exchange) lists."""
    return "BTC/EUR" if exchange == "bitvavo" else "BTC/USDT"


@dataclass(slots=True)
class Contender:
    """One side of the comparison: the object called, how to call an endpoint, and the ccxt
    exchange underneath (for request counting and the last answer's headers)."""

    name: str
    client: Any
    exchange: Any
    call: Callable[[EndpointCall, str], Any]

    def close(self) -> Any:
        """Close the HTTP session (a coroutine for async contenders)."""
        return self.client.close()


class _DefaultsOnly(HardenedConfig):
    """``HardenedConfig`` from its defaults and the values given, never from the environment or
    a config file: the benchmark measures the defaults, whatever the shell it runs in holds."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def benchmark_config(**overrides: Any) -> HardenedConfig:
    """The default configuration with ``overrides``; learning records go to memory (or the store
    ``HARDENED_LEARNING_STORE`` names), never to the user's real store: simulated calls there
    would teach the gate about a simulator."""
    store = os.environ.get("HARDENED_LEARNING_STORE") or ":memory:"
    return _DefaultsOnly(**{"learning_store": store, **overrides})


def _ccxt_options(timeout_ms: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"enableRateLimit": False}
    if timeout_ms is not None:
        options["timeout"] = timeout_ms
    return options


def unbind_pacing(client: HardenedClient | AsyncHardenedClient) -> None:
    """Raise the client's rate-limit pools far above what a loopback benchmark spends.

    On loopback one caller sends hundreds of calls a second, many times Binance's 6000 weight/min,
    and the pacer would (rightly) slow hardened down to the published budget while raw ccxt heads
    for a ban. The success-path benchmark wants the cost of the bookkeeping, which still runs on
    every call (booking, header parsing); only the wait never comes.
    """
    for pool in client._hd.rate_limits._pools.values():
        # Headroom, not the limit: KuCoin and Bitvavo publish their limit in every answer's headers
        # and the budget adopts it, but the share of it this client allows itself stays ours.
        pool.headroom = 1e9
        pool.set_limit(pool.limit)


def _direct_call(client: Any) -> Callable[[EndpointCall, str], Any]:
    def call(spec: EndpointCall, symbol: str) -> Any:
        return getattr(client, spec.method)(symbol, *spec.args, **spec.kwargs)

    return call


def _tenacity_call(exchange: Any) -> Callable[[EndpointCall, str], Any]:
    """Each unified method wrapped once by ``@tenacity.retry``, as a user decorates their own
    (tenacity picks its async driver by itself when the method is a coroutine function)."""
    decorate = tenacity.retry(
        stop=tenacity.stop_after_attempt(TENACITY_ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=30, jitter=0.5),
        retry=tenacity.retry_if_exception_type(ccxt.NetworkError),
        reraise=True,
    )
    wrapped: dict[str, Any] = {}

    def call(spec: EndpointCall, symbol: str) -> Any:
        fn = wrapped.get(spec.method)
        if fn is None:
            fn = wrapped[spec.method] = decorate(getattr(exchange, spec.method))
        return fn(symbol, *spec.args, **spec.kwargs)

    return call


def _make(
    name: str,
    exchange_id: str,
    attach: Callable[[Any], Any],
    module: Any,
    timeout_ms: int | None,
    hardened_overrides: dict[str, Any],
    asynchronous: bool,
) -> Contender:
    exchange = attach(getattr(module, exchange_id)(_ccxt_options(timeout_ms)))
    if name == "raw":
        return Contender(name, exchange, exchange, _direct_call(exchange))
    if name == "ccxt_retry":
        exchange.options["maxRetriesOnFailure"] = CCXT_RETRIES
        exchange.options["maxRetriesOnFailureDelay"] = CCXT_RETRY_DELAY_MS
        return Contender(name, exchange, exchange, _direct_call(exchange))
    if name == "tenacity":
        return Contender(name, exchange, exchange, _tenacity_call(exchange))
    if name.startswith("hardened"):  # "hardened" and its variants (the overrides tell them apart)
        cls = AsyncHardenedClient if asynchronous else HardenedClient
        settings = dict(hardened_overrides)
        stages = settings.pop("stages", None)  # the client's own argument, not a setting
        client = cls(exchange, config=benchmark_config(**settings), stages=stages)
        return Contender(name, client, exchange, _direct_call(client))
    raise ValueError(f"unknown contender {name!r}; one of {', '.join(CONTENDERS)}")


def build_sync(
    name: str,
    exchange_id: str,
    attach: Callable[[Any], Any],
    *,
    timeout_ms: int | None = None,
    hardened_overrides: dict[str, Any] | None = None,
) -> Contender:
    """A sync contender on ``exchange_id``; ``attach`` points the ccxt exchange at the server."""
    return _make(name, exchange_id, attach, ccxt, timeout_ms, hardened_overrides or {}, False)


def build_async(
    name: str,
    exchange_id: str,
    attach: Callable[[Any], Any],
    *,
    timeout_ms: int | None = None,
    hardened_overrides: dict[str, Any] | None = None,
) -> Contender:
    """The same as ``build_sync`` on ``ccxt.async_support`` (call it inside a running loop)."""
    return _make(name, exchange_id, attach, accxt, timeout_ms, hardened_overrides or {}, True)
