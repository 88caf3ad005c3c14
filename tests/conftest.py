"""Shared fixtures: an exchange simulator on a free loopback port, and ccxt exchanges attached to it."""

from __future__ import annotations

from collections.abc import Iterator

import ccxt
import pytest

from hardened.sim import Simulator


@pytest.fixture(scope="module")
def binance_sim() -> Iterator[Simulator]:
    """A calm Binance simulator (seed 42), one per test module."""
    with Simulator(exchange="binance", seed=42) as sim:
        yield sim


@pytest.fixture
def binance(binance_sim: Simulator) -> ccxt.binance:
    """A fresh, unmodified sync ``ccxt.binance`` attached to ``binance_sim``."""
    return binance_sim.attach(ccxt.binance({"enableRateLimit": False}))
