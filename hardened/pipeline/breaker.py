"""Per-endpoint circuit breakers: admission before a call, outcome after it, no lock across the call.

pybreaker keeps the state (closed / open / half-open), the counters, the listeners and the storage
(``CircuitRedisStorage`` lets processes share a breaker). We do not use ``CircuitBreaker.call``: it
holds an ``RLock`` for the whole guarded call, which would serialise every request through one
endpoint, and its async path is Tornado-only. Instead ``admit()`` decides under a short lock
whether a call may go, and ``record_success`` / ``record_failure`` feed the outcome afterwards.

Two ways to trip, as resilience4j and Polly offer: ``failure_threshold`` consecutive failures, or
a failure share of at least ``failure_rate_threshold`` over the last ``window_seconds`` once
``minimum_calls`` calls were seen. Half-open admits at most ``half_open_max_calls`` probes at once
and closes after ``success_threshold`` successes; one failed probe opens it again. The open time
runs on the monotonic clock, so a host clock stepped back does not hold the circuit open; the
wall-clock ``opened_at`` is kept for the state shared between processes.

With a shared-state backend (``redis_url``, ``hardened.shared.breaker_state``) the breaker keeps its
state here, in memory, and hears of other processes' trips and recoveries through ``apply_shared``;
its own transitions go out through ``share(...)``'s publisher. Neither touches the network on the
caller's thread, so the success path of a closed breaker stays a memory read.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pybreaker

from hardened.config import EndpointPolicy
from hardened.errors import CircuitOpenError
from hardened.pipeline.window import SlidingCounts

__all__ = ["BreakerView", "EndpointBreaker"]

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
_PUBLIC_STATE = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}


class _TransitionListener(pybreaker.CircuitBreakerListener):
    """Forwards pybreaker's state changes to the owner's callback with public state names."""

    def __init__(self, owner: EndpointBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = _PUBLIC_STATE.get(old_state.name, old_state.name) if old_state is not None else None
        self._owner._transitioned(old, _PUBLIC_STATE.get(new_state.name, new_state.name))


class EndpointBreaker:
    """The breaker of one exchange x endpoint, named like ``binance_ohlcv``."""

    __slots__ = (
        "__weakref__",  # the shared state holds breakers weakly (hardened.shared.breaker_state)
        "_applying",
        "_breaker",
        "_lock",
        "_on_transition",
        "_open_max",
        "_open_min",
        "_opened_mono",
        "_probes",
        "_shared",
        "_spell",
        "_storage",
        "_window",
        "changed_at",
        "changed_to",
        "failure_rate_threshold",
        "half_open_max_calls",
        "minimum_calls",
        "name",
        "rejected",
        "transitions",
        "tripped_since",
        "trips",
    )

    def __init__(
        self,
        name: str,
        policy: EndpointPolicy,
        on_transition: Any = None,
        storage: pybreaker.CircuitBreakerStorage | None = None,
    ) -> None:
        self.name = name
        self._storage = storage or pybreaker.CircuitMemoryStorage(CLOSED)
        # Open time: recovery_timeout_min after a trip from closed, doubled by each failed probe,
        # never above recovery_timeout (see _trip).
        self._open_max = float(policy.recovery_timeout)
        self._open_min = min(float(policy.recovery_timeout_min), self._open_max)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.failure_threshold,
            reset_timeout=self._open_min,
            success_threshold=policy.success_threshold,
            state_storage=self._storage,
            name=name,
            listeners=[_TransitionListener(self)],
        )
        self._lock = threading.Lock()
        self._window = SlidingCounts(policy.window_seconds)
        self._probes = 0
        # Which half-open spell the probes in ``_probes`` belong to: a probe that ends after its
        # spell did (re-opened, reset, closed elsewhere) must not free a slot of the next one.
        self._spell = 0
        # Monotonic time the circuit last opened, what its open time is measured on: the wall
        # clock's opened_at (pybreaker's, shared through Redis) jumps with an NTP step.
        self._opened_mono: float | None = None
        self._on_transition = on_transition
        self.failure_rate_threshold = policy.failure_rate_threshold
        self.minimum_calls = policy.minimum_calls
        self.half_open_max_calls = policy.half_open_max_calls
        self.rejected = 0
        self.trips = 0
        self.transitions = 0
        self.tripped_since: float | None = None  # monotonic time it last left "closed" (an outage's start)
        self.changed_at = 0.0  # epoch seconds of the last transition, here or (shared) elsewhere
        self.changed_to = "closed"  # the state that transition led to (pybreaker's listener runs
        # before its storage holds the new state, so ``state`` may still show the old one then)
        self._shared: Any = None
        self._applying = False

    # --- decisions -------------------------------------------------------------------------

    def admit(self) -> int | bool:
        """Let a call through or raise ``CircuitOpenError``; returns the half-open spell (a truthy
        int, handed back to ``record_*``) when the call is a probe, else False."""
        if self._storage.state == CLOSED:
            return False
        shared = self._shared
        if shared is not None and self._storage.state == OPEN and self._open_remaining() <= 0:
            # Time to probe: with shared state one process probes for all (asked before the lock:
            # it may be a Redis round trip). The others stay open until they hear the outcome.
            blocked_for = shared.probe_elsewhere(self)
            if blocked_for is not None:
                with self._lock:
                    self.rejected += 1
                raise CircuitOpenError(self.name, retry_in=blocked_for)
        with self._lock:
            state = self._storage.state
            if state == OPEN:
                remaining = self._open_remaining()
                if remaining > 0:
                    self.rejected += 1
                    raise CircuitOpenError(self.name, retry_in=remaining)
                self._breaker.half_open()
                self._new_spell()
                state = HALF_OPEN
            if state == HALF_OPEN:
                if self._probes >= self.half_open_max_calls:
                    self.rejected += 1
                    raise CircuitOpenError(self.name)
                self._probes += 1
                return self._spell
            return False

    def _new_spell(self) -> None:
        """Forget the probes in flight (locked): those still out belong to a spell that is over."""
        self._spell += 1
        self._probes = 0

    def _probe_over(self, probe: int | bool) -> bool:
        """Give back a probe's slot (locked); False when the probe is of an earlier spell (stale)."""
        if probe is not True and probe != self._spell:  # (True: a caller of the bool era)
            return False
        if self._probes > 0:
            self._probes -= 1
        return True

    def record_success(self, probe: int | bool) -> None:
        """Feed a successful call: resets the consecutive count; enough probe successes close it."""
        with self._lock:
            stale = bool(probe) and not self._probe_over(probe)
            state = self._storage.state
            if state == HALF_OPEN:
                if stale:
                    return  # a probe of a spell that is over: its success says nothing of this one
                self._storage.increment_success_counter()
                if self._storage.success_counter >= self._breaker.success_threshold:
                    self._breaker.close()
                return
            if state == CLOSED:
                if self._storage.counter:
                    self._storage.reset_counter()
                self._window.add(time.monotonic(), 1, 0)

    def record_failure(self, probe: int | bool) -> None:
        """Feed a failure that counts (transient: 5xx, timeout, reset): may trip the breaker."""
        with self._lock:
            if probe:
                self._probe_over(probe)
            state = self._storage.state
            if state == HALF_OPEN:
                self._trip()
                return
            if state != CLOSED:
                return  # a call admitted before the trip finished late; the circuit is already open
            now = time.monotonic()
            self._storage.increment_counter()
            self._window.add(now, 1, 1)
            if self._storage.counter >= self._breaker.fail_max:
                self._trip()
                return
            calls, failures = self._window.totals(now)
            if calls >= self.minimum_calls and failures >= self.failure_rate_threshold * calls:
                self._trip()

    def record_ignored(self, probe: int | bool) -> None:
        """A call ended in a way that says nothing about the exchange's health (permanent error)."""
        if probe:
            with self._lock:
                self._probe_over(probe)

    def _trip(self) -> None:
        self.trips += 1
        self._window.clear()
        if self._storage.state == HALF_OPEN:  # the probe failed: the outage goes on, probe later
            timeout = min(self._breaker.reset_timeout * 2.0, self._open_max)
        else:
            timeout = self._open_min
        self._breaker.reset_timeout = timeout
        self._opened_mono = time.monotonic()
        self._breaker.open()

    def _open_remaining(self) -> float:
        """Seconds until an open circuit may probe, on the monotonic clock: a wall clock stepped
        back (NTP, right after a recvWindow error) must not keep it open for the size of the step."""
        opened = self._opened_mono
        if opened is not None:
            elapsed = time.monotonic() - opened
        else:  # opened through a storage of the caller's own: only its wall-clock stamp says when
            opened_at = self._storage.opened_at
            if opened_at is None:
                return 0.0
            elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, self._breaker.reset_timeout - elapsed)

    def _transitioned(self, old: str | None, new: str) -> None:
        self.transitions += 1
        if not self._applying:
            self.changed_at = time.time()
            self.changed_to = new
            if self._shared is not None and new != "half_open":  # each process half-opens on its own
                self._shared.publish(self, new)
        if new == "closed":
            self._window.clear()
            self.tripped_since = None
            self._opened_mono = None
        elif self.tripped_since is None:  # open -> half-open -> open again is one outage
            self.tripped_since = time.monotonic()
        if self._on_transition is not None:
            self._on_transition(self, old, new)

    # --- shared state (hardened.shared.breaker_state) ------------------------------------------

    def share(self, publisher: Any) -> None:
        """Publish this breaker's open/closed transitions through ``publisher.publish(breaker, state)``."""
        self._shared = publisher

    @property
    def recovery_timeout(self) -> float:
        """Seconds the circuit stays open before a probe (this time: it grows with failed probes)."""
        return float(self._breaker.reset_timeout)

    @property
    def shared(self) -> bool:
        """Whether the transition being reported came from another process (read by listeners)."""
        return self._applying

    @property
    def opened_at(self) -> float | None:
        """Epoch seconds when the circuit last opened (None if it never did)."""
        opened_at = self._storage.opened_at
        return opened_at.timestamp() if opened_at is not None else None

    def apply_shared(self, state: str, changed_at: float, opened_at: float | None) -> bool:
        """Take another process's transition if it is newer than ours; True when it was taken.

        ``open`` opens this circuit as of ``opened_at`` (so every process probes at the same time);
        ``closed`` closes it (a probe succeeded elsewhere, or an operator reset it).
        """
        with self._lock:
            if changed_at <= self.changed_at:
                return False
            current = self._storage.state
            self._applying = True
            try:
                if state == "open":
                    if current != OPEN:
                        self._window.clear()
                        self._new_spell()
                        self._opened_mono = time.monotonic()
                        self._breaker.open()
                    if opened_at is not None:
                        self._storage.opened_at = datetime.fromtimestamp(opened_at, UTC)
                        # Its age, read once on the wall clocks (the only clock two hosts share),
                        # then kept on ours; a stamp from a clock ahead of ours counts as now.
                        age = time.time() - opened_at
                        self._opened_mono = time.monotonic() - (age if age > 0.0 else 0.0)
                elif state == "closed":
                    if current != CLOSED:
                        self._new_spell()
                        self._breaker.close()
                    self._storage.reset_counter()
                else:
                    return False
            finally:
                self._applying = False
            self.changed_at = changed_at
            self.changed_to = state
            return True

    # --- inspection and control -------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return _PUBLIC_STATE[self._storage.state]

    def reset(self) -> None:
        """Close the circuit now and forget its counters (an operator's override)."""
        with self._lock:
            self._new_spell()
            self._window.clear()
            if self._storage.state != CLOSED:
                self._breaker.close()
            self._storage.reset_counter()

    def force_open(self) -> None:
        """Open the circuit now (an operator's override, or a ban the exchange announced)."""
        with self._lock:
            if self._storage.state != OPEN:
                self._trip()

    def view(self) -> BreakerView:
        """A read-only snapshot for ``ex.breakers`` and the status stream."""
        return BreakerView(self)


class BreakerView:
    """What ``ex.breakers[name]`` shows: state, counters, and ``reset()``."""

    __slots__ = ("_breaker",)

    def __init__(self, breaker: EndpointBreaker) -> None:
        self._breaker = breaker

    @property
    def name(self) -> str:
        """The breaker's name, ``{exchange}_{endpoint}``."""
        return self._breaker.name

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._breaker.state

    @property
    def failure_count(self) -> int:
        """Consecutive counted failures since the last success."""
        return self._breaker._storage.counter

    @property
    def trips(self) -> int:
        """How many times this breaker has opened."""
        return self._breaker.trips

    @property
    def rejected(self) -> int:
        """Calls refused without touching the network."""
        return self._breaker.rejected

    @property
    def tripped_for(self) -> float:
        """Seconds since the breaker last left ``closed`` (0 when closed): how long the outage is."""
        since = self._breaker.tripped_since
        if since is None or self.state == "closed":
            return 0.0
        return time.monotonic() - since

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker admits a probe (0 when not open)."""
        return self._breaker._open_remaining() if self.state == "open" else 0.0

    def reset(self) -> None:
        """Close the circuit now."""
        self._breaker.reset()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "name": self.name,
            "state": self.state,
            "failure_count": self.failure_count,
            "trips": self.trips,
            "rejected": self.rejected,
            "retry_in": round(self.retry_in, 3),
            "tripped_for": round(self.tripped_for, 1),
        }

    def __repr__(self) -> str:
        return f"BreakerView({self.name!r}, state={self.state!r}, failures={self.failure_count})"
