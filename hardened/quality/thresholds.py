"""Tunable limits of the quality checks, and the timeframe arithmetic they rely on.

Kept in one frozen object so that a check reads plain attributes on the hot path and a client can
hold per-endpoint variants without copying dicts around.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ccxt

__all__ = ["DEFAULT_THRESHOLDS", "QualityThresholds", "Timeframe", "parse_timeframe"]


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Limits the checks compare against; all times in milliseconds.

    Attributes:
        outlier_threshold: a log return is an outlier when it lies more than this many robust
            standard deviations (1.4826 * MAD) from the median return.
        outlier_min_scale: floor of that robust standard deviation, so a flat series (MAD 0)
            does not flag every tick; 0.001 is a 0.1 % move.
        outlier_min_returns: fewer returns than this and the outlier test is skipped.
        stale_intervals, stale_tolerance_ms: the last candle is stale when it opened more than
            ``stale_intervals`` timeframes plus the tolerance before ``now``.
        future_tolerance_ms: how far past ``now`` a timestamp may be (clock skew) before it is flagged.
        ticker_max_age_ms, book_max_age_ms: a ticker / order book timestamp older than this is stale.
        last_spread_tolerance: ``last`` may lie this fraction below the bid or above the ask.
        min_timestamp_ms: anything earlier is absurd (2009-01-01: seconds sent as milliseconds).
        max_repair_drop: a repair that would drop more than this share of the entries (candles,
            trades, tickers, book levels) is abandoned: the answer is garbage, not damaged.
        ticker_prices: ticker price fields (bid, ask, last, close, open, high, low, vwap) the
            exchange always sends with a positive value (from its adapter profile's
            ``[market_data]``); one that is None (ccxt's ``omit_zero`` turns a zero into None)
            or not positive is impossible. Empty: nothing is required.
        continuous_candles: the exchange sends a candle for every interval (Binance, not KuCoin):
            in a window that reaches now, a gap, a stale last candle or no candle is impossible.
    """

    outlier_threshold: float = 10.0
    outlier_min_scale: float = 0.001
    outlier_min_returns: int = 8
    stale_intervals: float = 2.0
    stale_tolerance_ms: int = 10_000
    future_tolerance_ms: int = 10_000
    ticker_max_age_ms: int = 60_000
    book_max_age_ms: int = 60_000
    last_spread_tolerance: float = 0.05
    min_timestamp_ms: int = 1_230_768_000_000
    max_repair_drop: float = 0.5
    ticker_prices: tuple[str, ...] = ()
    continuous_candles: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("outlier_threshold", self.outlier_threshold > 0, "> 0"),
            ("outlier_min_scale", self.outlier_min_scale >= 0, ">= 0"),
            ("outlier_min_returns", self.outlier_min_returns >= 2, ">= 2"),
            ("stale_intervals", self.stale_intervals >= 1, ">= 1"),
            ("stale_tolerance_ms", self.stale_tolerance_ms >= 0, ">= 0"),
            ("future_tolerance_ms", self.future_tolerance_ms >= 0, ">= 0"),
            ("ticker_max_age_ms", self.ticker_max_age_ms > 0, "> 0"),
            ("book_max_age_ms", self.book_max_age_ms > 0, "> 0"),
            ("last_spread_tolerance", 0 <= self.last_spread_tolerance <= 1, "in [0, 1]"),
            ("min_timestamp_ms", self.min_timestamp_ms >= 0, ">= 0"),
            ("max_repair_drop", 0 <= self.max_repair_drop < 1, "in [0, 1)"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"QualityThresholds.{name} must be {allowed}, got {getattr(self, name)!r}")


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A ccxt timeframe string resolved once: its length in ms, and its calendar step if monthly.

    ``months`` is non-zero for ``'1M'``-style (and ``'1y'``) timeframes, whose candles follow the
    calendar rather than a fixed number of milliseconds.
    """

    name: str
    ms: int
    months: int


@lru_cache(maxsize=64)
def parse_timeframe(timeframe: str) -> Timeframe:
    """Resolve a ccxt timeframe (``'1m'``, ``'4h'``, ``'1d'``, ``'1w'``, ``'1M'``) with ccxt's parser."""
    try:
        seconds = ccxt.Exchange.parse_timeframe(timeframe)
    except Exception as exc:  # ccxt raises NotSupported or a bare ValueError depending on the input
        raise ValueError(f"unknown timeframe {timeframe!r}: {exc}") from None
    if not seconds or seconds <= 0:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    unit = timeframe[-1]
    amount = int(timeframe[:-1] or 1)
    months = amount if unit == "M" else amount * 12 if unit == "y" else 0
    return Timeframe(timeframe, int(seconds * 1000), months)
