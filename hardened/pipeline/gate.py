"""The gate stage: records every call for the learning gate, and skips calls predicted to fail.

Right after ``record``: ``on_call`` describes the call (exchange, endpoint, symbol, timeframe,
limit, other arguments, the room the rate-limit budget has left for it, breaker state) in feature
buckets, and when the gate is enabled asks the learner for the bucket's cached failure
probability. At or above the threshold the call is skipped (never a call that changes state on
the exchange: orders, cancels, transfers are always sent): answered from the cache when an
answer young enough is held, otherwise ``RequestSkipped`` (a ``ccxt.ExchangeNotAvailable``). A
share of would-be skips goes through as probes. ``on_done`` hands the outcome of every call that
reached the exchange to the learner's background thread (cache hits and local refusals teach
nothing about the exchange and are not recorded). With the gate off (recording only) the call's
features are computed there too, from what ``on_call`` kept (the budget's pools as read, breaker
state, the caller's arguments): the caller's thread pays a tuple and a deque append, not the
features.
"""

from __future__ import annotations

import time
from typing import Any

from hardened.errors import CircuitOpenError, ErrorKind, RateLimitBackoff, RequestSkipped
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Shortcut, Stage

__all__ = ["GateStage", "call_arguments"]

COMPONENT = "exchange"  # the learner's component name for calls made through the wrapper
# Positional argument names of the unified methods whose arguments say what is asked for.
_ARGS: dict[str, tuple[str, ...]] = {
    "ticker": ("symbol",),
    "ohlcv": ("symbol", "timeframe", "since", "limit"),
    "order_book": ("symbol", "limit"),
    "l2_order_book": ("symbol", "limit"),
    "trades": ("symbol", "since", "limit"),
    "create_order": ("symbol", "type", "side", "amount", "price"),
    "cancel_order": ("id", "symbol"),
    "order": ("id", "symbol"),
    "open_orders": ("symbol", "since", "limit"),
    "closed_orders": ("symbol", "since", "limit"),
    "orders": ("symbol", "since", "limit"),
    "my_trades": ("symbol", "since", "limit"),
}
_NOT_SENT = (CircuitOpenError, RateLimitBackoff, RequestSkipped)
_HEADROOM_EVERY = 0.1  # seconds between reads of the rate-limit budget (it takes a lock)
_MAX_COSTS = 1_000  # remembered (endpoint, limit, has symbol) -> weight in its own pool


def call_arguments(
    endpoint: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, str | None, Any, str | None]:
    """(symbol, timeframe, limit, variant) of a unified call; ``variant`` names the other
    arguments that change what is asked (order type/side, the keys of ``params``)."""
    names = _ARGS.get(endpoint)
    found: dict[str, Any] = {}
    if names is not None:
        for name, value in zip(names, args, strict=False):
            found[name] = value
    elif args and isinstance(args[0], str):
        found["symbol"] = args[0]
    if kwargs:
        for name in ("symbol", "timeframe", "limit", "type", "side"):
            if name in kwargs:
                found[name] = kwargs[name]
    symbol = found.get("symbol")
    timeframe = found.get("timeframe")
    if endpoint == "ohlcv" and timeframe is None:
        timeframe = "1m"  # ccxt's default
    parts = []
    if found.get("type") is not None or found.get("side") is not None:
        parts.append(f"{found.get('type')}/{found.get('side')}")
    params = kwargs.get("params")
    if params is None and names is not None and len(args) > len(names) and isinstance(args[len(names)], dict):
        params = args[len(names)]
    if isinstance(params, dict) and params:
        parts.append("params:" + ",".join(sorted(str(k) for k in params)[:5]))
    return (
        symbol if isinstance(symbol, str) else None,
        timeframe if isinstance(timeframe, str) else None,
        found.get("limit"),
        "|".join(parts) if parts else None,
    )


class GateStage(Stage):
    """Feeds the learner every call's outcome; when ``enabled``, skips calls predicted to fail.

    Args:
        exchange_id: the wrapped exchange's id.
        learner: the ``ErrorLearner`` that records, trains and decides.
        enabled: skip calls (False: only record, the gate learns without acting).
        rate_limits: the client's ``RateLimitBudget``, for the headroom feature (or None).
        cache: the client's ``CacheStage``, to answer a skipped call from (or None).
    """

    name = "gate"

    def __init__(
        self, exchange_id: str, learner: Any, enabled: bool, rate_limits: Any = None, cache: Any = None
    ) -> None:
        self.exchange_id = exchange_id
        self.learner = learner
        self.enabled = enabled
        self.rate_limits = rate_limits
        self.cache = cache
        self._headroom: float | None = None
        self._headroom_at = 0.0
        self._left: dict[str, tuple[float, float]] = {}  # pool -> (units left, limit)
        self._costs: dict[tuple[Any, ...], tuple[str | None, float]] = {}
        if enabled:
            learner.want_decisions()

    def headroom(self) -> float | None:
        """Share of the tightest rate-limit pool left, read at most every 0.1 s (with what each
        pool has left, for ``room``)."""
        budget = self.rate_limits
        if budget is None:
            return None
        now = time.monotonic()
        if now - self._headroom_at >= _HEADROOM_EVERY:
            self._headroom_at = now
            wall = time.time()
            banned = budget.banned_until > wall
            left = 0.0 if banned else 1.0  # banned: no budget at all
            pools = {}
            for name, pool in budget.usage(wall).items():
                if pool.limit:
                    left = min(left, 1.0 - pool.used / pool.limit)
                    pools[name] = (0.0 if banned else pool.limit - pool.used, pool.limit)
            self._left = pools
            self._headroom = max(0.0, left)
        return self._headroom

    def room(self, endpoint: str, limit: Any, symbol: str | None) -> float | None:
        """Share of the call's own pool left once its weight is counted (negative: the exchange
        would refuse it), from the pools read at most every 0.1 s (``headroom``); None without a
        budget. An endpoint outside every pool gets the budget's share (none left: -1)."""
        headroom = self.headroom()
        return self._room_in(self._left, headroom, endpoint, limit, symbol)

    def _room_in(
        self,
        left: dict[str, tuple[float, float]],
        headroom: float | None,
        endpoint: str,
        limit: Any,
        symbol: str | None,
    ) -> float | None:
        """``room`` from one reading of the pools (``left``: pool -> units left, limit)."""
        if self.rate_limits is None:
            return None
        if type(limit) is not int:
            limit = None  # only an integer limit changes a weight (and a list is not hashable)
        key = (endpoint, limit, symbol is not None)
        cost = self._costs.get(key)
        if cost is None:
            cost = self._cost(key)
        pool = left.get(cost[0]) if cost[0] is not None else None
        if pool is None:
            return headroom if headroom is None or headroom > 0.0 else -1.0
        return (pool[0] - cost[1]) / pool[1]

    def _cost(self, key: tuple[str, int | None, bool]) -> tuple[str | None, float]:
        """(own pool, weight) of a call, remembered: the weight depends on the endpoint, an
        integer limit (an order book's depth) and whether a symbol is given."""
        endpoint, limit, has_symbol = key
        budget = self.rate_limits
        found: tuple[str | None, float] = (None, 0.0)
        if budget is not None:
            weight = budget.weight_of(endpoint, limit=limit, has_symbol=has_symbol)
            charges = budget.charges(endpoint, weight)
            if charges:
                found = (charges[0][0], float(charges[0][3]))
        if len(self._costs) >= _MAX_COSTS:
            self._costs = {}
        self._costs[key] = found
        return found

    def on_call(self, ctx: CallContext) -> Shortcut | None:
        if not self.enabled:  # recording only: nothing to decide (cache hits cost nothing here)
            return None
        learner = self.learner
        endpoint = ctx.endpoint.name
        headroom = self.headroom()  # re-reads the pools at most every 0.1 s
        key, call = self._call_key(endpoint, ctx.args, ctx.kwargs, ctx.rt.breaker.state, self._left, headroom)
        if not ctx.endpoint.idempotent:
            # An order, a cancel, a transfer: never skipped on a prediction. A skipped cancel
            # leaves an order working that the caller wanted gone, a skipped order is a trade
            # not made; only the caller can weigh that (the breaker still fails fast on an
            # outage it has seen). Recorded all the same, for the model and the report.
            ctx.learning = (key, call, False)
            return None
        skip, p, probe = learner.decide(key, call)
        ctx.learning = (key, call, probe)
        if not skip:
            return None
        if self.cache is not None:
            held, value = self.cache.peek(ctx)
            if held:  # the exchange is spared all the same; the caller gets the answer held
                ctx.cache_hit = True
                ctx.stale = True
                return Shortcut(value)
        ctx.rt.stats.add_skip()
        learner.note_skip(self.exchange_id, endpoint, p)
        raise RequestSkipped(endpoint, p, "learning gate; the cache held no answer")

    def on_done(
        self, ctx: CallContext, result: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        seen = error
        if seen is None and ctx.stale:
            # Served stale (stale-if-error): the exchange failed and the cache answered with an
            # earlier answer. The caller gets data; the gate must still learn the failure, or an
            # outage on a cached endpoint reads as a run of successes (and ends a skip streak).
            seen = ctx.error
        if ctx.attempt == 0 or (ctx.attempt == 1 and isinstance(seen, _NOT_SENT)):
            return result, error  # answered locally: nothing learned about the exchange
        if seen is not None and not isinstance(seen, Exception):
            return result, error  # cancelled or interrupted by the caller: no outcome to learn
        data = ctx.learning
        if data is None:
            if self.enabled:
                return result, error  # skipped or answered before the gate decided
            # Recording only: what the features need from before the call, read now. The breaker
            # admitted the call, so it was closed, or half-open if the call was its probe; the
            # headroom is the figure read at most 0.1 s ago; the arguments are the caller's (the
            # cache may have rewritten ctx's: OHLCV since the last candle held). The pools behind
            # that headroom go along for the room: a reading taken after this call was charged
            # counts its weight twice, a room lower by one call's weight at most.
            asked = ctx.asked
            args, kwargs = asked if asked is not None else (ctx.args, ctx.kwargs)
            headroom = self.headroom()
            breaker = "half_open" if ctx.breaker_probe else "closed"
            data = (headroom, breaker, args, kwargs, self._left)
        failed = False
        name = kind = None
        if seen is not None:
            name = type(seen).__name__
            found = ctx.kind_of(seen)
            kind = found.value
            failed = found is not ErrorKind.PERMANENT  # a bad request is the caller's, not a failure
        learner = self.learner
        outcome = (failed, time.perf_counter() - ctx.started, name, kind, ctx.attempt, learner.clock())
        if len(data) == 3:  # enabled: the key was made before the call, to decide
            learner.defer(self._finish_decided, (data, outcome))
        else:  # the features are computed on the learner's thread
            learner.defer(self._finish_recorded, (ctx.endpoint.name, data, outcome))
        return result, error

    def _call_key(
        self,
        endpoint: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        breaker: Any,
        left: dict[str, tuple[float, float]],
        headroom: float | None,
        now: float | None = None,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        symbol, timeframe, limit, variant = call_arguments(endpoint, args, kwargs)
        room = self._room_in(left, headroom, endpoint, limit, symbol)
        # no headroom: "room" says more (what the budget has left for this very call)
        return self.learner.call_key(
            COMPONENT,
            self.exchange_id,
            endpoint,
            symbol,
            timeframe,
            variant,
            limit,
            None,
            breaker,
            now=now,
            room=room,
        )

    def _finish_decided(self, item: tuple[Any, ...]) -> None:
        (key, call, probe), (failed, latency, name, kind, attempts, now) = item
        self.learner.finish(key, call, failed, latency, name, kind, attempts, probe, now=now)

    def _finish_recorded(self, item: tuple[Any, ...]) -> None:
        endpoint, (headroom, breaker, args, kwargs, left), outcome = item
        failed, latency, name, kind, attempts, now = outcome
        key, call = self._call_key(endpoint, args, kwargs, breaker, left, headroom, now)
        self.learner.finish(key, call, failed, latency, name, kind, attempts, False, now=now)
