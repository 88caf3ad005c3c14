"""The drop-in wrapper: ``HardenedClient(ccxt.binance(...))`` behaves like the exchange it wraps.

Every unified ccxt method (``fetch_*``, ``create_order``, ``load_markets``, ...) keeps its
signature and its return value, and runs through the pipeline of ``hardened.pipeline``; every
other attribute (``id``, ``markets``, ``options``, ...) reads and writes through to the wrapped
exchange, which stays available as ``.inner``. The sync and async clients differ only in the
driver they hand each call to.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ccxt
import structlog
import tenacity

from hardened.adapters import ExchangeProfile, load_profile
from hardened.alerts import start_alerts
from hardened.config import EndpointPolicy, HardenedConfig
from hardened.deadline import enforce_deadline
from hardened.endpoints import Endpoint, endpoint_for
from hardened.errors import (
    CircuitOpenError,
    ClientOrderIdConflict,
    ClientOrderIdInUse,
    DataQualityError,
    DeadlineExceeded,
    ErrorKind,
    OrderStateUnknown,
    RateLimitBackoff,
    RequestSkipped,
    classify,
)
from hardened.learning import learner_for
from hardened.orders import OrderRecovery
from hardened.pipeline import CallContext, Pipeline, Stage, current_call, run_async, run_sync
from hardened.pipeline.breaker import BreakerView, EndpointBreaker
from hardened.pipeline.breaker_stage import BreakerStage
from hardened.pipeline.cache import (
    DEFAULT_STALE_IF_ERROR,
    DEFAULT_TTL,
    MARKET_DATA,
    NEVER_STALE,
    CacheStage,
)
from hardened.pipeline.context import ClockState
from hardened.pipeline.gate import GateStage
from hardened.pipeline.ratelimit_stage import RateLimitStage
from hardened.pipeline.record import AttemptLogStage, EndpointStats, RecordStage
from hardened.pipeline.retry import RetryBudget, RetryPolicy
from hardened.pipeline.validate import ValidateStage, reject_garbled_answer
from hardened.placement import cancel_plan, create_plan, run_plan_async, run_plan_sync
from hardened.ratelimit import RateLimitBudget, exchange_clock_offset_s
from hardened.shortcuts import ShortcutSelf, order_shortcut
from hardened.status import ensure_status_server
from hardened.telemetry import health as health_score
from hardened.telemetry import registry
from hardened.telemetry.events import bus
from hardened.telemetry.redact import redact_text, secrets_of

__all__ = ["AsyncHardenedClient", "HardenedClient"]

log = structlog.get_logger("hardened")

# Endpoints whose breakers exist from the start, so ``ex.breakers["binance_ohlcv"]`` works before
# the first call; any other endpoint gets its breaker on first use.
CORE_ENDPOINTS = (
    "markets",
    "ticker",
    "ohlcv",
    "order_book",
    "trades",
    "balance",
    "create_order",
    "cancel_order",
)


class EndpointRuntime:
    """What one endpoint of one client owns: its resolved policy, breaker, stats and retry policy,
    and its cache settings (TTL, how stale an answer may be served on errors).

    The client-wide ``cache_ttl`` and ``stale_if_error`` (and the defaults) reach public market
    data only (``MARKET_DATA``); any other endpoint is account state, cached or served stale only
    when its own ``endpoints={...}`` entry says so, and ``NEVER_STALE`` ones never served stale."""

    __slots__ = (
        "breaker",
        "cacheable",
        "clock",
        "policy",
        "retry",
        "secrets",
        "stale_if_error",
        "stats",
        "ttl",
    )

    def __init__(
        self,
        endpoint: str,
        policy: EndpointPolicy,
        breaker: EndpointBreaker,
        stats: EndpointStats,
        retry: RetryPolicy,
        endpoint_ttl: float | None,
        endpoint_stale: float | None = None,
        secrets: Callable[[], tuple[str, ...]] = tuple,
        clock: ClockState | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock if clock is not None else ClockState()  # shared by the client's endpoints
        self.secrets = secrets  # the exchange's current credentials, for redacting error text
        self.breaker = breaker
        self.stats = stats
        self.retry = retry
        idempotent = _idempotent(endpoint)
        market_data = endpoint in MARKET_DATA
        if endpoint_ttl is not None:  # set for this very endpoint: honoured, even for balances
            ttl = endpoint_ttl
        elif not market_data:  # account state is never cached unless asked per endpoint
            ttl = 0.0
        else:
            ttl = policy.cache_ttl if policy.cache_ttl is not None else DEFAULT_TTL.get(endpoint, 0.0)
        if endpoint_stale is not None:
            stale = endpoint_stale
        elif not market_data:
            stale = 0.0
        else:
            stale = policy.stale_if_error
            if stale is None:
                stale = DEFAULT_STALE_IF_ERROR.get(endpoint, 0.0)
        self.ttl = ttl if idempotent else 0.0
        self.stale_if_error = 0.0 if endpoint in NEVER_STALE or not idempotent else stale
        self.cacheable = self.ttl > 0 or self.stale_if_error > 0


def _idempotent(endpoint: str) -> bool:
    """Whether an endpoint name belongs to a call that is safe to repeat (and so to cache)."""
    found = endpoint_for("fetch_" + endpoint) or endpoint_for(endpoint)
    if endpoint == "markets":
        return True
    return found.idempotent if found is not None else False


class Breakers(Mapping[str, BreakerView]):
    """``ex.breakers``: breaker name (``binance_ohlcv``) -> a live view with state and ``reset()``."""

    def __init__(self, core: _Core) -> None:
        self._core = core

    def __getitem__(self, name: str) -> BreakerView:
        prefix = self._core.exchange_id + "_"
        if not name.startswith(prefix):
            raise KeyError(name)
        endpoint = name[len(prefix) :]
        rt = self._core.runtimes.get(endpoint)
        if rt is None:
            if endpoint not in self._core.known_endpoints():
                raise KeyError(name)
            rt = self._core.runtime(endpoint)
        return rt.breaker.view()

    def __iter__(self) -> Iterator[str]:
        return iter([rt.breaker.name for rt in list(self._core.runtimes.values())])

    def __len__(self) -> int:
        return len(self._core.runtimes)

    def reset_all(self) -> None:
        """Close every breaker of this client."""
        for rt in list(self._core.runtimes.values()):
            rt.breaker.reset()


class _Core:
    """The client's own state, kept in one object so the wrapper's namespace stays the exchange's."""

    __slots__ = (
        "__weakref__",
        "budget",
        "cache",
        "classify",
        "clock",
        "config",
        "exchange",
        "exchange_id",
        "lock",
        "name",
        "pipeline",
        "profile",
        "rate_limits",
        "record",
        "recovery",
        "runtimes",
        "shared",
        "stats_by_endpoint",
    )

    def __init__(self, exchange: Any, config: HardenedConfig, stages: StagesArg, asynchronous: bool) -> None:
        self.exchange = exchange
        self.exchange_id = str(exchange.id)
        self.config = config
        self.lock = threading.Lock()
        self.runtimes: dict[str, EndpointRuntime] = {}
        self.stats_by_endpoint: dict[str, EndpointStats] = {}
        self.budget = RetryBudget(
            config.retry_budget_ratio, config.retry_budget_min, config.retry_budget_window
        )
        self.profile = load_profile(self.exchange_id)  # error codes, budgets, client order ids, clock
        self.classify = profile_classifier(self.profile)
        self.shared: Any = None  # hardened.shared.SharedState when redis_url is set
        if config.redis_url is not None:  # imported here: the in-memory default never loads redis
            from hardened.shared import shared_state_for
            from hardened.shared.cache import venue_of

            self.shared = shared_state_for(
                config.redis_url,
                config.redis_timeout_ms,
                self.exchange_id,
                getattr(exchange, "apiKey", None),
                config.shared_cache,
                lambda: venue_of(exchange),
            )
        self.clock = ClockState()  # one exchange clock: a skew seen by any endpoint resyncs the next call
        self.rate_limits = RateLimitBudget(self.profile, headroom=config.rate_limit_headroom)
        self.recovery = OrderRecovery(
            self.profile, config.order_lookups, config.order_lookup_lag_ms, max_resends=config.order_resends
        )
        self.record = RecordStage(self.exchange_id, self.stats_by_endpoint, lambda: secrets_of(exchange))
        self.cache = CacheStage(
            self.exchange_id, config.cache_max_entries, asynchronous, config.cache_max_bytes
        )
        if self.shared is not None:
            self.cache.shared = self.shared.cache
        self.pipeline = Pipeline(_chosen_stages(self, stages), self.classify)
        self.name = ""

    def known_endpoints(self) -> set[str]:
        return {*CORE_ENDPOINTS, *self.config.endpoints, *self.runtimes}

    def runtime(self, endpoint: str) -> EndpointRuntime:
        """The runtime of ``endpoint``, created once (under the lock) on first use."""
        rt = self.runtimes.get(endpoint)
        if rt is not None:
            return rt
        with self.lock:
            rt = self.runtimes.get(endpoint)
            if rt is None:
                policy = self.config.for_endpoint(endpoint)
                breaker = EndpointBreaker(f"{self.exchange_id}_{endpoint}", policy, self._breaker_moved)
                if self.shared is not None:  # shared with the same venue's breakers only
                    from hardened.shared.cache import venue_of

                    self.shared.breakers.register(breaker, venue_of(self.exchange))
                stats = self.record.stats_for(endpoint)
                override = self.config.endpoints.get(endpoint)
                rt = EndpointRuntime(
                    endpoint,
                    policy,
                    breaker,
                    stats,
                    RetryPolicy(policy, self.budget, self._retrying),
                    override.cache_ttl if override is not None else None,
                    override.stale_if_error if override is not None else None,
                    self.record.secrets,
                    self.clock,
                )
                self.runtimes[endpoint] = rt
        return rt

    def _breaker_moved(self, breaker: EndpointBreaker, old: str | None, new: str) -> None:
        endpoint = breaker.name[len(self.exchange_id) + 1 :]
        fields = {
            "exchange": self.exchange_id,
            "endpoint": endpoint,
            "breaker": breaker.name,
            "old": old,
            "new": new,
        }
        if breaker.shared:  # another process's transition, taken from the shared state
            fields["source"] = "shared"
        if new == "open":
            log.warning("breaker_opened", **fields)
        elif new == "closed":
            log.info("breaker_closed", **fields)
        else:
            log.info("breaker_half_open", **fields)
        bus.publish("breaker_transition", client=self.name, **fields)

    def _retrying(self, ctx: CallContext, retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        delay = retry_state.upcoming_sleep
        log.info(
            "retry_scheduled",
            exchange=self.exchange_id,
            endpoint=ctx.endpoint.name,
            attempt=ctx.attempt,
            delay_s=round(delay, 3),
            error=type(error).__name__ if error is not None else None,
            message=redact_text(str(error), secrets_of(self.exchange))[:300] if error is not None else None,
        )

    def stats(self) -> dict[str, Any]:
        endpoints: dict[str, Any] = {}
        for name, rt in list(self.runtimes.items()):
            data = rt.stats.snapshot()
            data["breaker"] = rt.breaker.view().as_dict()
            endpoints[name] = data
        return {
            "client": self.name,
            "exchange": self.exchange_id,
            "endpoints": endpoints,
            "retry_budget": self.budget.usage(),
            "cache": self.cache.usage(),
            "pipeline": self.pipeline.names(),
            **({"shared": self.shared.status()} if self.shared is not None else {}),
        }


def default_stages(core: _Core) -> list[Stage]:
    """The stages in order, outermost first (see ``hardened.pipeline`` for what each does)."""
    stages: list[Stage] = [core.record]
    config = core.config
    if config.gate_enabled or config.learning_record:  # records always; skips only when enabled
        learner = learner_for(config)
        stages.append(GateStage(core.exchange_id, learner, config.gate_enabled, core.rate_limits, core.cache))
    stages += [core.cache, BreakerStage()]
    if core.config.rate_limit_pacing:
        shared_budget = core.shared.budget if core.shared is not None else None
        offset = functools.partial(exchange_clock_offset_s, core.exchange)  # read at each refusal
        stages.append(RateLimitStage(core.exchange_id, core.rate_limits, shared_budget, offset))
    stages.append(ValidateStage(core.exchange))
    if core.config.log_attempts:
        stages.append(AttemptLogStage(core.exchange_id))
    return stages


# ``stages=``: None for the defaults, a list to replace them, or a function given the defaults
# (built for this client, outermost first) that returns the list to use.
StagesArg = Sequence[Stage] | Callable[[list[Stage]], Sequence[Stage]] | None


def _chosen_stages(core: _Core, stages: StagesArg) -> list[Stage]:
    """The stages a client runs: the defaults, the caller's list, or what their function made of
    the defaults; anything that is not a ``Stage`` is refused, naming what it is."""
    if stages is None:
        return default_stages(core)
    chosen = list(stages(default_stages(core)) if callable(stages) else stages)
    for stage in chosen:
        if not isinstance(stage, Stage):
            raise TypeError(f"stages must be hardened.pipeline.Stage instances, got {type(stage).__name__}")
    return chosen


def profile_classifier(profile: ExchangeProfile) -> Any:
    """Classify errors by the exchange's own codes first (its profile), then by ccxt class.

    ccxt's classes alone get some answers wrong: Bitvavo's clock-skew 304 arrives as an
    AuthenticationError, KuCoin's 200002 order-rate limit as a generic error, Binance's WAF 403 as
    ExchangeNotAvailable; the profile knows what each code means.
    """

    def classify_error(error: BaseException) -> ErrorKind:
        if isinstance(error, ccxt.BaseError) and not isinstance(error, _OWN_ERRORS):
            rule = profile.classify_exception(error)
            if rule is not None:
                return rule.error_kind
        return classify(error)

    return classify_error


_OWN = frozenset({"inner", "_hd"})
# Errors this library raises itself: classified by class, never by an exchange's codes.
_OWN_ERRORS = (
    CircuitOpenError,
    RequestSkipped,
    RateLimitBackoff,
    DataQualityError,
    OrderStateUnknown,
    DeadlineExceeded,
    ClientOrderIdConflict,
    ClientOrderIdInUse,
)


class _HardenedBase:
    """Shared by the sync and async clients: construction, write-through, inspection."""

    inner: Any
    _hd: _Core
    _wrap: Any  # (endpoint, name, bound method) -> wrapper: each driver class says how a call runs
    _wrap_shortcut: Any  # the same for an order shortcut routed through create_order

    def __init__(
        self,
        exchange: Any,
        config: HardenedConfig | None = None,
        *,
        stages: StagesArg = None,
        **overrides: Any,
    ) -> None:
        if not hasattr(exchange, "id") or not hasattr(exchange, "has"):
            raise TypeError(f"HardenedClient wraps a ccxt exchange instance, got {type(exchange).__name__}")
        _check_kind(exchange, asynchronous=isinstance(self, AsyncHardenedClient))
        if config is None:
            config = HardenedConfig(**overrides)
        else:
            config = config.with_overrides(**overrides)
        object.__setattr__(self, "inner", exchange)
        core = _Core(exchange, config, stages, asynchronous=isinstance(self, AsyncHardenedClient))
        object.__setattr__(self, "_hd", core)
        _disable_ccxt_retries(exchange)
        _observe_http_answers(exchange)
        if not isinstance(self, AsyncHardenedClient):
            enforce_deadline(exchange)  # requests' timeout is per read: bound the whole call too
        for endpoint in CORE_ENDPOINTS:
            core.runtime(endpoint)
        core.name = registry.register(self, core.exchange_id)
        core.record.client = core.name
        if config.status_port is not None:  # one status server per process, started by the first
            ensure_status_server(config.status_port, token=config.status_token)
        if config.alerts:  # one dispatcher per process; channels from the ALERT_* environment
            start_alerts()

    # --- write-through --------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: unified methods get a wrapper, cached on the
        # instance so the next lookup is a plain dict hit; everything else is the exchange's.
        inner = object.__getattribute__(self, "inner")
        endpoint = endpoint_for(name)
        if endpoint is None:
            return getattr(inner, name)
        method = getattr(inner, name)
        shortcut = order_shortcut(type(inner), endpoint.method)
        if shortcut is None:
            wrapper = self._wrap(endpoint, name, method)
        else:
            wrapper = self._wrap_shortcut(endpoint, name, method, shortcut)
        object.__setattr__(self, name, wrapper)
        return wrapper

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.inner, name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self.inner)})

    def __repr__(self) -> str:
        inner = type(self.inner)
        return f"<{type(self).__name__} {self._hd.name} wrapping {inner.__module__}.{inner.__name__}>"

    # --- looking inside -------------------------------------------------------------------

    @property
    def config(self) -> HardenedConfig:
        """The resolved configuration of this client."""
        return self._hd.config

    @property
    def pipeline(self) -> Pipeline:
        """The stages every call runs through, outermost first."""
        return self._hd.pipeline

    @property
    def breakers(self) -> Breakers:
        """Breaker name -> view (``.state``, counters, ``reset()``)."""
        return Breakers(self._hd)

    @property
    def client_name(self) -> str:
        """The name this client is registered under (``binance``, ``binance#2``, ...)."""
        return self._hd.name

    def stats(self) -> dict[str, Any]:
        """Per endpoint: calls, successes, failures by class, retries, skips, cache hits, latency
        p50/p95/p99 (ms), last quality score and breaker state; plus the retry budget."""
        return self._hd.stats()

    def health(self) -> dict[str, Any]:
        """``score`` 0-100, ``status`` (excellent/good/fair/poor/critical) and the reasons."""
        return health_score.client_health(self._hd.stats())


def _patched(exchange: Any, endpoint: Endpoint, name: str) -> bool:
    """Whether ``exchange`` has the method patched on the instance (a test's stand-in): honoured
    as any other method is, through its own pipeline endpoint."""
    own = vars(exchange)
    return name in own or endpoint.method in own


def _check_kind(exchange: Any, asynchronous: bool) -> None:
    """A sync client around an async exchange (or the reverse) fails here, naming what to use,
    instead of handing coroutines to the validators and failing as bad data after its retries."""
    fetch = getattr(exchange, "fetch", None)
    if fetch is None or inspect.iscoroutinefunction(fetch) == asynchronous:
        return
    name = type(exchange).__name__
    if asynchronous:
        raise TypeError(
            f"AsyncHardenedClient wraps an async exchange, got the sync ccxt.{name}: use "
            f"AsyncHardenedClient(ccxt.async_support.{name}(...)), or HardenedClient(ccxt.{name}(...)) "
            "to stay sync"
        )
    raise TypeError(
        f"HardenedClient wraps a sync exchange, got the async ccxt.async_support.{name}: use "
        f"HardenedClient(ccxt.{name}(...)), or AsyncHardenedClient(ccxt.async_support.{name}(...)) "
        "to stay async"
    )


def _disable_ccxt_retries(exchange: Any) -> None:
    """ccxt's own ``maxRetriesOnFailure`` resends POSTs too (a second order): keep it at 0."""
    options = getattr(exchange, "options", None)
    if isinstance(options, dict):
        if options.get("maxRetriesOnFailure"):
            log.warning(
                "ccxt_retries_disabled",
                exchange=exchange.id,
                was=options.get("maxRetriesOnFailure"),
                reason="ccxt's retries resend orders; hardened retries idempotent calls only",
            )
        options["maxRetriesOnFailure"] = 0


def _observe_http_answers(exchange: Any) -> None:
    """Hand each HTTP answer's status and headers to the call in flight (Retry-After, budgets).

    ccxt calls ``handle_errors`` for every answer, success or not, in the caller's thread or task,
    so the current call is found through a context variable: safe with threads and tasks alike.
    """
    original = exchange.handle_errors
    if getattr(original, "_hardened_observer", False):
        return

    exchange_id = str(exchange.id)

    def handle_errors(code: Any, reason: Any, url: Any, method: Any, headers: Any, *rest: Any) -> Any:
        ctx = current_call.get()
        if ctx is not None:
            ctx.http_status = code
            ctx.http_headers = headers
        handled = original(code, reason, url, method, headers, *rest)
        if ctx is not None and len(rest) >= 2:  # rest: body, parsed JSON, request headers, request body
            reject_garbled_answer(ctx, exchange_id, code, rest[0], rest[1])  # before any parser sees it
        return handled

    handle_errors._hardened_observer = True  # type: ignore[attr-defined]
    exchange.handle_errors = handle_errors


# create_order and cancel_order run as plans that survive a lost answer (hardened/placement.py).
ORDER_PLANS = {"create_order": create_plan, "cancel_order": cancel_plan}


def _widen_window(exchange: Any, profile: ExchangeProfile) -> bool:
    """Clock fix for exchanges whose ccxt class ignores ``timeDifference`` (Bitvavo): widen the
    accepted request window instead of resyncing. Returns False when a resync is the fix."""
    clock = profile.clock
    if clock.resync != "widen_window" or clock.window_option is None or clock.max_window_ms is None:
        return False
    exchange.options[clock.window_option] = clock.max_window_ms  # one retry follows: go to the widest
    return True


def _named(wrapper: Any, name: str, method: Any) -> Any:
    """Give a wrapper the name and docstring of the ccxt method it stands for."""
    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.__doc__ = getattr(method, "__doc__", None)
    wrapper.__wrapped__ = method
    return wrapper


class HardenedClient(_HardenedBase):
    """A sync ccxt exchange with the hardened pipeline behind every unified method.

    Thread-safe: breakers, stats and budgets take short locks and none is held across a request.
    """

    def _wrap(self, endpoint: Endpoint, name: str, method: Any) -> Any:
        return self._pipeline_call(self._hd, self.inner, endpoint, name, method)

    @staticmethod
    def _pipeline_call(core: _Core, exchange: Any, endpoint: Endpoint, name: str, method: Any) -> Any:
        """The wrapper that runs ``name`` through the pipeline (and an order plan for orders)."""
        rt = core.runtime(endpoint.name)
        pipe = core.pipeline
        perf = time.perf_counter
        plan = ORDER_PLANS.get(endpoint.name)

        def resync() -> Any:
            if not _widen_window(exchange, core.profile) and exchange.has.get("fetchTime"):
                return exchange.load_time_difference()
            return None

        def place(*args: Any, **kwargs: Any) -> Any:
            return run_plan_sync(plan(exchange, core.profile, core.recovery, args, kwargs, resync=resync))  # type: ignore[misc]

        def call(*args: Any, **kwargs: Any) -> Any:
            # Looked up per call (tens of ns) so a method patched on the exchange later is honoured.
            target = place if plan is not None else getattr(exchange, name)
            return run_sync(pipe, CallContext(rt, endpoint, args, kwargs, perf()), target, resync)

        return _named(call, name, method)

    def _wrap_shortcut(self, endpoint: Endpoint, name: str, method: Any, shortcut: Any) -> Any:
        """An order shortcut (``create_limit_buy_order``...): ccxt's own implementation, run so that
        the ``create_order`` it makes is this client's (plan and pipeline, counted once there)."""
        # Nothing here refers to the client itself (its create_order wrapper holds its core), so a
        # dropped client is freed at once and a wrapper taken from it keeps working.
        core, inner, build = self._hd, self.inner, self._pipeline_call
        own_self = ShortcutSelf(inner, self.create_order)
        patched_call: list[Any] = []

        def call(*args: Any, **kwargs: Any) -> Any:
            if _patched(inner, endpoint, name):
                if not patched_call:
                    patched_call.append(build(core, inner, endpoint, name, method))
                return patched_call[0](*args, **kwargs)
            return shortcut(own_self, *args, **kwargs)

        return _named(call, name, method)

    def close(self) -> None:
        """Release the wrapped exchange's HTTP session and forget this client in the registry."""
        registry.unregister(self._hd.name, self)
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> HardenedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHardenedClient(_HardenedBase):
    """An async (``ccxt.async_support``) exchange with the hardened pipeline behind every method.

    Task-safe: no lock is held across an ``await``. ``async with`` closes the wrapped exchange.
    """

    def _wrap(self, endpoint: Endpoint, name: str, method: Any) -> Any:
        return self._pipeline_call(self._hd, self.inner, endpoint, name, method)

    @staticmethod
    def _pipeline_call(core: _Core, exchange: Any, endpoint: Endpoint, name: str, method: Any) -> Any:
        """The wrapper that runs ``name`` through the pipeline (and an order plan for orders)."""
        rt = core.runtime(endpoint.name)
        pipe = core.pipeline
        perf = time.perf_counter
        plan = ORDER_PLANS.get(endpoint.name)

        async def resync() -> Any:
            if not _widen_window(exchange, core.profile) and exchange.has.get("fetchTime"):
                return await exchange.load_time_difference()
            return None

        async def place(*args: Any, **kwargs: Any) -> Any:
            return await run_plan_async(
                plan(exchange, core.profile, core.recovery, args, kwargs, resync=resync)
            )  # type: ignore[misc]

        async def call(*args: Any, **kwargs: Any) -> Any:
            target = place if plan is not None else getattr(exchange, name)
            return await run_async(pipe, CallContext(rt, endpoint, args, kwargs, perf()), target, resync)

        return _named(call, name, method)

    def _wrap_shortcut(self, endpoint: Endpoint, name: str, method: Any, shortcut: Any) -> Any:
        """An order shortcut (``create_limit_buy_order``...): ccxt's own implementation, run so that
        the ``create_order`` it awaits is this client's (plan and pipeline, counted once there)."""
        core, inner, build = self._hd, self.inner, self._pipeline_call  # no reference to the client
        own_self = ShortcutSelf(inner, self.create_order)
        patched_call: list[Any] = []

        async def call(*args: Any, **kwargs: Any) -> Any:
            if _patched(inner, endpoint, name):
                if not patched_call:
                    patched_call.append(build(core, inner, endpoint, name, method))
                return await patched_call[0](*args, **kwargs)
            return await shortcut(own_self, *args, **kwargs)

        return _named(call, name, method)

    async def close(self) -> None:
        """Close the wrapped exchange (its aiohttp session) and forget this client in the registry."""
        registry.unregister(self._hd.name, self)
        await self.inner.close()

    async def __aenter__(self) -> AsyncHardenedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
