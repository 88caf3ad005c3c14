"""Which hardened clients are alive in this process, for the status server and the CLI."""

from __future__ import annotations

import threading
import weakref
from typing import Any

_lock = threading.Lock()
_clients: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_counter = 0


def register(client: Any, exchange_id: str) -> str:
    """Record ``client`` under a unique name (``binance``, then ``binance#2``...) and return the name."""
    global _counter
    with _lock:
        name = exchange_id
        if name in _clients:
            _counter += 1
            name = f"{exchange_id}#{_counter + 1}"
            while name in _clients:
                _counter += 1
                name = f"{exchange_id}#{_counter + 1}"
        _clients[name] = client
        return name


def unregister(name: str) -> None:
    """Forget the client registered as ``name``."""
    with _lock:
        _clients.pop(name, None)


def clients() -> dict[str, Any]:
    """A snapshot of the live clients by name."""
    with _lock:
        return dict(_clients.items())
