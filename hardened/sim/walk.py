"""Seeded, random-access price paths: the same seed gives the same price at the same instant.

The path is a mean-reverting walk of daily log-price levels, bridged minute by minute with a
Brownian bridge, so any minute of any day is computed from that day's own seed alone (no replay
from the listing date) and candles of every timeframe aggregate the same minutes.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict

import numpy as np

__all__ = ["DAY_MS", "LISTING_MS", "MINUTES_PER_DAY", "MINUTE_MS", "DayPath", "PriceWalk"]

MINUTE_MS = 60_000
DAY_MS = 86_400_000
MINUTES_PER_DAY = 1440
# The walk starts on 2017-07-14 (Binance's first trading day); candles before it do not exist.
LISTING_MS = 1_499_990_400_000
_LISTING_DAY = LISTING_MS // DAY_MS
_PHI = 0.995  # daily mean reversion of the log level: prices stay within about +-50 % of the base


class DayPath:
    """One UTC day of one symbol: 1441 minute-boundary prices and per-minute high, low, volume."""

    __slots__ = ("candles", "close", "high", "low", "open", "prices", "volume")

    def __init__(self, prices: np.ndarray, wick_up: np.ndarray, wick_down: np.ndarray, volume: np.ndarray):
        self.prices = prices
        self.open = prices[:-1]
        self.close = prices[1:]
        body_hi = np.maximum(self.open, self.close)
        body_lo = np.minimum(self.open, self.close)
        self.high = body_hi * np.exp(wick_up)
        self.low = body_lo * np.exp(-wick_down)
        self.volume = volume
        self.candles = (self.open, self.high, self.low, self.close, self.volume)


class PriceWalk:
    """The price path of one symbol, reproducible for ``(seed, key)``.

    Args:
        seed: the simulator seed.
        key: a stable name (``"binance:BTC/USDT"``) so symbols get independent paths.
        base_price: the long-run price level.
        minute_sigma: standard deviation of one minute's log return.
        volume_per_minute: mean base-asset volume traded per minute.
    """

    __slots__ = (
        "_day_cache",
        "_hourly",
        "_levels",
        "_lock",
        "_seed_words",
        "_summaries",
        "base_price",
        "minute_sigma",
        "volume_per_minute",
    )

    def __init__(
        self,
        seed: int,
        key: str,
        base_price: float,
        minute_sigma: float = 0.0006,
        volume_per_minute: float = 10.0,
    ) -> None:
        self._seed_words = [int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())]
        self.base_price = float(base_price)
        self.minute_sigma = float(minute_sigma)
        self.volume_per_minute = float(volume_per_minute)
        self._levels = np.zeros(0)
        self._day_cache: OrderedDict[int, DayPath] = OrderedDict()
        self._hourly: dict[int, tuple[np.ndarray, ...]] = {}
        self._summaries: dict[int, tuple[float, float, float, float, float]] = {}
        self._lock = threading.Lock()

    # -- daily levels -------------------------------------------------------------------------
    def _level(self, day: int) -> float:
        """Log level (relative to ``base_price``) at 00:00 UTC of ``day`` (days since the epoch)."""
        idx = day - _LISTING_DAY
        if idx < 0:
            idx = 0
        if idx >= len(self._levels):
            self._extend_levels(idx + 64)
        return float(self._levels[idx])

    def _extend_levels(self, count: int) -> None:
        # Day shocks come in blocks of 4096 days, each block from its own seed, so extending the
        # path never changes days already computed.
        count = ((count // 4096) + 1) * 4096
        shocks = [
            np.random.default_rng([*self._seed_words, 0, block]).standard_normal(4096)
            for block in range(count // 4096)
        ]
        z = np.concatenate(shocks)
        sigma_day = self.minute_sigma * math.sqrt(MINUTES_PER_DAY)
        levels = np.empty(count)
        level = 0.0
        for i in range(count):
            levels[i] = level
            level = _PHI * level + sigma_day * z[i]
        self._levels = levels

    # -- one day ------------------------------------------------------------------------------
    def day(self, day: int) -> DayPath:
        """The full path of ``day`` (cached; the most recent 96 days are kept)."""
        with self._lock:
            cached = self._day_cache.get(day)
            if cached is not None:
                self._day_cache.move_to_end(day)
                return cached
            start = self._level(day)
            end = self._level(day + 1)
            rng = np.random.default_rng([*self._seed_words, 1, max(day, 0)])
            steps = rng.standard_normal(MINUTES_PER_DAY) * self.minute_sigma
            walk = np.concatenate(([0.0], np.cumsum(steps)))
            ramp = np.arange(MINUTES_PER_DAY + 1) / MINUTES_PER_DAY
            bridge = start + walk - ramp * (walk[-1] - (end - start))
            bridge[-1] = end  # the next day starts exactly where this one ends
            prices = self.base_price * np.exp(bridge)
            wick_up = np.abs(rng.standard_normal(MINUTES_PER_DAY)) * self.minute_sigma * 0.5
            wick_down = np.abs(rng.standard_normal(MINUTES_PER_DAY)) * self.minute_sigma * 0.5
            volume = rng.lognormal(mean=0.0, sigma=0.6, size=MINUTES_PER_DAY) * self.volume_per_minute
            path = DayPath(prices, wick_up, wick_down, volume)
            self._day_cache[day] = path
            if len(self._day_cache) > 96:
                self._day_cache.popitem(last=False)
            return path

    def hourly(self, day: int) -> tuple[np.ndarray, ...]:
        """(open, high, low, close, volume) arrays of the 24 hourly candles of a day, cached for
        every day ever asked (small), so hour-and-up timeframes never regenerate minute paths."""
        found = self._hourly.get(day)
        if found is None:
            path = self.day(day)
            found = (
                path.open[::60].copy(),
                path.high.reshape(24, 60).max(axis=1),
                path.low.reshape(24, 60).min(axis=1),
                path.close[59::60].copy(),
                path.volume.reshape(24, 60).sum(axis=1),
            )
            self._hourly[day] = found
        return found

    def day_summary(self, day: int) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of a whole day (cached)."""
        found = self._summaries.get(day)
        if found is None:
            o, h, low, c, v = self.hourly(day)
            found = (float(o[0]), float(h.max()), float(low.min()), float(c[-1]), float(v.sum()))
            self._summaries[day] = found
        return found

    # -- points -------------------------------------------------------------------------------
    def price_at(self, ts_ms: int) -> float:
        """Price at any millisecond: minute-boundary prices, linearly interpolated in between."""
        day, rem = divmod(int(ts_ms), DAY_MS)
        minute, within = divmod(rem, MINUTE_MS)
        path = self.day(day)
        a = path.prices[minute]
        b = path.prices[minute + 1]
        return float(a + (b - a) * (within / MINUTE_MS))

    def prices_at(self, ts_ms: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`price_at` for an int64 array of timestamps."""
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        out = np.empty(len(ts_ms))
        days = ts_ms // DAY_MS
        for day in np.unique(days):
            sel = days == day
            path = self.day(int(day))
            rem = ts_ms[sel] - int(day) * DAY_MS
            minute = rem // MINUTE_MS
            frac = (rem - minute * MINUTE_MS) / MINUTE_MS
            a = path.prices[minute]
            out[sel] = a + (path.prices[minute + 1] - a) * frac
        return out
