"""The entry point the pipeline calls once per successful answer: validate, score, apply the policy.

``QualityMonitor.check`` picks the endpoint's validator, adds the user's custom checks, scores the
issues and then acts on the endpoint's policy:

- ``raise``: return the answer unchanged, or raise ``DataQualityError`` when the score is below
  ``min_score`` or when it holds an impossible value (high < low, a negative price, a crossed book,
  a null timestamp, an infinite number...: see ``hardened.quality.report``), whatever the score;
- ``repair``: when something repairable was found, return a repaired *copy* (the caller's object is
  never modified) and a report of the repaired answer; raise ``DataQualityError`` if even the
  repaired answer scores below ``min_score`` or still holds an impossible value (an all-None
  ticker cannot be repaired into data); a repair is logged as a warning (``data_quality_repaired``).
  A repair that would drop more than ``max_repair_drop`` of the entries is abandoned and the
  original verdict stands (an HTML body is garbage, not a damaged answer);
- ``warn``: return the answer unchanged and log a structlog warning
  (``data_quality_below_minimum`` or ``data_quality_impossible_values``) where ``raise`` would
  have raised;
- ``off``: return ``(result, None)`` at once.

Endpoints without a validator or custom check pass through as ``(result, None)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import structlog

from hardened.errors import DataQualityError
from hardened.quality.custom import CheckContext, CustomCheck, run_custom_checks
from hardened.quality.memory import SeenSpan
from hardened.quality.ohlcv import candle_span, repair_ohlcv, validate_ohlcv
from hardened.quality.order_book import repair_order_book, validate_order_book
from hardened.quality.private import validate_balance, validate_order, validate_orders
from hardened.quality.report import Issue, QualityReport, Severity, score_of
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds
from hardened.quality.ticker import repair_ticker, repair_tickers, validate_ticker, validate_tickers
from hardened.quality.trades import repair_trades, trade_span, validate_trades

__all__ = ["DATA_ENDPOINTS", "POLICIES", "PRIVATE_ENDPOINTS", "QualityMonitor"]

POLICIES = frozenset(("raise", "repair", "warn", "off"))
_log = structlog.get_logger("hardened.quality")
_NONCE_MEMORY = 4096  # books remembered for nonce regression; the memory is cleared when full

# Validator and repairer adapters share one positional signature each:
# validate(result, timeframe, now_ms, since, limit, symbol, last_nonce, thresholds) -> issues
# repair(result, timeframe, now_ms, symbol, thresholds) -> (repaired copy, what was done)
_Validate = Callable[..., list[Issue]]
_Repair = Callable[..., tuple[Any, tuple[str, ...]]]


def _v_ohlcv(r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any) -> list[Issue]:
    return validate_ohlcv(r, timeframe=tf, now_ms=now, since=since, limit=limit, thresholds=th, seen=nonce)


def _v_ticker(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_ticker(r, now_ms=now, symbol=sym, thresholds=th)


def _v_tickers(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_tickers(r, now_ms=now, thresholds=th)


def _v_book(r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any) -> list[Issue]:
    return validate_order_book(r, now_ms=now, symbol=sym, last_nonce=nonce, thresholds=th)


def _v_trades(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_trades(r, now_ms=now, symbol=sym, seen=nonce, thresholds=th)


def _r_ohlcv(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return repair_ohlcv(r, timeframe=tf, now_ms=now, thresholds=th)


def _r_ticker(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return repair_ticker(r, now_ms=now, symbol=sym, thresholds=th)


def _r_tickers(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return repair_tickers(r, now_ms=now, thresholds=th)


def _r_book(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return repair_order_book(r, now_ms=now, symbol=sym, thresholds=th)


def _r_trades(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return repair_trades(r, now_ms=now, symbol=sym, thresholds=th)


_TICKER_FIXES = frozenset(
    ("malformed", "nonpositive_price", "non_finite", "crossed", "range_inconsistent", "negative_volume")
)
_BOOK_FIXES = frozenset(
    ("malformed", "nonpositive_price", "nonpositive_amount", "unsorted_bids", "unsorted_asks", "crossed")
)
# endpoint -> (validate, repair, codes the repair can remove)
_ENDPOINTS: dict[str, tuple[_Validate, _Repair, frozenset[str]]] = {
    "ohlcv": (
        _v_ohlcv,
        _r_ohlcv,
        frozenset(
            (
                "malformed",
                "nonpositive_price",
                "non_finite",
                "ohlc_inconsistent",
                "negative_volume",
                "absurd_timestamp",
                "future_timestamp",
                "misaligned_timestamp",
                "out_of_order",
                "duplicate_timestamp",
                "outlier",
            )
        ),
    ),
    "ticker": (_v_ticker, _r_ticker, _TICKER_FIXES),
    "tickers": (_v_tickers, _r_tickers, _TICKER_FIXES | {"empty_ticker"}),
    "order_book": (_v_book, _r_book, _BOOK_FIXES),
    "l2_order_book": (_v_book, _r_book, _BOOK_FIXES),
    "trades": (
        _v_trades,
        _r_trades,
        frozenset(
            (
                "malformed",
                "nonpositive_price",
                "nonpositive_amount",
                "invalid_side",
                "missing_timestamp",
                "absurd_timestamp",
                "future_timestamp",
                "duplicate_id",
                "out_of_order",
            )
        ),
    ),
}
DATA_ENDPOINTS = frozenset(_ENDPOINTS)
"""Endpoints with built-in checks (``l2_order_book`` shares the order book's)."""


def _v_order(r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any) -> list[Issue]:
    return validate_order(r)


def _v_cancel(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_order(r, require_status=False)  # KuCoin's and Bitvavo's cancel answers: the id only


def _v_orders(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_orders(r)


def _v_balance(
    r: Any, tf: Any, now: Any, since: Any, limit: Any, sym: Any, nonce: Any, th: Any
) -> list[Issue]:
    return validate_balance(r)


def _no_repair(r: Any, tf: Any, now: Any, sym: Any, th: Any) -> tuple[Any, tuple[str, ...]]:
    return r, ()  # a private answer is the account's truth: never patched, only accepted or refused


_NOTHING: frozenset[str] = frozenset()
_PRIVATE: dict[str, tuple[_Validate, _Repair, frozenset[str]]] = {
    "order": (_v_order, _no_repair, _NOTHING),
    "cancel_order": (_v_cancel, _no_repair, _NOTHING),
    "orders": (_v_orders, _no_repair, _NOTHING),
    "open_orders": (_v_orders, _no_repair, _NOTHING),
    "closed_orders": (_v_orders, _no_repair, _NOTHING),
    "canceled_orders": (_v_orders, _no_repair, _NOTHING),
    "balance": (_v_balance, _no_repair, _NOTHING),
    "my_trades": (_v_trades, _no_repair, _NOTHING),
}
PRIVATE_ENDPOINTS = frozenset(_PRIVATE)
"""Private endpoints whose answers get structure checks (ids, statuses, balance maps), never repairs.
``create_order`` is checked inside its exactly-once plan (``hardened.placement``)."""
_CHECKS = {**_ENDPOINTS, **_PRIVATE}


def _memory_key(
    endpoint: str, who: Any, symbol: str | None, since: Any, timeframe: Any, window: bool = False
) -> tuple[Any, ...] | None:
    """Where the memory of earlier answers keeps this request's: an order book by client (or
    exchange) and symbol; the latest trades or candles (no ``since``, no ``window`` placed by the
    exchange's own params) by endpoint and timeframe too."""
    if symbol is None:
        return None
    if endpoint == "order_book" or endpoint == "l2_order_book":
        return (who, symbol)
    if since is None and not window and (endpoint == "trades" or endpoint == "ohlcv"):
        return (who, symbol, endpoint, timeframe)
    return None


def _size(endpoint: str, result: Any) -> int:
    """Entries in an answer: candles, trades, tickers or book levels; a single ticker counts 1."""
    if endpoint in ("order_book", "l2_order_book") and isinstance(result, dict):
        bids, asks = result.get("bids"), result.get("asks")
        return (len(bids) if isinstance(bids, (list, tuple)) else 0) + (
            len(asks) if isinstance(asks, (list, tuple)) else 0
        )
    if endpoint != "ticker" and isinstance(result, (list, tuple, dict)):
        return len(result)
    return 1


class QualityMonitor:
    """Validators, custom checks and order-book nonce memory for one client (or the process).

    Args:
        thresholds: the limits the checks use unless a call passes its own.
    """

    __slots__ = ("_clean", "_custom", "_customs", "_nonces", "quick_ticker", "thresholds")

    def __init__(self, thresholds: QualityThresholds | None = None) -> None:
        self.thresholds = thresholds or DEFAULT_THRESHOLDS
        self._custom: dict[str, CustomCheck] = {}
        self._customs: dict[str, tuple[CustomCheck, ...]] = {}  # endpoint -> checks, rebuilt on change
        self._clean = {name: QualityReport(name, 100.0) for name in _CHECKS}
        # (exchange or client, symbol[, endpoint, timeframe]) -> (a book's nonce or the SeenSpan of
        # the latest trades or candles, when it was kept)
        self._nonces: dict[tuple[Any, ...], tuple[Any, float]] = {}
        # Whether a ticker may take the validation stage's one-pass check (no custom check on it).
        self.quick_ticker = True

    # -- custom checks -------------------------------------------------------------------------
    def add_custom_check(
        self,
        name: str,
        fn: Callable[..., Any],
        endpoints: str | Iterable[str] | None = None,
        *,
        severity: Severity | str = Severity.ERROR,
    ) -> None:
        """Run ``fn(result)`` or ``fn(result, context)`` on every answer of ``endpoints``.

        ``endpoints`` defaults to every endpoint with built-in checks (``ohlcv``, ``ticker``,
        ``tickers``, ``order_book``, ``l2_order_book``, ``trades``); name others (``balance``) to
        check them too. A check returning ``False`` or a message yields an issue named ``name`` at
        ``severity`` covering the whole answer (an error scores 0). Registering a name again
        replaces the earlier check.
        """
        if endpoints is None:
            scope = DATA_ENDPOINTS
        elif isinstance(endpoints, str):
            scope = frozenset((endpoints,))
        else:
            scope = frozenset(endpoints)
        if not scope:
            raise ValueError(f"custom check {name!r}: endpoints must name at least one endpoint")
        check = CustomCheck(name, fn, scope, Severity.parse(severity))
        custom = dict(self._custom)
        custom[name] = check
        self._publish(custom)

    def remove_custom_check(self, name: str) -> bool:
        """Forget the check called ``name``; returns whether there was one."""
        if name not in self._custom:
            return False
        custom = dict(self._custom)
        del custom[name]
        self._publish(custom)
        return True

    def custom_checks(self) -> dict[str, CustomCheck]:
        """The registered checks by name."""
        return dict(self._custom)

    def _publish(self, custom: dict[str, CustomCheck]) -> None:
        by_endpoint: dict[str, list[CustomCheck]] = {}
        for check in custom.values():
            for endpoint in check.endpoints:
                by_endpoint.setdefault(endpoint, []).append(check)
        self._custom = custom
        self._customs = {endpoint: tuple(checks) for endpoint, checks in by_endpoint.items()}
        self.quick_ticker = "ticker" not in self._customs

    # -- checking ------------------------------------------------------------------------------
    def validate(
        self,
        endpoint: str,
        result: Any,
        *,
        timeframe: str | None = None,
        now_ms: int | None = None,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        exchange: str | None = None,
        thresholds: QualityThresholds | None = None,
    ) -> QualityReport | None:
        """Score ``result`` without acting on it; None for an endpoint nothing checks."""
        entry = _CHECKS.get(endpoint)
        customs = self._customs.get(endpoint)
        if entry is None and customs is None:
            return None
        th = thresholds or self.thresholds
        nonce = self._last_nonce(endpoint, exchange, symbol, since, None, timeframe)
        issues = entry[0](result, timeframe, now_ms, since, limit, symbol, nonce, th) if entry else []
        if customs:
            context = CheckContext(endpoint, symbol, timeframe, now_ms, exchange, since, limit)
            issues = [*issues, *run_custom_checks(customs, result, context)]
        if not issues:
            return self._clean.get(endpoint) or QualityReport(endpoint, 100.0)
        return QualityReport.of(endpoint, issues, symbol)

    def check(
        self,
        endpoint: str,
        result: Any,
        *,
        policy: str = "raise",
        min_score: float = 50.0,
        timeframe: str | None = None,
        now_ms: int | None = None,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        exchange: str | None = None,
        thresholds: QualityThresholds | None = None,
        venue: Any = None,
        sent_at: float | None = None,
        window: bool = False,
    ) -> tuple[Any, QualityReport | None]:
        """Validate one answer and apply ``policy``; returns ``(result to hand back, report)``.

        Args:
            endpoint: ``ohlcv``, ``ticker``, ``tickers``, ``order_book``, ``l2_order_book``,
                ``trades``; anything else passes through unless a custom check names it.
            result: what ccxt returned; never modified.
            policy: ``raise`` | ``repair`` | ``warn`` | ``off`` (see the module docstring).
            min_score: 0-100; below it ``raise`` and ``repair`` raise ``DataQualityError``.
            timeframe: the OHLCV timeframe (``'1m'``...), for alignment, gaps and staleness.
            now_ms: the current time in ms; None skips every check relative to now.
            symbol: the symbol asked for (symbol mismatch, book nonce memory, report).
            since, limit: the OHLCV request's range; a ``since`` whose range cannot reach now
                disables the staleness check (historical data is old on purpose).
            exchange: the exchange id, keying the order book nonce memory (with ``symbol``).
            venue: keys the nonce memory instead of ``exchange`` when given: a client passes its
                own token, so two clients of one exchange id (testnet and live) never compare.
            sent_at: ``time.perf_counter()`` when the call began; the book or trades remembered
                are only compared with answers to calls begun after they arrived (None: always).
            thresholds: per-call limits instead of the monitor's.
            window: the trades or candles were asked for a window placed in time by other means
                than ``since`` (ccxt's ``until``, Binance's ``endTime``...): not "the latest", so
                never held against what an earlier "latest" answer showed.

        Returns the clean answer with a shared score-100 report when nothing was found.

        Raises:
            DataQualityError: under ``raise`` or ``repair`` when the (repaired) score is below
                ``min_score``; it is a ``ccxt.BadResponse`` carrying the report.
            ValueError: for an unknown policy.
        """
        if policy == "off":
            return result, None
        entry = _CHECKS.get(endpoint)
        customs = self._customs.get(endpoint)
        if entry is None and customs is None:
            return result, None
        if policy not in POLICIES:
            raise ValueError(f"unknown quality policy {policy!r}; expected raise, repair, warn or off")
        th = thresholds or self.thresholds
        last_nonce = None
        nonce_key = _memory_key(
            endpoint, exchange if venue is None else venue, symbol, since, timeframe, window
        )
        if nonce_key is not None:
            mark = self._nonces.get(nonce_key)
            # Only an answer asked for after the remembered one arrived must be newer: two calls
            # in flight at once may land in either order.
            if mark is not None and (sent_at is None or sent_at > mark[1]):
                last_nonce = mark[0]
        marks: list[SeenSpan] | None = None
        if nonce_key is not None and endpoint == "trades":  # the span comes from the times read once
            marks = []
            issues = validate_trades(
                result, now_ms=now_ms, symbol=symbol, seen=last_nonce, thresholds=th, marks=marks
            )
        elif nonce_key is not None and endpoint == "ohlcv":
            marks = []
            issues = validate_ohlcv(
                result,
                timeframe=timeframe,
                now_ms=now_ms,
                since=since,
                limit=limit,
                thresholds=th,
                seen=last_nonce,
                marks=marks,
            )
        else:
            issues = (
                entry[0](result, timeframe, now_ms, since, limit, symbol, last_nonce, th) if entry else []
            )
        repairs: tuple[str, ...] = ()
        score_before = None
        if issues and policy == "repair" and entry is not None and any(i.code in entry[2] for i in issues):
            fixed, repairs = entry[1](result, timeframe, now_ms, symbol, th)
            if repairs and _size(endpoint, fixed) < (1 - th.max_repair_drop) * _size(endpoint, result):
                repairs = ()  # garbage, not damage: keep the verdict on the original answer
            if repairs:
                score_before = score_of(issues)
                result = fixed
                # What the repair cannot mend stands; a hole the repair itself made in candles
                # that were continuous is said in ``repairs``, not refused.
                kept = [i for i in issues if i.impossible and i.code not in entry[2]]
                again = replace(th, continuous_candles=False) if th.continuous_candles else th
                issues = entry[0](result, timeframe, now_ms, since, limit, symbol, last_nonce, again)
                if kept:
                    stands = {i.code for i in kept}
                    issues = [*(i for i in issues if i.code not in stands), *kept]
        if customs:
            context = CheckContext(endpoint, symbol, timeframe, now_ms, exchange, since, limit)
            issues = [*issues, *run_custom_checks(customs, result, context)]
        if not issues and not repairs:
            if nonce_key is not None:
                self._remember_nonce(nonce_key, marks[0] if marks else result)
            clean = self._clean.get(endpoint)
            if clean is None:  # an endpoint only custom checks look at
                clean = self._clean[endpoint] = QualityReport(endpoint, 100.0)
            return result, clean
        report = QualityReport.of(endpoint, issues, symbol)
        if repairs:
            report = QualityReport(
                endpoint, report.score, report.issues, True, repairs, score_before, symbol=symbol
            )
        if repairs:  # what was dropped or cleared is said, not hidden
            _log.warning(
                "data_quality_repaired",
                endpoint=endpoint,
                exchange=exchange,
                symbol=symbol,
                score_before=round(score_before or 0.0, 1),
                score=round(report.score, 1),
                repairs=list(repairs),
            )
        # Impossible values fail the answer whatever its score; the score judges soft defects.
        impossible = report.impossible
        if impossible or report.score < min_score:
            if policy == "warn":
                _log.warning(
                    "data_quality_below_minimum"
                    if report.score < min_score
                    else "data_quality_impossible_values",
                    endpoint=endpoint,
                    exchange=exchange,
                    symbol=symbol,
                    score=round(report.score, 1),
                    min_score=min_score,
                    issues=sorted(report.codes),
                    report=str(report),
                )
            else:  # the worst issue's words say what is wrong, not only its code
                raise DataQualityError(endpoint, report.score, report, report.issues[0].message[:200])
        elif nonce_key is not None:  # only a book that passed may move the nonce memory forward
            self._remember_nonce(nonce_key, marks[0] if marks and not repairs else result)
        return result, report

    # -- order book nonce and latest-trade memory ----------------------------------------------
    def _last_nonce(
        self,
        endpoint: str,
        exchange: str | None,
        symbol: str | None,
        since: int | None = None,
        sent_at: float | None = None,
        timeframe: str | None = None,
    ) -> Any:
        key = _memory_key(endpoint, exchange, symbol, since, timeframe)
        mark = None if key is None else self._nonces.get(key)
        return mark[0] if mark is not None and (sent_at is None or sent_at > mark[1]) else None

    def _remember_nonce(self, key: tuple[Any, ...], answer: Any) -> None:
        """Move the memory forward: a book's nonce, or the span the latest trades or candles showed."""
        held = self._nonces.get(key)
        if isinstance(answer, dict):
            nonce = answer.get("nonce")
            if not isinstance(nonce, int) or isinstance(nonce, bool):
                return
            if held is not None and not nonce > held[0]:
                return
            value: Any = nonce
        else:
            if not isinstance(answer, SeenSpan):
                answer = trade_span(answer) if key[2] == "trades" else candle_span(answer)
            if answer is None or (held is not None and not answer.newest >= held[0].newest):
                return
            value = answer
        if len(self._nonces) >= _NONCE_MEMORY:
            self._nonces.clear()
        self._nonces[key] = (value, time.perf_counter())

    def forget_nonces(self) -> None:
        """Drop the nonce memory (after a reconnect, or when an exchange resets its sequence)."""
        self._nonces.clear()
