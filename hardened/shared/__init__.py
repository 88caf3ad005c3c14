"""State shared by several processes and hosts through Redis (``redis_url``); optional.

One module per shared thing: ``connection`` (one link per URL, its health and background thread),
``breaker_state`` (breaker transitions), ``budget`` (the rate-limit budget of an API key),
``cache`` (answers, opt-in with ``shared_cache``), ``counters`` (the error tracker's counts).
The in-memory default never imports this package's Redis parts: ``hardened.client`` imports
``shared_state_for`` only when ``redis_url`` is set.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SharedState", "disconnect_all", "shared_state_for"]

_lock = threading.Lock()
_per_link: dict[int, dict[str, Any]] = {}  # id(link) -> the process-wide sharers of that link


class SharedState:
    """What one client shares: breakers (per process), its API key's budget, maybe its cache."""

    __slots__ = ("breakers", "budget", "cache", "counters", "link")

    def __init__(self, link: Any, breakers: Any, budget: Any, cache: Any, counters: Any) -> None:
        self.link = link
        self.breakers = breakers
        self.budget = budget
        self.cache = cache
        self.counters = counters

    def status(self) -> dict[str, Any]:
        """For ``ex.stats()``: where the state is shared and whether Redis is reachable now."""
        return {
            "redis": self.link.shown_url,
            "state": "shared" if self.link.up else "local",
            "outages": self.link.degraded_count,
            "budget_refills": self.budget.refills,
            "budget_prefetches": self.budget.prefetches,
            "writes_dropped": self.link.dropped,
            "breaker_transitions_applied": self.breakers.applied,
        }


def shared_state_for(
    url: str,
    timeout_ms: int,
    exchange_id: str,
    api_key: str | None,
    share_cache: bool,
    venue: Callable[[], str] | None = None,
) -> SharedState:
    """The shared state of one client: the process's link to ``url`` and its sharers; ``venue``
    tells which venue the client talks to (see ``hardened.shared.cache.venue_of``)."""
    from hardened.adapters import load_profile
    from hardened.shared.breaker_state import SharedBreakers
    from hardened.shared.budget import SharedBudget, key_id
    from hardened.shared.cache import SharedCache
    from hardened.shared.connection import link_for
    from hardened.shared.counters import SharedCounters
    from hardened.telemetry.tracker import tracker

    link = link_for(url, timeout_ms / 1000.0)
    with _lock:
        sharers = _per_link.get(id(link))
        if sharers is None:
            counters = SharedCounters(link)
            tracker.share(counters)
            sharers = _per_link[id(link)] = {"breakers": SharedBreakers(link), "counters": counters}
        budget_key = "budget:" + exchange_id + ":" + key_id(exchange_id, api_key)
        budget = sharers.get(budget_key)
        if budget is None:  # clients of one key in one process spend the same leases
            pools = load_profile(exchange_id).rate_limit.pools
            ip_pools = [pool.name for pool in pools if pool.scope == "ip"]  # counted per IP, not key
            budget = sharers[budget_key] = SharedBudget(link, exchange_id, api_key, ip_pools=ip_pools)
    cache = SharedCache(link, exchange_id, api_key, venue) if share_cache else None
    return SharedState(link, sharers["breakers"], budget, cache, sharers["counters"])


def _forget_in_child() -> None:
    """A forked child starts without sharers (its links are forgotten too, see connection.py)."""
    _per_link.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def disconnect_all() -> None:
    """Close every Redis link of this process and forget the sharers (tests, orderly shutdown).

    Clients built before keep working on local state; build new ones to share again.
    """
    from hardened.shared.connection import close_links
    from hardened.telemetry.tracker import tracker

    with _lock:
        _per_link.clear()
    tracker.share(None)
    close_links()
