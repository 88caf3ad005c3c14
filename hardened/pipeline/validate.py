"""The validation stage: every answer of a data endpoint is scored before anyone trades on it.

A 200 answer with an HTML body makes ccxt return a ticker of ``None``s without an error, and an
exchange can send candles with high < low: no exception tells the bot. ``hardened.quality``
scores each answer 0-100; under the endpoint's ``quality_policy`` this stage raises
``DataQualityError`` (a ``ccxt.BadResponse``: retried like any bad answer and counted by the
breaker), hands back a repaired copy, logs, or does nothing.

Private answers (orders, balances) are checked for structure (an order has an id and a status, a
balance its maps), and an empty list only passes when the exchange's JSON held a list.
``reject_garbled_answer`` runs on every HTTP answer, before ccxt's parser: an HTML page or JSON
cut short raises ``DataQualityError`` there (market data: under ``raise`` and ``repair`` only),
so no parser turns it into an order with ``id=None``, empty balances, ``[]`` or an
``AttributeError``; ``create_order``'s plan treats it as a lost answer and looks the order up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import ccxt
import structlog

from hardened import quality
from hardened.adapters import ProfileError, load_profile
from hardened.errors import DataQualityError
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Stage
from hardened.quality.private import garbled_body, list_answer_issue
from hardened.quality.report import Issue, QualityReport, Severity
from hardened.quality.thresholds import QualityThresholds
from hardened.quality.ticker import ticker_is_clean
from hardened.telemetry.events import bus

__all__ = ["PARSER_ERRORS", "ValidateStage", "parser_failure", "reject_garbled_answer"]

log = structlog.get_logger("hardened.quality")

# fetch_ohlcv(symbol, timeframe="1m", since=None, limit=None, params={})
_OHLCV_ARGS = ("symbol", "timeframe", "since", "limit", "params")
# Private endpoints whose answer is a list: "[]" must come from a JSON list, not from garbage.
_LIST_ENDPOINTS = frozenset(
    ("open_orders", "closed_orders", "orders", "canceled_orders", "my_trades", "canceled_and_closed_orders")
)
# Endpoints whose first argument is not a symbol (an order id).
_BY_ID = frozenset(("order", "cancel_order", "edit_order"))
# Exchange-specific params that place an OHLCV or trades window in time (ccxt's ``until``;
# Binance's startTime/endTime, KuCoin's startAt/endAt, Bitvavo's start/end): the caller chose the
# window, so its last candle being old is no staleness, and the answer is not "the latest" that an
# earlier "latest" answer could show to have gone back in time.
_WINDOW_PARAMS = frozenset(("until", "startTime", "endTime", "startAt", "endAt", "start", "end"))


PARSER_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)
"""What ccxt's parsers raise on an answer of the wrong shape (``'str' object has no attribute
'keys'`` from Binance's open orders on an HTML body, ``TypeError`` on ``{"data": null}``)."""


def _raised_in_a_parser(error: BaseException) -> bool:
    """Whether ``error`` passed through one of ccxt's answer parsers (``parse_orders``,
    ``safe_order``, ...): a bad argument fails elsewhere (``market()``, ``amount_to_precision``)
    and must reach the caller as it is."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name.startswith(("parse_", "safe_")) and "ccxt" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def parser_failure(ctx: CallContext | None, error: BaseException) -> BaseException:
    """``error`` as the caller should see it: a parser crash on a 2xx answer becomes a
    ``DataQualityError`` (a ``ccxt.BadResponse``, retried and counted like any bad answer) that
    names the crash; anything else is returned unchanged."""
    if (
        ctx is None
        or not isinstance(error, PARSER_ERRORS)
        or isinstance(error, ccxt.BaseError)
        or not isinstance(ctx.http_status, int)
        or not 200 <= ctx.http_status < 300
        or not _raised_in_a_parser(error)
    ):
        return error
    endpoint = ctx.endpoint.name
    why = f"ccxt's parser failed on the exchange's answer ({type(error).__name__}: {error})"
    report = QualityReport.of(endpoint, [Issue("wrong_shape", Severity.CRITICAL, why[:300])])
    ctx.quality = 0.0
    bad = DataQualityError(endpoint, 0.0, report, why[:300])
    bad.__cause__ = error
    return bad


def reject_garbled_answer(ctx: CallContext, exchange_id: str, status: Any, body: Any, parsed: Any) -> None:
    """Called with every HTTP answer (status, raw body, parsed JSON) of the call in flight.

    Remembers the parsed JSON for the list check, and raises ``DataQualityError`` for a 2xx answer
    whose body is an HTML page or unparseable JSON; on a market-data endpoint only under policy
    ``raise`` or ``repair`` (under ``warn`` and ``off`` the checks and the caller see the parser's
    output). Costs one comparison on a good answer.
    """
    ctx.http_json = parsed
    if parsed is not None or not isinstance(status, int) or not 200 <= status < 300:
        return
    endpoint = ctx.endpoint.name
    policy = "raise"
    if endpoint in quality.DATA_ENDPOINTS:
        # Market data follows its policy: under warn or off the parser's output goes on to the
        # checks (and the caller); under raise or repair garbage is refused here, since what a
        # parser makes of a page can look clean (KuCoin's candles and trades: an empty list).
        policy = ctx.rt.policy.quality_policy
        if policy == "warn" or policy == "off":
            return
    why = garbled_body(body, parsed)
    if why is None:
        return
    report = QualityReport.of(endpoint, [Issue("garbled_body", Severity.CRITICAL, why)])
    bus.publish(
        "quality_failed",
        exchange=exchange_id,
        endpoint=endpoint,
        score=0.0,
        policy=policy,
        report=str(report)[:300],
    )
    ctx.quality = 0.0
    raise DataQualityError(endpoint, 0.0, report, why)


def _market_data(exchange_id: str) -> dict[str, Any]:
    """The exchange's market-data facts as threshold overrides; none for an exchange without a
    profile (or an id no profile can have)."""
    try:
        spec = load_profile(exchange_id).market_data
    except ProfileError:
        return {}
    facts: dict[str, Any] = {}
    if spec.ticker_prices:
        facts["ticker_prices"] = spec.ticker_prices
    if spec.continuous_candles:
        facts["continuous_candles"] = True
    return facts


class ValidateStage(Stage):
    """Score each successful answer; act on the score as the endpoint's policy says."""

    name = "validate"

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.exchange_id = str(exchange.id)
        self._facts = _market_data(self.exchange_id)
        self._venue = (self.exchange_id, object())  # this client's own order book nonce memory
        self._base: QualityThresholds | None = None  # the monitor's limits the next field was built on
        self._thresholds: QualityThresholds | None = None

    def thresholds(self) -> QualityThresholds:
        """The monitor's limits with this exchange's market-data facts (its adapter profile's
        ``[market_data]``), rebuilt only when someone replaced the monitor's limits."""
        base = quality.quality_monitor.thresholds
        if base is not self._base:
            self._thresholds = replace(base, **self._facts) if self._facts else base
            self._base = base
        return self._thresholds  # type: ignore[return-value]

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        policy = ctx.rt.policy
        if policy.quality_policy == "off":
            return result
        endpoint = ctx.endpoint.name
        args = ctx.args
        if endpoint == "ticker" and quality.quality_monitor.quick_ticker:
            # The common case first: a clean ticker passes in one pass (``ticker_is_clean``, the
            # same checks); anything it doubts goes through the full validation below.
            symbol = args[0] if args else ctx.kwargs.get("symbol")
            if ticker_is_clean(
                result,
                self.exchange.milliseconds(),
                symbol if isinstance(symbol, str) else None,
                self.thresholds(),
            ):
                ctx.quality = 100.0
                return result
        if not result and endpoint in _LIST_ENDPOINTS:
            self._check_empty_list(ctx, endpoint, result)
        now_ms: int | None = self.exchange.milliseconds()
        timeframe = since = limit = None
        window = False
        if endpoint == "ohlcv":
            bound = dict(zip(_OHLCV_ARGS, args, strict=False))
            bound.update(ctx.kwargs)
            timeframe = bound.get("timeframe") or "1m"
            since, limit = bound.get("since"), bound.get("limit")
            params = bound.get("params") or {}
            if isinstance(params, dict) and not _WINDOW_PARAMS.isdisjoint(params):
                now_ms = None  # a window placed in the past is old on purpose
                window = True
            symbol = bound.get("symbol")
        elif endpoint in _BY_ID:
            symbol = args[1] if len(args) > 1 else ctx.kwargs.get("symbol")
        else:
            symbol = args[0] if args else ctx.kwargs.get("symbol")
            if endpoint == "trades":  # fetch_trades(symbol, since=None, limit=None, params={})
                since = args[1] if len(args) > 1 else ctx.kwargs.get("since")
                params = args[3] if len(args) > 3 else ctx.kwargs.get("params")
                window = isinstance(params, dict) and not _WINDOW_PARAMS.isdisjoint(params)
        try:
            result, report = quality.check(
                endpoint,
                result,
                policy=policy.quality_policy,
                min_score=policy.min_quality_score,
                timeframe=timeframe,
                now_ms=now_ms,
                symbol=symbol if isinstance(symbol, str) else None,
                since=since if isinstance(since, int) else None,
                limit=limit if isinstance(limit, int) else None,
                exchange=self.exchange_id,
                thresholds=self.thresholds(),
                venue=self._venue,
                sent_at=ctx.started,
                window=window,
            )
        except DataQualityError as error:
            ctx.quality = error.score
            self._publish(ctx, error.score, error.report, raised=True)
            raise
        if report is not None:
            ctx.quality = report.score
            if report.issues or report.repaired:  # a repair drops data: say so
                self._publish(ctx, report.score, report, raised=False)
        if endpoint == "ohlcv" and since is not None and ctx.asked is not None:
            self._check_refresh(ctx, result, since)
        return result

    def _check_refresh(self, ctx: CallContext, result: Any, since: Any) -> None:
        """The cache's incremental refresh asked for candles from the last one it holds (``asked``
        keeps the caller's own arguments when the cache rewrote them): the exchange sent that
        candle before, so
        an answer that does not start with it is impossible, wherever the exchange skips quiet
        intervals (KuCoin) or not. A stale answer that ccxt's ``since`` filter emptied is one."""
        first = result[0] if isinstance(result, list) and result else None
        if isinstance(first, (list, tuple)) and first and first[0] == since:
            return
        why = f"the refresh from the last candle held (open {since}) came back without it"
        report = QualityReport.of("ohlcv", [Issue("gap", Severity.ERROR, why, 1, (), 1.0, True)])
        ctx.quality = report.score
        policy = ctx.rt.policy.quality_policy
        self._publish(ctx, report.score, report, raised=policy != "warn")
        if policy == "warn":
            log.warning(
                "data_quality_impossible_values", endpoint="ohlcv", exchange=self.exchange_id, report=why
            )
            return
        raise DataQualityError("ohlcv", report.score, report, why)

    def _check_empty_list(self, ctx: CallContext, endpoint: str, result: Any) -> None:
        """An empty list parsed from JSON that held no list is garbage, not "nothing there"."""
        status = ctx.http_status
        answered = isinstance(status, int) and 200 <= status < 300
        issue = list_answer_issue(endpoint, result, ctx.http_json, answered)
        if issue is None:
            return
        report = QualityReport.of(endpoint, [issue])
        ctx.quality = report.score
        self._publish(ctx, report.score, report, raised=ctx.rt.policy.quality_policy != "warn")
        if ctx.rt.policy.quality_policy == "warn":
            log.warning(
                "data_quality_below_minimum", endpoint=endpoint, exchange=self.exchange_id, report=str(report)
            )
            return
        raise DataQualityError(endpoint, report.score, report, issue.message)

    def _publish(self, ctx: CallContext, score: float, report: Any, raised: bool) -> None:
        bus.publish(
            "quality_failed" if raised else "quality_issues",
            exchange=self.exchange_id,
            endpoint=ctx.endpoint.name,
            score=round(score, 1),
            policy=ctx.rt.policy.quality_policy,
            report=str(report)[:300],
        )
