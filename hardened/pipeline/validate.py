"""The validation stage: every answer of a data endpoint is scored before anyone trades on it.

A 200 answer with an HTML body makes ccxt return a ticker of ``None``s without an error, and an
exchange can send candles with high < low: no exception tells the bot. ``hardened.quality``
scores each answer 0-100; under the endpoint's ``quality_policy`` this stage raises
``DataQualityError`` (a ``ccxt.BadResponse``: retried like any bad answer and counted by the
breaker), hands back a repaired copy, logs, or does nothing.
"""

from __future__ import annotations

from typing import Any

from hardened import quality
from hardened.errors import DataQualityError
from hardened.pipeline.context import CallContext
from hardened.pipeline.stage import Stage
from hardened.telemetry.events import bus

__all__ = ["ValidateStage"]

# fetch_ohlcv(symbol, timeframe="1m", since=None, limit=None, params={})
_OHLCV_ARGS = ("symbol", "timeframe", "since", "limit", "params")


class ValidateStage(Stage):
    """Score each successful answer; act on the score as the endpoint's policy says."""

    name = "validate"

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.exchange_id = str(exchange.id)

    def on_result(self, ctx: CallContext, result: Any) -> Any:
        policy = ctx.rt.policy
        if policy.quality_policy == "off":
            return result
        endpoint = ctx.endpoint.name
        args = ctx.args
        now_ms: int | None = self.exchange.milliseconds()
        timeframe = since = limit = None
        if endpoint == "ohlcv":
            bound = dict(zip(_OHLCV_ARGS, args, strict=False))
            bound.update(ctx.kwargs)
            timeframe = bound.get("timeframe") or "1m"
            since, limit = bound.get("since"), bound.get("limit")
            params = bound.get("params") or {}
            if "until" in params or "endTime" in params:
                now_ms = None  # a window that ends in the past is old on purpose
            symbol = bound.get("symbol")
        else:
            symbol = args[0] if args else ctx.kwargs.get("symbol")
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
            )
        except DataQualityError as error:
            ctx.quality = error.score
            self._publish(ctx, error.score, error.report, raised=True)
            raise
        if report is not None:
            ctx.quality = report.score
            if report.issues or report.repaired:  # a repair drops data: say so
                self._publish(ctx, report.score, report, raised=False)
        return result

    def _publish(self, ctx: CallContext, score: float, report: Any, raised: bool) -> None:
        bus.publish(
            "quality_failed" if raised else "quality_issues",
            exchange=self.exchange_id,
            endpoint=ctx.endpoint.name,
            score=round(score, 1),
            policy=ctx.rt.policy.quality_policy,
            report=str(report)[:300],
        )
