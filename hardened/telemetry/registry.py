"""Which hardened clients are alive in this process, for the status server and the CLI.

Modules that keep state per client name (the health module's latency baselines) subscribe with
``on_forget(callback)``: the callback gets the name once the client is closed (``unregister``) or
garbage collected without being closed, so short-lived clients leave nothing behind.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["clients", "on_forget", "register", "unregister"]

_lock = threading.Lock()
_clients: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_counter = 0
_forget_callbacks: list[Callable[[str], None]] = []
# Clients garbage collected and not yet forgotten: (name, id of the client). Filled by the
# finalizer, emptied by the next register, unregister or clients() call.
_collected_names: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()


def on_forget(callback: Callable[[str], None]) -> None:
    """Call ``callback(name)`` whenever a registered client is closed or collected."""
    _forget_callbacks.append(callback)


def _forget(name: str) -> None:
    for callback in list(_forget_callbacks):
        callback(name)


def _collected(name: str, ident: int) -> None:
    """A registered client was garbage collected: queue it to be forgotten.

    A finalizer runs inside the garbage collector, at any allocation of any thread, possibly
    while that thread holds this module's lock or a lock a forget callback takes (the health
    module's baselines): taking one here deadlocked a test run for 120 s. So it only queues
    (``SimpleQueue.put`` is reentrant, made for this), and ``_reap`` does the work later.
    """
    _collected_names.put((name, ident))


def _reap() -> None:
    """Forget the clients collected since the last call, unless their name went to another."""
    while True:
        try:
            name, ident = _collected_names.get_nowait()
        except queue.Empty:
            return
        with _lock:
            current = _clients.get(name)
            if current is not None and id(current) != ident:
                continue
        _forget(name)


def register(client: Any, exchange_id: str) -> str:
    """Record ``client`` under a unique name (``binance``, then ``binance#2``...) and return the name."""
    global _counter
    _reap()
    with _lock:
        name = exchange_id
        if name in _clients:
            _counter += 1
            name = f"{exchange_id}#{_counter + 1}"
            while name in _clients:
                _counter += 1
                name = f"{exchange_id}#{_counter + 1}"
        _clients[name] = client
    _forget(name)  # whatever an earlier client of this name left behind is not this one's
    weakref.finalize(client, _collected, name, id(client))
    return name


def unregister(name: str, client: Any = None) -> None:
    """Forget the client registered as ``name``.

    With ``client`` given, only if ``name`` is still that client's: a client closed twice must not
    unregister (and wipe the state of) a newer client that has since been given the same name.
    """
    _reap()
    with _lock:
        current = _clients.get(name)
        if client is not None and current is not client:
            return
        _clients.pop(name, None)
    _forget(name)


def clients() -> dict[str, Any]:
    """A snapshot of the live clients by name."""
    _reap()
    with _lock:
        return dict(_clients.items())
