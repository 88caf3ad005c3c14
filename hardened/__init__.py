"""hardened: production-grade resilience for ccxt exchange clients, as a drop-in wrapper.

    exchange = HardenedClient(ccxt.binance({...}))   # was: ccxt.binance({...})
    exchange.fetch_ohlcv("BTC/USDT", "1m")          # same method, same arguments, same result

``hardened.binance({...})`` is short for ``HardenedClient(ccxt.binance({...}))``, and likewise for
every exchange ccxt knows.
"""

from __future__ import annotations

from typing import Any

import ccxt

from hardened import quality
from hardened.alerts import start_alerts, stop_alerts
from hardened.client import AsyncHardenedClient, HardenedClient
from hardened.config import ConfigError, HardenedConfig
from hardened.errors import (
    CircuitOpenError,
    ClientOrderIdConflict,
    ClientOrderIdInUse,
    DataQualityError,
    OrderStateUnknown,
    RateLimitBackoff,
    RequestSkipped,
)
from hardened.status import StatusServer, ensure_status_server, serve_status, start_status_server
from hardened.telemetry.health import overall_health
from hardened.telemetry.logging import configure_logging
from hardened.telemetry.tracker import tracker

__all__ = [
    "AsyncHardenedClient",
    "CircuitOpenError",
    "ClientOrderIdConflict",
    "ClientOrderIdInUse",
    "ConfigError",
    "DataQualityError",
    "HardenedClient",
    "HardenedConfig",
    "OrderStateUnknown",
    "RateLimitBackoff",
    "RequestSkipped",
    "StatusServer",
    "configure_logging",
    "ensure_status_server",
    "overall_health",
    "quality",
    "serve_status",
    "start_alerts",
    "start_status_server",
    "stop_alerts",
    "tracker",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``hardened.binance(config, **settings)``: a HardenedClient around ``ccxt.binance(config)``."""
    if name in ccxt.exchanges:
        exchange_class = getattr(ccxt, name)

        def make(exchange_config: dict[str, Any] | None = None, **settings: Any) -> HardenedClient:
            return HardenedClient(exchange_class(exchange_config or {}), **settings)

        make.__name__ = name
        make.__doc__ = f"HardenedClient(ccxt.{name}(config), **settings)"
        return make
    raise AttributeError(f"module 'hardened' has no attribute {name!r}")
