"""Shared fixtures: an exchange simulator on a free loopback port, and ccxt exchanges attached to it."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from hardened.sim import Simulator

# The suite never writes the learning store under the user's data folder: records stay in memory
# unless a test points a client at a file of its own.
os.environ.setdefault("HARDENED_LEARNING_STORE", ":memory:")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address: Any) -> None:
    """Refuse any address off this machine: the tests must never reach the internet."""
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {host!r}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    _loopback_only(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    _loopback_only(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_internet() -> Any:
    """Every test runs with outbound connections limited to 127.0.0.0/8 and ::1."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def binance_sim() -> Iterator[Simulator]:
    """A calm Binance simulator (seed 42), one per test module."""
    with Simulator(exchange="binance", seed=42) as sim:
        yield sim


@pytest.fixture
def binance(binance_sim: Simulator) -> ccxt.binance:
    """A fresh, unmodified sync ``ccxt.binance`` attached to ``binance_sim``."""
    return binance_sim.attach(ccxt.binance({"enableRateLimit": False}))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A simulator of Binance, KuCoin and Bitvavo on a free loopback port, one per test module."""
    with Simulator(exchanges=["binance", "kucoin", "bitvavo"], seed=11) as simulator:
        yield simulator


@pytest.fixture
def calm(sim: Simulator) -> Iterator[None]:
    """The test starts and leaves ``sim`` calm, with its clock in step with ours."""
    sim.set_profile("calm")
    sim.clock_offset_ms = 0
    yield
    sim.set_profile("calm")
    sim.clock_offset_ms = 0
