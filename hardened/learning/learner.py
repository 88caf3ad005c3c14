"""The learning gate: records outcomes, learns which calls fail, and says which to skip.

``ErrorLearner`` is the seeds' "global error learning manager", for any component of a bot:
``predict_error_likelihood(component, context)`` before an operation, and
``record_operation_result(component, context, had_error, ...)`` after it. The wrapper's ``gate``
stage uses the same object through a faster path (``call_key`` / ``decide`` / ``finish``).

On the hot path nothing calls scikit-learn per request: features are quantised into buckets
(``hardened.learning.features``) and each bucket's probability is computed once per model and
cached; the model is retrained in a background thread as data grows. Until a model trained on at
least ``min_samples`` outcomes exists, the gate never skips. Of the calls it would skip, one in
``1 / probe_share`` per call goes through as a probe, so the gate sees a recovery.

Statistics (recent error shares, pace) are updated without a lock: under thread contention an
update may be lost, which moves a share by one call's weight; no call waits for another.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from hardened.learning.anomaly import find_anomalies
from hardened.learning.evaluate import choose_threshold
from hardened.learning.features import (
    BREAKER_CODES,
    FEATURES,
    NO_ROOM,
    NUMERIC,
    OUTCOME,
    ROW_COLUMNS,
    Decayed,
    bucket_limit,
    bucket_log2,
    bucket_room,
    bucket_share,
    generic_parts,
)
from hardened.learning.model import GateModel, ModelVersionError
from hardened.learning.store import RecordStore
from hardened.telemetry.events import bus
from hardened.telemetry.redact import redact_text, redact_value

__all__ = ["ALTERNATIVE_ENDPOINTS", "ErrorLearner"]

log = structlog.get_logger("hardened.learning")

# Endpoints that can stand in for one another when one is predicted to fail.
ALTERNATIVE_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "ticker": ("tickers", "order_book"),
    "tickers": ("ticker",),
    "order_book": ("ticker",),
    "ohlcv": ("trades",),
    "trades": ("ohlcv",),
}
_N_FEATURES = len(FEATURES)
# Probes in a row that succeeded before the gate stops skipping a call, until the next training
# has learned from them (the model alone would keep skipping what it saw failing).
_RECOVERED_AFTER = 2
_SKIP_EVENT_EVERY = 1.0  # seconds: at most one request_skipped event per endpoint per second
_MAX_CACHED = 200_000  # cached bucket probabilities before the cache starts over
_MAX_PENDING = 10_000  # buckets waiting for the scorer
_SCORE_EVERY = 0.05  # seconds between the background scorer's batches
_WARM_ROWS = 50_000  # recent calls whose buckets are scored right after a training
_CALL_FIELDS = 7  # a feature key starts with the call's identity (component ... limit bucket)
_ROOM = FEATURES.index("room")
_HOURS = tuple(float(h) for h in range(24))  # the hour feature, without a float() per call
# What a bucket not scored yet borrows from, first found wins: the last probability scored for
# the same call in the same state (hour of day, room left for it in the rate-limit budget,
# recent failure shares, streak), then with the same room, then the call's last. The full key
# has too many buckets for the cache to hold every one the hot path meets (a call's streak,
# shares and the budget move with every call).
_STATE = tuple(FEATURES.index(name) for name in ("hour", "room", "err_ep", "err_call", "streak_call"))
_H, _R, _E, _C, _S = _STATE
_MAX_DEFERRED = 100_000  # outcomes waiting for the background thread before new ones are dropped
# Outcomes of an endpoint (component x exchange x endpoint) the model must have been trained on
# before it may skip a call of that endpoint (capped by ``min_samples``): a model that saw only
# ticker calls fail says nothing about an order book it never saw, whatever it scores.
_MIN_ENDPOINT_SAMPLES = 20


def _is_flag(value: Any) -> bool:
    """A bool, numpy's included, or the integer 0 or 1 (what a bot's own code may pass)."""
    if isinstance(value, bool | np.bool_):
        return True
    return isinstance(value, int | np.integer) and value in (0, 1)


class ErrorLearner:
    """Records call outcomes, trains the failure model, decides which calls to skip.

    Args:
        store: a ``RecordStore``, or a path for one (``":memory:"``/None: in memory).
        threshold: skip a call whose predicted failure probability is at least this.
        probe_share: share of would-be-skipped calls sent anyway, per call, to see recovery.
        min_samples: outcomes recorded before a model is trained (and so before any skip).
        retrain_every: new outcomes between background retrains.
        model_path: where the model is saved after each training and loaded from at start.
        train_rows: most recent rows a training reads.
        tau: seconds over which recent error shares and pace forget (time constant).
        per_endpoint: one model per exchange x endpoint (default: one model, those as features).
        background: retrain in a thread as data grows (False: only when ``train()`` is called).
        clock: wall-clock seconds (injectable: the evaluation replays days in seconds).
    """

    def __init__(
        self,
        store: RecordStore | str | Path | None = None,
        *,
        threshold: float = 0.8,
        probe_share: float = 0.05,
        min_samples: int = 500,
        retrain_every: int = 5_000,
        model_path: str | Path | None = None,
        train_rows: int = 200_000,
        tau: float = 60.0,
        per_endpoint: bool = False,
        background: bool = True,
        anomaly_every: float = 300.0,
        clock: Callable[[], float] = time.time,
        max_rows: int = 500_000,
        retention: float = 7 * 86_400.0,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 0.0 <= probe_share <= 1.0:
            raise ValueError(f"probe_share must be in [0, 1], got {probe_share}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {min_samples}")
        # refused here rather than met later: tau 0 divided by zero at every record, a negative
        # one overflowed the decay; 0 for the others retrained (or looked for anomalies) on every
        # outcome, in a thread each, or never trained at all
        for name, value in (("retrain_every", retrain_every), ("train_rows", train_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        for name, value in (("tau", tau), ("anomaly_every", anomaly_every)):
            if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be a number of seconds above 0, got {value!r}")
        if isinstance(store, RecordStore):
            self.store = store
        else:
            self.store = RecordStore(store, ROW_COLUMNS, max_rows=max_rows, retention=retention, clock=clock)
        self.threshold = threshold
        self.probe_share = probe_share
        self._probe_every = 0 if probe_share <= 0 else max(1, round(1.0 / probe_share))
        self.min_samples = min_samples
        self.retrain_every = retrain_every
        self.model_path = Path(model_path).expanduser() if model_path is not None else None
        self.train_rows = train_rows
        self.tau = tau
        self.per_endpoint = per_endpoint
        self.background = background
        self.anomaly_every = anomaly_every
        self.clock = clock
        self.model: GateModel | None = None
        self._seen: set[str] | None = None  # endpoints the model saw enough of (None: not known)
        self._cache: dict[tuple[Any, ...], float] = {}
        self._pending: dict[tuple[Any, ...], None] = {}
        self._last_p: dict[tuple[Any, ...], float] = {}
        self._stop = threading.Event()
        self._ep: dict[tuple[Any, ...], Decayed] = {}
        self._call: dict[tuple[Any, ...], Decayed] = {}
        self._pace: dict[tuple[Any, ...], Decayed] = {}
        self._pace_bucket: dict[tuple[Any, ...], float] = {}  # bucketed at each outcome, read per call
        self._latency: dict[tuple[Any, ...], float] = {}
        self._would_skip: dict[tuple[Any, ...], int] = {}
        self._recovered: dict[tuple[Any, ...], int] = {}
        self._last_skip_event: dict[tuple[Any, ...], list[float]] = {}
        self._training = threading.Lock()
        # Outcomes handed over by the hot path, turned into features and rows on the scorer thread
        # (a deque append costs the caller ~0.1 us; the features cost tens of us after a request).
        self._deferred: deque[tuple[Callable[[Any], Any], Any]] = deque()
        self._draining = threading.RLock()  # reentrant: a handler that reads the store drains too
        self.deferred_dropped = 0
        # Background training serves decisions: it starts once something asks for them (an enabled
        # gate, ``predict_error_likelihood``); a recording-only process spends no CPU on fits.
        self.deciding = False
        self._recorded = self.store.count()
        self._next_train = max(self.min_samples, self._recorded + 1)
        self._next_anomaly = 0.0
        self._published: set[tuple[Any, ...]] = set()
        self.skipped = 0
        self.probes = 0
        self.last_training: dict[str, Any] | None = None
        if self.model_path is not None and self.model_path.exists():
            try:
                self.use_model(GateModel.load(self.model_path))
            except ModelVersionError as exc:  # refused, said once, and the gate waits for data
                log.warning("gate_model_refused", path=str(self.model_path), reason=str(exc))
        self.store.before_read = self.drain
        if background:
            threading.Thread(target=self._scorer, name="hardened-gate-scorer", daemon=True).start()

    def _scorer(self) -> None:
        """Record the outcomes the hot path handed over and score the buckets it queued, in
        batches, until the learner closes."""
        while not self._stop.wait(_SCORE_EVERY):
            try:
                self.drain()
                self.score_pending()
            except Exception as exc:  # a bad batch must not stop scoring for the process
                log.error("gate_scoring_failed", error=repr(exc))
        self.drain()

    def defer(self, handler: Callable[[Any], Any], item: Any) -> None:
        """Run ``handler(item)`` on the background thread (at once without one): how the gate stage
        records an outcome without paying for its features on the caller's thread."""
        if not self.background or self._stop.is_set():
            handler(item)
        elif len(self._deferred) < _MAX_DEFERRED:
            self._deferred.append((handler, item))
        else:  # the background thread is far behind: count it rather than grow without bound
            self.deferred_dropped += 1
            if self.deferred_dropped == 1 or self.deferred_dropped % 10_000 == 0:
                log.warning("learning_outcomes_dropped", dropped=self.deferred_dropped, waiting=_MAX_DEFERRED)

    def drain(self) -> int:
        """Run every deferred outcome now, in arrival order; returns how many."""
        queue = self._deferred
        if not queue:
            return 0
        done = 0
        with self._draining:  # one thread at a time, so outcomes are applied in order
            while queue:
                handler, item = queue.popleft()
                try:
                    handler(item)
                except Exception as exc:  # one bad outcome must not lose the rest
                    log.error("gate_record_failed", error=repr(exc))
                done += 1
        return done

    def want_decisions(self) -> None:
        """Something decides with this learner: train in the background as data grows."""
        self.deciding = True

    # --- features -------------------------------------------------------------------------

    def call_key(
        self,
        component: str,
        exchange: str | None,
        endpoint: str | None,
        symbol: str | None = None,
        timeframe: str | None = None,
        variant: str | None = None,
        limit: Any = None,
        headroom: float | None = None,
        breaker: str | int | None = None,
        numbers: tuple[float | None, ...] = (None, None, None, None),
        now: float | None = None,
        room: float | None = None,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(feature key, call identity) of a call about to be made, from what is known now.

        ``room``: share of the call's own rate-limit pool left once its weight is counted; when
        only ``headroom`` (the budget's share left) is known, it stands in (none left: no room)."""
        if now is None:
            now = self.clock()
        ep = (component, exchange, endpoint)
        limit_n = bucket_limit(limit)
        call = (component, exchange, endpoint, symbol, timeframe, variant, limit_n)
        d_ep = self._ep.get(ep)
        d_call = self._call.get(call)
        latency = self._latency.get(ep)
        if isinstance(breaker, str):
            breaker = BREAKER_CODES.get(breaker)
        if room is None and headroom is not None:  # the weight unknown: the budget's share stands in
            room = headroom if headroom > 0.0 else -1.0
        last_fail = d_call.last_fail if d_call is not None else None
        key = (
            component,
            exchange,
            endpoint,
            symbol,
            timeframe,
            variant,
            limit_n,
            _HOURS[int(now // 3600.0) % 24],
            bucket_room(room),
            breaker,
            self._pace_bucket.get((component, exchange), 0.0),
            bucket_share(d_ep.share()) if d_ep is not None else None,
            bucket_share(d_call.share()) if d_call is not None else None,
            bucket_log2(latency * 1000.0) if latency is not None else None,
            bucket_log2(now - last_fail) if last_fail is not None else None,
            bucket_log2(d_ep.streak) if d_ep is not None else 0.0,
            bucket_log2(d_call.streak) if d_call is not None else 0.0,
            *numbers,
        )
        return key, call

    def context_key(
        self, component: str, context: Mapping[str, Any], now: float | None = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(feature key, call identity) of a bot component's operation described by ``context``."""
        if not isinstance(component, str) or not component:
            raise TypeError(
                f"component must be a non-empty str naming the part of the bot, got {component!r}"
            )
        if not isinstance(context, Mapping):
            raise TypeError(f"operation context must be a mapping, got {type(context).__name__}")
        variant, numbers = generic_parts(context)
        return self.call_key(
            redact_text(component),
            _text(context.get("exchange")),
            _text(context.get("endpoint")),
            _text(context.get("symbol")),
            _text(context.get("timeframe")),
            variant,
            context.get("limit"),
            _number(context.get("headroom")),
            _breaker(context.get("breaker")),
            numbers,
            now,
            _number(context.get("room")),
        )

    # --- deciding -------------------------------------------------------------------------

    def probability(self, key: tuple[Any, ...]) -> float | None:
        """The model's failure probability for a feature key (cached per key), None without model.
        Scores a key not in the cache at once: for the public API, not for the hot path."""
        p = self._cache.get(key)
        if p is not None:
            return p
        model = self.model
        if model is None:
            return None
        p = float(model.predict([key])[0])
        self._remember([key], [p], model)
        return p

    def _remember(self, keys: list[tuple[Any, ...]], probs: Any, model: GateModel) -> None:
        """Cache the probabilities of ``keys`` (scored by ``model``, if it is still the one in use)."""
        if model is not self.model:
            return  # a training swapped the model meanwhile: these scores are stale
        cache = self._cache
        if len(cache) + len(keys) > _MAX_CACHED:  # buckets are bounded, but not by much: start over
            cache = self._cache = {}
        last = self._last_p
        if len(last) > _MAX_CACHED:
            last = self._last_p = {}
        n_call = _CALL_FIELDS
        for key, p in zip(keys, probs, strict=True):
            p = float(p)
            cache[key] = p
            call = key[:n_call]
            last[call] = p
            last[(call, key[_R])] = p
            last[(call, key[_H], key[_R], key[_E], key[_C], key[_S])] = p

    def score_pending(self) -> int:
        """Score, in one batch, the buckets the hot path met without a cached probability;
        returns how many. The background scorer calls it every 50 ms."""
        model = self.model
        if model is None or not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        keys = list(pending)
        self._remember(keys, model.predict(keys), model)
        return len(keys)

    def _borrowed(self, key: tuple[Any, ...], call: tuple[Any, ...]) -> float | None:
        """The probability an unscored bucket borrows (see ``_STATE``), None when the call has none."""
        last = self._last_p
        p = last.get((call, key[_H], key[_R], key[_E], key[_C], key[_S]))
        if p is None:
            p = last.get((call, key[_R]))
            if p is None:
                p = last.get(call)
        return p

    def decide(self, key: tuple[Any, ...], call: tuple[Any, ...]) -> tuple[bool, float | None, bool]:
        """(skip, probability, probe): whether to skip the call, and whether it goes as a probe.

        Never calls scikit-learn: a bucket without a cached probability borrows the last
        probability scored for the same call in the same state (``_STATE``: a storm's first
        refused bucket must not borrow the calm's low probability when an earlier storm's is
        known) and is queued for the scorer. No probe goes while the rate-limit budget is spent:
        the budget's own figures show its recovery, a probe would only earn a 429."""
        if self.model is None:
            return False, None, False
        p = self._cache.get(key)
        if p is None:
            if len(self._pending) < _MAX_PENDING:
                self._pending[key] = None
            p = self._borrowed(key, call)
            if p is None:
                return False, None, False
        if p < self.threshold or self._recovered.get(call, 0) >= _RECOVERED_AFTER:
            return False, p, False
        seen = self._seen
        if seen is not None and f"{call[0]}|{call[1]}|{call[2]}" not in seen:
            return False, p, False  # an endpoint the model had (almost) no outcome of
        n = self._would_skip.get(call, 0) + 1
        self._would_skip[call] = n
        if self._probe_every and n % self._probe_every == 0 and not _spent(key):
            self.probes += 1
            return False, p, True
        self.skipped += 1
        return True, p, False

    def note_skip(self, exchange: str | None, endpoint: str | None, p: float) -> None:
        """Publish ``request_skipped``, at most once a second per endpoint with the count since."""
        now = time.monotonic()
        slot = self._last_skip_event.get((exchange, endpoint))
        if slot is None:
            slot = self._last_skip_event[(exchange, endpoint)] = [0.0, 0]
        slot[1] += 1
        if now - slot[0] >= _SKIP_EVENT_EVERY:
            count, slot[0], slot[1] = slot[1], now, 0
            bus.publish("request_skipped", exchange=exchange, endpoint=endpoint, probability=p, count=count)

    # --- recording ------------------------------------------------------------------------

    def finish(
        self,
        key: tuple[Any, ...],
        call: tuple[Any, ...],
        failed: bool,
        latency: float | None,
        error: str | None = None,
        error_kind: str | None = None,
        attempts: int = 1,
        probe: bool = False,
        details: str | None = None,
        now: float | None = None,
    ) -> None:
        """Record the outcome of a call whose key came from ``call_key`` (enqueue only)."""
        if now is None:
            now = self.clock()
        self.store.append(
            (now, *key, 1 if failed else 0, error, error_kind, attempts, latency, probe, details)
        )
        tau = self.tau
        ep = call[:3]
        d = self._ep.get(ep)
        if d is None:
            d = self._ep[ep] = Decayed()
        d.add(now, failed, tau)
        d = self._call.get(call)
        if d is None:
            if len(self._call) >= 100_000:
                self._call = {}
            d = self._call[call] = Decayed()
        d.add(now, failed, tau)
        if failed:
            self._recovered.pop(call, None)
        elif call in self._would_skip or call in self._recovered:
            # a success the model did not expect (a probe, or a call after one) counts towards
            # a recovery; one it expected (the rate-limit budget came back) does not
            self._would_skip.pop(call, None)
            p = self._cache.get(key)
            if p is None:
                p = self._borrowed(key, call)
            if call in self._recovered or (p is not None and p >= self.threshold):
                self._recovered[call] = self._recovered.get(call, 0) + 1
        pace_key = call[:2]
        d = self._pace.get(pace_key)
        if d is None:
            d = self._pace[pace_key] = Decayed()
        d.add(now, failed, tau)
        # the pace as of this outcome (rate at now == last: calls / tau), bucketed here once
        # rather than decayed to the present on every call_key (an exp per call on the hot path)
        self._pace_bucket[pace_key] = bucket_log2(d.calls / tau * 4.0)
        if latency is not None:
            old = self._latency.get(ep)
            self._latency[ep] = latency if old is None else old + 0.1 * (latency - old)
        self._recorded += 1
        if self._recorded >= self._next_train and self.background and self.deciding:
            self._next_train = self._recorded + self.retrain_every
            self._spawn(self.train)
        if self.background and now >= self._next_anomaly:
            self._next_anomaly = now + self.anomaly_every
            if self._recorded >= self.min_samples:
                self._spawn(self._publish_anomalies)

    def _spawn(self, target: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a failed training leaves the previous model in place
                log.error("gate_background_failed", task=target.__name__, error=repr(exc))

        threading.Thread(target=run, name=f"hardened-{target.__name__}", daemon=True).start()

    # --- the seeds' API -------------------------------------------------------------------

    def predict_error_likelihood(self, component: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """``error_probability``, ``confidence``, ``should_attempt``, ``risk_level`` and
        ``alternative_suggestions`` for an operation of ``component`` described by ``context``."""
        self.want_decisions()
        self.drain()
        key, call = self.context_key(component, context)
        skip, p, probe = self.decide(key, call)
        trained = p is not None
        if p is None:  # no model yet: the recent failure share of this call, for information only
            d = self._call.get(call) or self._ep.get(call[:3])
            p = (d.share() or 0.0) if d is not None else 0.0
        return {
            "error_probability": round(p, 4),
            "confidence": round(self._confidence(call, p) if trained else 0.0, 4),
            "should_attempt": not skip,
            "probe": probe,
            "risk_level": "high" if p >= self.threshold else "medium" if p >= 0.3 else "low",
            "alternative_suggestions": self._alternatives(key, call, context, p) if p >= 0.3 else [],
            "model_trained": trained,
        }

    def record_operation_result(
        self,
        component: str,
        context: Mapping[str, Any],
        had_error: bool,
        error_details: str | None = None,
        success_metrics: Mapping[str, Any] | None = None,
        execution_time: float | None = None,
    ) -> None:
        """Record the outcome of an operation of ``component`` (enqueued; written in batches).

        ``had_error`` must be a bool (or 0/1): ``"false"`` would count as a failure. The error
        text and the metrics are stored redacted (secret-named keys and secret-looking text)."""
        if not _is_flag(had_error):
            raise TypeError(f"had_error must be True or False, got {type(had_error).__name__} {had_error!r}")
        if execution_time is not None:
            if isinstance(execution_time, bool) or not isinstance(execution_time, Real):
                raise TypeError(
                    f"execution_time must be seconds (a number), got {type(execution_time).__name__}"
                )
            if not math.isfinite(execution_time) or execution_time < 0:
                raise ValueError(
                    f"execution_time must be a finite number of seconds >= 0, got {execution_time!r}"
                )
        if success_metrics is not None and not isinstance(success_metrics, Mapping):
            raise TypeError(
                f"success_metrics must be a mapping or None, got {type(success_metrics).__name__}"
            )
        key, call = self.context_key(component, context)
        details = None
        if error_details is not None or success_metrics:
            details = json.dumps(
                {
                    "error": redact_text(str(error_details)) if error_details is not None else None,
                    "metrics": redact_value(dict(success_metrics or {})),
                },
                default=str,
            )[:2000]
        self.finish(
            key,
            call,
            bool(had_error),
            float(execution_time) if execution_time is not None else None,
            error="error" if had_error else None,
            details=details,
        )

    def _confidence(self, call: tuple[Any, ...], p: float) -> float:
        """How sure the model is: how decisive the probability is, times how much of this
        component x endpoint it has seen (full at ``min_samples`` outcomes)."""
        model = self.model
        seen = 0
        if model is not None:
            seen = model.schema.get("group_samples", {}).get("|".join(str(c) for c in call[:3]), 0)
        return abs(2.0 * p - 1.0) * min(1.0, seen / self.min_samples)

    def _alternatives(
        self, key: tuple[Any, ...], call: tuple[Any, ...], context: Mapping[str, Any], p: float
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if context.get("cache_available") or context.get("cached"):
            out.append({"action": "serve_cache", "reason": "an earlier answer is held"})
        d = self._call.get(call)
        since = (self.clock() - d.last_fail) if d is not None and d.last_fail is not None else None
        wait = 30.0 if since is None else min(300.0, max(5.0, 2.0 * since))
        out.append({"action": "wait", "seconds": round(wait, 1), "reason": f"predicted failure {p:.0%}"})
        endpoint = call[2]
        for other in ALTERNATIVE_ENDPOINTS.get(str(endpoint), ()):
            alt_key = (*key[:2], other, *key[3:])
            q = self.probability(alt_key)
            if q is not None and q < self.threshold:
                out.append({"action": "use_endpoint", "endpoint": other, "error_probability": round(q, 4)})
        return out

    # --- training -------------------------------------------------------------------------

    def training_data(self) -> tuple[list[tuple[Any, ...]], list[int], list[tuple[Any, ...]]]:
        """(feature keys, labels, rows) of the most recent ``train_rows`` outcomes."""
        rows = self.store.rows(limit=self.train_rows)
        keys = [tuple(row[1 : 1 + _N_FEATURES]) for row in rows]
        labels = [int(row[1 + _N_FEATURES]) for row in rows]
        return keys, labels, rows

    def train(self, force: bool = False) -> dict[str, Any] | None:
        """Fit a model on the recorded outcomes and start using it; None when there are fewer
        than ``min_samples`` (unless ``force``) or a training is already running."""
        if not self._training.acquire(blocking=False):
            return None
        try:
            keys, labels, _ = self.training_data()
            if len(keys) < self.min_samples and not force:
                return None
            if not keys:
                return None
            keys = [_floats(k) for k in keys]
            model = GateModel.fit(keys, labels, per_endpoint=self.per_endpoint)
            groups: dict[str, int] = {}
            for k in keys:
                name = f"{k[0]}|{k[1]}|{k[2]}"
                groups[name] = groups.get(name, 0) + 1
            model.schema["group_samples"] = groups
            self.use_model(model, keys[-_WARM_ROWS:])
            self._recovered = {}
            if self.model_path is not None:
                model.save(self.model_path)
            self.last_training = {
                "samples": len(keys),
                "failures": int(sum(labels)),
                "fit_seconds": model.schema["fit_seconds"],
                "trained_at": model.schema["trained_at"],
            }
            log.info("gate_model_trained", **self.last_training)
            return self.last_training
        finally:
            self._training.release()

    def tune_threshold(
        self, validation_share: float = 0.25, max_good_skipped: float = 0.01
    ) -> dict[str, Any] | None:
        """Choose the skip threshold on held-out recorded time and start using it.

        A model is fitted on the oldest ``1 - validation_share`` of the recorded time and scores
        the rest; the threshold becomes the lowest candidate that would skip at most
        ``max_good_skipped`` of the good calls there (``evaluate.choose_threshold``). Returns the
        choice and every candidate's figures; None when too little is recorded to hold some out."""
        if not 0.0 < validation_share < 1.0:
            raise ValueError(f"validation_share must be between 0 and 1, got {validation_share}")
        keys, labels, rows = self.training_data()
        if len(rows) < max(20, self.min_samples):
            return None
        t0, t1 = float(rows[0][0]), float(rows[-1][0])
        cut = t1 - (t1 - t0) * validation_share
        n_fit = sum(1 for row in rows if float(row[0]) < cut)
        fit_keys = [_floats(k) for k in keys[:n_fit]]
        val_keys = [_floats(k) for k in keys[n_fit:]]
        if not fit_keys or not val_keys or 0 in (sum(labels[:n_fit]), n_fit - sum(labels[:n_fit])):
            return None  # one side empty, or nothing (or everything) failed before the cut
        model = GateModel.fit(fit_keys, labels[:n_fit], per_endpoint=self.per_endpoint)
        probs = [float(p) for p in model.predict(val_keys)]
        threshold, figures = choose_threshold(probs, labels[n_fit:], max_good_skipped)
        self.threshold = threshold
        chosen = next(row for row in figures if row["threshold"] == threshold)
        found = {
            "threshold": threshold,
            # False when no candidate met the budget (the highest is returned, and skips more)
            "within_budget": (chosen["good_skipped_share"] or 0.0) <= max_good_skipped,
            "max_good_skipped": max_good_skipped,
            "fitted_on": n_fit,
            "validated_on": len(val_keys),
            "candidates": figures,
        }
        log.info("gate_threshold_tuned", threshold=threshold, validated_on=len(val_keys))
        return found

    def use_model(self, model: GateModel, warm: list[tuple[Any, ...]] | None = None) -> None:
        """Start deciding with ``model`` (trained elsewhere, or loaded); the buckets of ``warm``
        (recent calls' keys; default: the most recent recorded) are scored at once, in one batch,
        so the hot path finds them cached."""
        if warm is None:
            warm = [_floats(tuple(r[1 : 1 + _N_FEATURES])) for r in self.store.rows(limit=_WARM_ROWS)]
        groups = model.schema.get("group_samples")
        least = min(self.min_samples, _MIN_ENDPOINT_SAMPLES)
        self._seen = (
            {str(name) for name, n in groups.items() if isinstance(n, int) and n >= least}
            if isinstance(groups, dict)
            else None  # a model fitted outside ``train`` (no counts kept): trusted as it is
        )
        self.model = model
        self._cache = {}
        self._last_p = {}
        self._pending = {}
        keys = list(dict.fromkeys(warm))  # distinct, most recent last
        for start in range(0, len(keys), 20_000):
            chunk = keys[start : start + 20_000]
            self._remember(chunk, model.predict(chunk), model)

    # --- looking inside -------------------------------------------------------------------

    def get_anomaly_report(self, hours: float = 24) -> dict[str, Any]:
        """Latency and error-rate anomalies per endpoint over the last ``hours`` (IsolationForest)."""
        if not hours > 0:
            raise ValueError(f"hours must be positive, got {hours!r}")
        since = self.clock() - hours * 3600.0
        calls = self.store.query(
            "SELECT ts, exchange, endpoint, latency, had_error FROM calls WHERE ts >= ? ORDER BY id", (since,)
        )
        anomalies, judged = find_anomalies(calls)
        return {
            "hours": hours,
            "calls": len(calls),
            "endpoints_judged": judged,
            "anomalies_detected": len(anomalies),
            "anomalies": anomalies,
        }

    def _publish_anomalies(self, hours: float = 1.0) -> list[dict[str, Any]]:
        """Publish each anomaly of the last ``hours`` not published before."""
        fresh = []
        for a in self.get_anomaly_report(hours)["anomalies"]:
            ident = (a["exchange"], a["endpoint"], a["metric"], a["ts"])
            if ident in self._published:
                continue
            self._published.add(ident)
            fresh.append(a)
            bus.publish(
                "anomaly_detected",
                exchange=a["exchange"],
                endpoint=a["endpoint"],
                metric=a["metric"],
                score=a["score"],
                value=a["value"],
                baseline=a["baseline"],
                message=a["detail"],
            )
        return fresh

    def progress(self) -> dict[str, Any]:
        """Learning progress: outcomes recorded, whether a model decides, what it was trained on."""
        model = self.model
        return {
            "recorded": self._recorded,
            "min_samples": self.min_samples,
            "learning_progress": round(min(1.0, self._recorded / self.min_samples), 4),
            "model_trained": model is not None,
            "model": None
            if model is None
            else {k: model.schema.get(k) for k in ("samples", "failures", "trained_at", "hardened_version")},
            "threshold": self.threshold,
            "probe_share": self.probe_share,
            "skipped": self.skipped,
            "probes": self.probes,
            "cached_buckets": len(self._cache),
            "waiting": len(self._deferred),  # outcomes handed over, not yet turned into rows
            "waiting_dropped": self.deferred_dropped,
            "store": self.store.stats(),
        }

    def close(self) -> None:
        """Stop the scorer, record and write what is queued, and close the store."""
        self._stop.set()
        self.drain()
        self.store.close()


def _spent(key: tuple[Any, ...]) -> bool:
    """Whether the rate-limit budget has no room for this call (a probe would only earn a 429)."""
    return key[_ROOM] == NO_ROOM


def _text(value: Any) -> str | None:
    """A context's text as stored and shown in reports: secret-looking parts masked (an
    ``endpoint`` given as a signed URL kept its ``apiKey=`` and ``signature=`` in the store)."""
    return None if value is None else redact_text(str(value))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _breaker(value: Any) -> int | float | None:
    """A context's ``breaker``: a state name ("closed", "half_open", "open") or its code 0-2.
    Anything else is refused here: it went into the key as it was, where a dict made the key
    unhashable and an int past 64 bits stopped the store's writer."""
    if value is None:
        return None
    if isinstance(value, str):
        return BREAKER_CODES.get(value)
    if not isinstance(value, bool) and isinstance(value, Real) and value in (0, 1, 2):
        return int(value)
    raise ValueError(
        f"context 'breaker' must be 'closed', 'half_open', 'open' or 0-2, got {type(value).__name__}"
    )


def _floats(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key read back from SQLite: numbers as floats (SQLite returns 3.0 as 3.0, 3 as 3)."""
    n_cat = _N_FEATURES - len(NUMERIC)
    return (*key[:n_cat], *(None if v is None else float(v) for v in key[n_cat:]))


assert OUTCOME[0] == "had_error", "training_data reads the label right after the features"
