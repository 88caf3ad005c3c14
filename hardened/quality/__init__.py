"""Data-quality validation of exchange answers: OHLCV, tickers, order books and trades, and the
structure of private answers (orders, balances).

The pipeline calls ``check(endpoint, result, policy=..., min_score=..., ...)`` once per successful
call; it returns ``(result, report)`` and, under the ``raise`` policy, raises
``hardened.DataQualityError`` (a ``ccxt.BadResponse``) when the score is below ``min_score``.
Users add checks of their own with ``add_custom_check``. The module-level functions act on one
process-wide ``QualityMonitor``; a client may hold its own for separate custom checks and limits.

    from hardened import quality
    rows, report = quality.check("ohlcv", rows, policy="repair", min_score=50,
                                 timeframe="1m", now_ms=exchange.milliseconds())
    quality.add_custom_check("volume_floor", lambda rows: sum(r[5] for r in rows) > 10_000,
                             endpoints="ohlcv")
"""

from __future__ import annotations

from hardened.quality.custom import CheckContext, CustomCheck
from hardened.quality.monitor import DATA_ENDPOINTS, POLICIES, PRIVATE_ENDPOINTS, QualityMonitor
from hardened.quality.ohlcv import repair_ohlcv, validate_ohlcv
from hardened.quality.order_book import repair_order_book, validate_order_book
from hardened.quality.private import (
    garbled_body,
    list_answer_issue,
    validate_balance,
    validate_order,
    validate_orders,
)
from hardened.quality.report import CODES, Issue, QualityReport, Severity, score_of
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds, Timeframe, parse_timeframe
from hardened.quality.ticker import repair_ticker, repair_tickers, validate_ticker, validate_tickers
from hardened.quality.trades import repair_trades, validate_trades

__all__ = [
    "CODES",
    "DATA_ENDPOINTS",
    "DEFAULT_THRESHOLDS",
    "POLICIES",
    "PRIVATE_ENDPOINTS",
    "CheckContext",
    "CustomCheck",
    "Issue",
    "QualityMonitor",
    "QualityReport",
    "QualityThresholds",
    "Severity",
    "Timeframe",
    "add_custom_check",
    "check",
    "custom_checks",
    "garbled_body",
    "list_answer_issue",
    "parse_timeframe",
    "quality_monitor",
    "remove_custom_check",
    "repair_ohlcv",
    "repair_order_book",
    "repair_ticker",
    "repair_tickers",
    "repair_trades",
    "score_of",
    "validate",
    "validate_balance",
    "validate_ohlcv",
    "validate_order",
    "validate_order_book",
    "validate_orders",
    "validate_ticker",
    "validate_tickers",
    "validate_trades",
]

quality_monitor = QualityMonitor()
"""The process-wide monitor behind the module-level functions (``quality_monitor.add_custom_check``)."""

check = quality_monitor.check
validate = quality_monitor.validate
add_custom_check = quality_monitor.add_custom_check
remove_custom_check = quality_monitor.remove_custom_check
custom_checks = quality_monitor.custom_checks
