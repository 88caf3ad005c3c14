"""The client registry: which clients the status server, /metrics and health see."""

from __future__ import annotations

import ccxt

from hardened import HardenedClient
from hardened.telemetry import registry


class _Thing:
    """A stand-in client: the registry keeps weak references, so it needs a class of its own."""


def test_unregister_with_a_client_leaves_a_newer_holder_of_the_name_alone() -> None:
    first, second = _Thing(), _Thing()
    name = registry.register(first, "registry-test-plain")
    registry.unregister(name, first)
    assert registry.register(second, "registry-test-plain") == name  # the name was free again
    registry.unregister(name, first)  # the first one closed a second time
    assert registry.clients().get(name) is second
    registry.unregister(name, second)
    assert name not in registry.clients()


def test_a_client_closed_twice_does_not_unregister_the_client_now_holding_its_name() -> None:
    first = HardenedClient(ccxt.binance({"id": "registrytest"}), learning_record=False)
    name = first.client_name
    first.close()
    second = HardenedClient(ccxt.binance({"id": "registrytest"}), learning_record=False)
    assert second.client_name == name
    first.close()  # `with` block and an explicit close(), say
    assert registry.clients().get(name) is second  # still on /metrics, /health and the status stream
    second.close()
    assert name not in registry.clients()
