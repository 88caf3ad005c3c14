"""Rate-limit budget: pace requests from the exchange's published usage so it never has to say 429.

Pure and thread-safe: ``delay_before`` says how long to wait before sending (and books the call's
weight), ``observe`` reads the answer's usage headers, ``Retry-After`` and ban messages. Neither does
I/O nor sleeps; the lock is held only for a few arithmetic steps. Times are wall-clock epoch seconds
(``time.time()``), because exchanges publish resets and ban ends as epoch timestamps.
"""

from __future__ import annotations

import email.utils
import math
import threading
from collections.abc import Mapping
from datetime import UTC
from typing import Any, NamedTuple

from hardened.adapters import ENDPOINT_ALIASES, ExchangeProfile, FailureKind, PoolSpec

__all__ = [
    "RETRY_AFTER_MAX_S",
    "PoolUsage",
    "RateLimitBudget",
    "exchange_clock_offset_s",
    "parse_retry_after",
]

# The longest wait a Retry-After, a ban end in a message or an AllowAt stamp is believed for:
# Binance's longest IP ban (its docs: "from 2 minutes to 3 days"). Anything longer is a broken
# header or stamp, not an exchange's request, and would otherwise hold the client for good.
RETRY_AFTER_MAX_S = 3 * 86_400.0

# Header meanings in the order they must be applied: a new limit before the remaining count it bounds.
_MEANING_ORDER = {
    "limit": 0,
    "reset_after_ms": 1,
    "reset_at_epoch_ms": 1,
    "used": 2,
    "remaining": 2,
    "allow_at_epoch_ms": 3,
}


class PoolUsage(NamedTuple):
    """A snapshot of one pool: units used in the current window, its limit, seconds to its reset."""

    used: float
    limit: float
    reset_in: float


class _Pool:
    """Mutable state of one pool; only touched under the budget's lock."""

    __slots__ = (
        "aligned",
        "blocked_until",
        "cap",
        "headroom",
        "hold_until",
        "inflight",
        "interval",
        "limit",
        "name",
        "next_free",
        "pace_above",
        "pace_from",
        "reset_at",
        "used",
    )

    def __init__(self, spec: PoolSpec, headroom: float, pace_above: float) -> None:
        self.name = spec.name
        self.interval = spec.interval_s
        self.aligned = spec.window == "aligned"
        self.headroom = headroom
        self.pace_above = pace_above
        self.limit = spec.limit
        self.cap = 0.0
        self.pace_from = 0.0
        self.set_limit(spec.limit)
        self.used = 0.0  # units in the current window, including calls still in flight
        self.inflight = 0.0  # units booked by delay_before and not yet observed
        self.reset_at = 0.0  # 0: no window opened yet
        self.next_free = 0.0  # earliest start of the next call while pacing
        self.blocked_until = 0.0  # no call before this: the pool is spent (a header may lift it)
        self.hold_until = 0.0  # no call before this: the exchange said so (Retry-After, a refusal)

    def set_limit(self, limit: float) -> None:
        self.limit = limit
        self.cap = limit * self.headroom
        self.pace_from = self.cap * self.pace_above

    def roll(self, t: float) -> None:
        """Open the window that contains ``t`` (called when ``t`` is past the current reset)."""
        if not self.aligned:
            self.reset_at = t + self.interval  # the window starts with the first request after a reset
        elif self.reset_at > 0.0 and t - self.reset_at < 100 * self.interval:
            steps = math.floor((t - self.reset_at) / self.interval) + 1
            self.reset_at += steps * self.interval  # keep the exchange's cadence (a header may have set it)
        else:
            self.reset_at = (math.floor(t / self.interval) + 1) * self.interval
        self.used = 0.0
        self.next_free = 0.0
        # blocked_until is kept: a call booked into the next window must not let others into this one


class _Header:
    """One usage header, with the spellings to try on a mapping that is not case-insensitive."""

    __slots__ = ("lower", "meaning", "names", "pool")

    def __init__(self, name: str, pool: _Pool | None, meaning: str) -> None:
        self.lower = name.lower()
        self.names = tuple(dict.fromkeys([self.lower, name, name.title()]))
        self.pool = pool
        self.meaning = meaning


def _header(headers: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """A header value from a plain dict, whose keys may be spelt in any of ``names``."""
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def parse_retry_after(value: Any, now: float) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait, or None when it says nothing usable.

    RFC 9110 allows delta-seconds or an HTTP-date; a date is read against ``now`` (epoch seconds
    of the caller's clock, so an injected clock holds). Never raises: a malformed value (``"1, 2"``,
    what requests makes of two merged headers) is None. A date without a zone is UTC, a wait in
    the past is 0, and a wait beyond ``RETRY_AFTER_MAX_S`` is cut to it.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
            if when.tzinfo is None:  # "-0000" or no zone at all: HTTP-dates are GMT
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(seconds, RETRY_AFTER_MAX_S) if seconds > 0.0 else 0.0


def exchange_clock_offset_s(exchange: Any) -> float:
    """The exchange's clock minus ours, in seconds, as ccxt measured it (``load_time_difference``
    stores ours minus the exchange's in ``options['timeDifference']``, ms); 0.0 while unknown.

    The budget needs it to read the epoch stamps the exchange sends (ban ends, window resets).
    """
    options = getattr(exchange, "options", None)
    difference = _number(options.get("timeDifference")) if isinstance(options, dict) else None
    return -difference / 1000.0 if difference is not None else 0.0


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RateLimitBudget:
    """Per-exchange budget over the profile's pools, fed by response headers, local weights and bans.

    ``delay_before(endpoint, now)`` returns the seconds to wait before sending and books the call's
    weight at that time: 0 normally; a growing spacing once a pool is more than ``pace_above`` used
    (the remaining budget spread over the time to the reset); the reset itself when a pool is spent;
    the end of a ban. ``observe(endpoint, status, headers, now, body=None)`` reconciles with the
    exchange's published usage and records ``Retry-After`` and ban answers.

    Args:
        profile: the exchange's profile (pools, headers, endpoint weights, error rules).
        pace_above: fraction of the usable budget after which calls are spread out.
        headroom: fraction of each published limit this client allows itself to use.
    """

    __slots__ = (
        "_banned_until",
        "_charges",
        "_default_charges",
        "_endpoint_headers",
        "_headers",
        "_lock",
        "_pools",
        "_primary",
        "_retry_after",
        "clock_offset_s",
        "profile",
    )

    def __init__(self, profile: ExchangeProfile, *, pace_above: float = 0.5, headroom: float = 0.95) -> None:
        if not 0.0 < headroom <= 1.0:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        if not 0.0 <= pace_above <= 1.0:
            raise ValueError(f"pace_above must be in [0, 1], got {pace_above}")
        self.profile = profile
        self.clock_offset_s = 0.0  # exchange clock minus local clock, for epoch stamps in headers
        self._lock = threading.Lock()
        self._banned_until = 0.0
        spec = profile.rate_limit
        self._pools = {pool.name: _Pool(pool, headroom, pace_above) for pool in spec.pools}
        per_request = tuple(pool for pool in spec.pools if pool.per_request)
        self._charges: dict[str, tuple[tuple[_Pool, float], ...]] = {}
        self._primary: dict[str, _Pool | None] = {}
        for endpoint, cost in spec.endpoints.items():
            own = spec.pool_of(endpoint)
            charges = [] if own is None else [(self._pools[own], cost.weight)]
            charges += [(self._pools[name], weight) for name, weight in cost.also.items()]
            charges += [(self._pools[pool.name], 1.0) for pool in per_request if pool.name != own]
            self._charges[endpoint] = tuple(charges)
            self._primary[endpoint] = None if own is None else self._pools[own]
        for alias, endpoint in ENDPOINT_ALIASES.items():
            if endpoint in self._charges:
                self._charges[alias] = self._charges[endpoint]
                self._primary[alias] = self._primary[endpoint]
        default = spec.default_pool
        base = [] if default is None else [(self._pools[default], spec.default_weight)]
        base += [(self._pools[pool.name], 1.0) for pool in per_request if pool.name != default]
        self._default_charges = tuple(base)
        self._primary[""] = None if default is None else self._pools[default]
        headers = sorted(spec.headers, key=lambda header: _MEANING_ORDER[header.meaning])
        self._headers = tuple(
            _Header(h.name, None if h.pool is None else self._pools[h.pool], h.meaning) for h in headers
        )
        self._endpoint_headers: dict[str, tuple[_Header, ...]] = {
            endpoint: self._headers_for(charges) for endpoint, charges in self._charges.items()
        }
        self._endpoint_headers[""] = self._headers_for(self._default_charges)
        retry_after = spec.retry_after_header
        self._retry_after = tuple(dict.fromkeys([retry_after.lower(), retry_after]))

    def _headers_for(self, charges: tuple[tuple[_Pool, float], ...]) -> tuple[_Header, ...]:
        """The headers worth reading after a call: those of the pools it charges, and pool-less ones."""
        pools = {id(pool) for pool, _ in charges}
        return tuple(h for h in self._headers if h.pool is None or id(h.pool) in pools)

    # -- queries ----------------------------------------------------------------------------------

    @property
    def banned_until(self) -> float:
        """Epoch seconds until which the exchange refuses every call (0.0 when not banned)."""
        return self._banned_until

    def weight_of(self, endpoint: str, *, limit: int | None = None, has_symbol: bool = True) -> float:
        """The weight a call of ``endpoint`` costs in its own pool (see ``EndpointCost.weight_for``)."""
        cost = self.profile.rate_limit.endpoints.get(ENDPOINT_ALIASES.get(endpoint, endpoint))
        if cost is None:
            return self.profile.rate_limit.default_weight
        return cost.weight_for(limit=limit, has_symbol=has_symbol)

    def held_until(self, endpoint: str) -> float:
        """Epoch seconds until which the exchange holds calls of ``endpoint`` (a ban, a Retry-After
        on one of its pools; 0.0 for none); books nothing. For a call that waited its turn: it
        must not be sent into a ban that began meanwhile."""
        with self._lock:
            until = self._banned_until
            for pool, _units in self._charges.get(endpoint, self._default_charges):
                if pool.hold_until > until:
                    until = pool.hold_until
        return until

    def charges(
        self, endpoint: str, weight: float | None = None
    ) -> tuple[tuple[str, float, float, float], ...]:
        """What a call of ``endpoint`` costs, per pool: ``(pool, usable cap, window seconds, units)``
        (for the budget shared across processes, ``hardened.shared.budget``)."""
        charges = self._charges_for(endpoint, weight)
        return tuple((pool.name, pool.cap, pool.interval, units) for pool, units in charges)

    def usage(self, now: float) -> dict[str, PoolUsage]:
        """A snapshot of every pool, for stats and health."""
        with self._lock:
            return {
                name: PoolUsage(
                    pool.used if now < pool.reset_at else 0.0, pool.limit, max(0.0, pool.reset_at - now)
                )
                for name, pool in self._pools.items()
            }

    # -- before a call ----------------------------------------------------------------------------

    def _charges_for(self, endpoint: str, weight: float | None) -> tuple[tuple[_Pool, float], ...]:
        charges = self._charges.get(endpoint, self._default_charges)
        if weight is None or not charges:
            return charges
        return ((charges[0][0], weight), *charges[1:])

    def delay_before(self, endpoint: str, now: float, weight: float | None = None) -> float:
        """Seconds to wait before sending a call of ``endpoint``; books its weight at that time.

        Booking here, under the lock, is what spreads concurrent callers out instead of letting them all
        see the same free budget. A call that is then not sent stays booked: a conservative error that
        the next usage header corrects. ``weight`` overrides the endpoint's weight in its own pool (for
        limit- or symbol-dependent weights, see ``weight_of``).
        """
        charges = self._charges_for(endpoint, weight)
        with self._lock:
            if now >= self._banned_until:
                # The common case, decided in one pass: every pool is in its current window, held
                # by nothing and below the pacing line, so the call goes now and is only booked.
                for pool, units in charges:
                    if not (
                        pool.hold_until <= now < pool.reset_at
                        and pool.blocked_until <= now
                        and pool.used + units < pool.pace_from
                    ):
                        break
                else:
                    for pool, units in charges:
                        pool.used += units
                        pool.inflight += units
                    return 0.0
            start = now if now > self._banned_until else self._banned_until
            for _ in range(3):  # a later start can move another pool's constraint; settle in a few passes
                moved = False
                for pool, units in charges:
                    if start < pool.hold_until:
                        start, moved = pool.hold_until, True
                    if start >= pool.reset_at:
                        continue  # that pool will be in a fresh window
                    if start < pool.blocked_until:
                        start, moved = pool.blocked_until, True
                        continue
                    if units > pool.cap - pool.used:
                        pool.blocked_until = pool.reset_at  # spent: nobody goes before the reset
                        start, moved = pool.reset_at, True
                    elif pool.used >= pool.pace_from and start < pool.next_free:
                        start, moved = pool.next_free, True
                if not moved:
                    break
            for pool, units in charges:
                if start >= pool.reset_at:
                    pool.roll(start)
                remaining = pool.cap - pool.used
                if pool.used >= pool.pace_from and remaining > 0.0:
                    pool.next_free = start + (pool.reset_at - start) * units / remaining
                pool.used += units
                pool.inflight += units
        return start - now

    def release(self, endpoint: str, weight: float | None = None) -> None:
        """Undo ``delay_before``'s booking for a call that was never sent (a ban or the deadline
        refused it, or it failed before the request went out): it must not spend the budget."""
        charges = self._charges_for(endpoint, weight)
        with self._lock:
            for pool, units in charges:
                inflight, used = pool.inflight - units, pool.used - units
                pool.inflight = inflight if inflight > 0.0 else 0.0
                pool.used = used if used > 0.0 else 0.0

    # -- after a call -----------------------------------------------------------------------------

    def observe(
        self,
        endpoint: str,
        status: int,
        headers: Mapping[str, Any] | None,
        now: float,
        body: str | None = None,
        weight: float | None = None,
    ) -> None:
        """Record the answer to a call: usage headers, and on 4xx/5xx the Retry-After and ban answers.

        ``body`` is the error body or ccxt error message (only read when ``status`` >= 400).
        """
        charges = self._charges_for(endpoint, weight)
        with self._lock:
            for pool, units in charges:
                inflight = pool.inflight - units
                pool.inflight = inflight if inflight > 0.0 else 0.0
            if headers:
                known = endpoint in self._charges
                primary = self._primary[endpoint if known else ""]
                wanted = self._endpoint_headers[endpoint if known else ""]
                if type(headers) is dict:  # plain dict: try the usual spellings
                    for header in wanted:
                        raw = _header(headers, header.names)
                        if raw is not None:
                            self._apply_header(header, primary, raw, now)
                else:  # requests' CaseInsensitiveDict, aiohttp's CIMultiDictProxy
                    for header in wanted:
                        raw = headers.get(header.lower)
                        if raw is not None:
                            self._apply_header(header, primary, raw, now)
        if status >= 400:
            self._observe_refusal(endpoint, status, headers, now, body)

    def _apply_header(self, header: _Header, primary: _Pool | None, raw: Any, now: float) -> None:
        value = _number(raw)
        if value is None:
            return
        meaning = header.meaning
        if meaning == "allow_at_epoch_ms":
            until = min(value / 1000.0 - self.clock_offset_s, now + RETRY_AFTER_MAX_S)  # a broken stamp
            if until > self._banned_until:
                self._banned_until = until
            return
        pool = header.pool if header.pool is not None else primary
        if pool is None:
            return
        if meaning == "limit":
            if value > 0.0:
                pool.set_limit(value)
            return
        if meaning == "reset_after_ms":
            pool.reset_at = now + value / 1000.0
            return
        if meaning == "reset_at_epoch_ms":
            pool.reset_at = value / 1000.0 - self.clock_offset_s
            return
        if now >= pool.reset_at:
            pool.roll(now)
        used = value if meaning == "used" else pool.limit - value
        pool.used = used + pool.inflight
        if pool.used + 1.0 <= pool.cap:
            pool.blocked_until = 0.0  # the exchange says there is budget again
        elif pool.blocked_until < pool.reset_at:
            pool.blocked_until = pool.reset_at

    def _observe_refusal(
        self, endpoint: str, status: int, headers: Mapping[str, Any] | None, now: float, body: str | None
    ) -> None:
        profile = self.profile
        if body:
            code, message = profile.error_fields(body)
            rule = profile.classify_error(code, message, status)
        else:
            message = ""
            rule = profile.classify_error(None, "", status)
        refused = status in (418, 429)
        if rule is None and not refused:
            return
        kind = FailureKind.RATE_LIMIT
        if rule is not None:
            if rule.kind not in (FailureKind.RATE_LIMIT, FailureKind.BAN):
                return
            kind = rule.kind
        if status == 418:
            kind = FailureKind.BAN  # "I'm a teapot" is how Binance-style APIs announce an IP ban
        # A date is the exchange's clock: read it against the exchange's now (as ban ends are).
        after = _header(headers, self._retry_after) if headers else None
        retry_after = parse_retry_after(after, now + self.clock_offset_s)
        with self._lock:
            named = None if rule is None or rule.pool is None else self._pools[rule.pool]
            pool = named if named is not None else self._primary.get(endpoint, self._primary[""])
            until = None
            if rule is not None:
                end = rule.ban_end(message)
                if end is not None:  # no longer than Binance's longest ban, as a Retry-After
                    until = min(end - self.clock_offset_s, now + RETRY_AFTER_MAX_S)
            if retry_after is not None:
                until = max(until or 0.0, now + retry_after)
            if until is None and rule is not None and rule.backoff_s is not None:
                base = now
                if rule.backoff_from == "window_reset" and pool is not None and pool.reset_at > now:
                    base = pool.reset_at
                until = base + rule.backoff_s
            if until is None:
                if pool is None:
                    return
                # Refused without a time (Binance order-count 429s): the pool is spent until its reset.
                if now >= pool.reset_at:
                    pool.roll(now)
                pool.used = max(pool.used, pool.cap)
                until = pool.reset_at
            if kind is FailureKind.BAN or pool is None:
                if until > self._banned_until:
                    self._banned_until = until
            elif until > pool.hold_until:
                pool.hold_until = until
