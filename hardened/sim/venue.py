"""The exchange-neutral venue: markets, seeded prices, candles, books, trades and a ledger.

A :class:`Venue` is one exchange's world. Dialects (``hardened.sim.dialects.*``) translate HTTP
requests into calls on it and its results into the exchange's JSON; they never compute prices or
move balances themselves. Everything here is reproducible for a seed and safe to call from any
thread (the server thread mutates, tests read).

Public API used by dialects (stable):

- ``Venue(exchange, seed=0, symbols=None, fee_rate=0.001, client_order_id_scope="open",
  order_id=str)``; ``venue.exchange``, ``venue.markets`` (symbol -> :class:`MarketSpec`),
  ``venue.market(symbol)`` (raises ``VenueError("unknown_symbol")``).
- Market data (``now_ms`` is the exchange's clock): ``ticker(symbol, now_ms)`` -> :class:`Ticker`;
  ``candles(symbol, timeframe, now_ms, since_ms=None, until_ms=None, limit=500)`` ->
  ``list[Candle]`` (``timeframe`` is a ccxt-style string: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h
  1d 3d 1w 1M); ``order_book(symbol, now_ms, depth=100)`` -> :class:`OrderBook`;
  ``trades(symbol, now_ms, since_ms=None, until_ms=None, limit=500, from_id=None)`` ->
  ``list[Trade]`` (ascending).
- Accounts: ``add_account(key, secret, passphrase=None, balances=None)``, ``account(key)`` ->
  :class:`Account` or None, ``balances(key, now_ms)`` -> ``dict[asset, Balance]``.
- Orders (all raise :class:`VenueError` with a ``kind`` from :data:`ERROR_KINDS`):
  ``create_order(key, symbol, side, type, now_ms, amount=None, price=None, quote_amount=None,
  client_order_id=None, time_in_force="GTC", post_only=False)``,
  ``get_order(key, now_ms, symbol=None, order_id=None, client_order_id=None)``,
  ``cancel_order(key, now_ms, symbol=None, order_id=None, client_order_id=None)``,
  ``open_orders(key, now_ms, symbol=None)``, ``orders(key=None)``. Each returns a snapshot
  :class:`Order` (a copy: safe to read while the ledger moves on).
"""

from __future__ import annotations

import calendar
import copy
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal
from typing import Literal

import numpy as np

from hardened.sim.walk import DAY_MS, LISTING_MS, MINUTE_MS, MINUTES_PER_DAY, PriceWalk

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_SYMBOLS",
    "ERROR_KINDS",
    "Account",
    "Balance",
    "Candle",
    "Fill",
    "MarketSpec",
    "Order",
    "OrderBook",
    "Ticker",
    "Trade",
    "Venue",
    "VenueError",
    "format_decimal",
    "timeframe_ms",
]

ERROR_KINDS = (
    "unknown_symbol",  # the symbol is not listed
    "missing_parameter",  # a required argument is absent (detail names it)
    "invalid_quantity",  # amount <= 0, not a multiple of the step, under the minimum
    "invalid_price",  # price <= 0 or not a multiple of the tick
    "min_notional",  # price * amount under the market's minimum
    "invalid_order",  # anything else wrong with an order (type, side, time in force)
    "duplicate_client_order_id",  # the client order id is already taken
    "insufficient_funds",  # the account cannot pay for the order
    "post_only_would_take",  # a post-only order would trade at once
    "order_not_found",  # no such order for this account
    "order_not_open",  # cancel of an order that is filled, canceled or expired
)


class VenueError(Exception):
    """A refusal by the venue; ``kind`` is one of :data:`ERROR_KINDS`, the dialect words it."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


# --------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One listed market: its unified symbol, trading rules and price-model parameters."""

    symbol: str
    base: str
    quote: str
    base_price: float
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_price: Decimal
    volume_per_minute: float
    minute_sigma: float = 0.0006
    spread_bps: float = 0.5

    @property
    def price_decimals(self) -> int:
        """Digits after the point of the tick size."""
        return max(0, -self.tick.normalize().as_tuple().exponent)  # type: ignore[operator]

    @property
    def amount_decimals(self) -> int:
        """Digits after the point of the lot step."""
        return max(0, -self.step.normalize().as_tuple().exponent)  # type: ignore[operator]


_ASSET_RULES: dict[str, tuple[float, str, str, str, str, float]] = {
    # base: (price in USD, tick, step, min qty, max qty, volume per minute)
    "BTC": (65000.0, "0.01", "0.00001", "0.00001", "9000", 12.0),
    "ETH": (3200.0, "0.01", "0.0001", "0.0001", "9000", 150.0),
    "SOL": (150.0, "0.01", "0.001", "0.001", "90000", 2500.0),
    "XRP": (0.6, "0.0001", "0.1", "0.1", "9000000", 400000.0),
}
_QUOTE_RATE = {"USDT": 1.0, "USDC": 1.0, "EUR": 0.92}


def _spec(base: str, quote: str) -> MarketSpec:
    price, tick, step, min_qty, max_qty, vol = _ASSET_RULES[base]
    return MarketSpec(
        symbol=f"{base}/{quote}",
        base=base,
        quote=quote,
        base_price=price * _QUOTE_RATE.get(quote, 1.0),
        tick=Decimal(tick),
        step=Decimal(step),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        min_notional=Decimal("5"),
        max_price=Decimal("1000000"),
        volume_per_minute=vol,
    )


DEFAULT_SYMBOLS: dict[str, tuple[str, ...]] = {
    "binance": ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"),
    "kucoin": ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"),
    "bitvavo": ("BTC/EUR", "ETH/EUR", "SOL/EUR", "XRP/EUR"),
}

DEFAULT_BALANCES: dict[str, str] = {
    "USDT": "100000",
    "EUR": "100000",
    "BTC": "2",
    "ETH": "20",
    "SOL": "500",
    "XRP": "50000",
}


def format_decimal(value: Decimal | float | int | None, places: int) -> str | None:
    """``value`` with exactly ``places`` digits after the point (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = Decimal(repr(float(value)))
    quantum = Decimal(1).scaleb(-places)
    # enough digits for any magnitude: the default 28 made a large quote amount raise InvalidOperation
    context = Context(prec=max(28, value.adjusted() + places + 2))
    return format(value.quantize(quantum, rounding=ROUND_HALF_UP, context=context), "f")


# --------------------------------------------------------------------------------------------
# Market data records
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Candle:
    """One OHLCV candle; ``ts`` is its open time in ms, aligned to the timeframe."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_ts: int
    quote_volume: float
    trades: int


@dataclass(slots=True)
class Ticker:
    """A 24 h rolling ticker; every field may be None (the ``null_ticker`` bad-data fault)."""

    symbol: str
    ts: int | None
    bid: float | None
    bid_qty: float | None
    ask: float | None
    ask_qty: float | None
    last: float | None
    last_qty: float | None
    open: float | None
    high: float | None
    low: float | None
    volume: float | None
    quote_volume: float | None
    vwap: float | None
    change: float | None
    percentage: float | None
    prev_close: float | None
    open_ts: int | None
    count: int | None
    first_trade_id: int | None
    last_trade_id: int | None


@dataclass(slots=True)
class OrderBook:
    """Bids descending, asks ascending, as ``[price, quantity]`` pairs; ``nonce`` grows per second."""

    symbol: str
    ts: int
    nonce: int
    bids: list[list[float]]
    asks: list[list[float]]


@dataclass(slots=True)
class Trade:
    """One public trade; ``buyer_is_maker`` True means the taker sold."""

    id: int
    ts: int
    price: float
    qty: float
    buyer_is_maker: bool

    @property
    def side(self) -> str:
        """The taker's side, as ccxt reports it."""
        return "sell" if self.buyer_is_maker else "buy"


# --------------------------------------------------------------------------------------------
# Ledger records
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Balance:
    """Free and locked amounts of one asset (Decimal: the ledger never loses dust)."""

    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        """free + locked."""
        return self.free + self.locked


@dataclass(slots=True)
class Account:
    """An API key with its secret (and passphrase, for KuCoin) and balances."""

    key: str
    secret: str
    passphrase: str | None
    balances: dict[str, Balance]


@dataclass(slots=True)
class Fill:
    """One execution of an order."""

    trade_id: int
    ts: int
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool


@dataclass(slots=True)
class Order:
    """An order in the ledger; ``status`` uses ccxt's words: open, closed, canceled, expired."""

    id: str
    seq: int
    client_order_id: str | None
    account: str
    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: Decimal | None
    amount: Decimal
    quote_amount: Decimal | None
    time_in_force: str
    post_only: bool
    created_ms: int
    updated_ms: int
    status: str = "open"
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None
    fills: list[Fill] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        """amount - filled."""
        return self.amount - self.filled

    @property
    def average(self) -> Decimal | None:
        """Average fill price, None before the first fill."""
        return (self.cost / self.filled) if self.filled else None

    def snapshot(self) -> Order:
        """A copy that later ledger moves do not change."""
        clone = copy.copy(self)
        clone.fills = list(self.fills)
        return clone


# --------------------------------------------------------------------------------------------
# Timeframes
# --------------------------------------------------------------------------------------------
_TF_UNITS = {"s": 1000, "m": MINUTE_MS, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
_WEEK_OFFSET = 4 * DAY_MS  # 1970-01-01 was a Thursday; weeks open on Monday


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt-style timeframe in ms (``1M`` counts 31 days: use it only for windows)."""
    if timeframe.endswith("M"):
        return int(timeframe[:-1] or 1) * 31 * DAY_MS
    try:
        return int(timeframe[:-1]) * _TF_UNITS[timeframe[-1]]
    except (KeyError, ValueError):
        raise VenueError("invalid_order", f"unsupported timeframe {timeframe!r}") from None


def _month_start(ts: int, add: int = 0) -> int:
    d = time.gmtime(ts // 1000)
    month = d.tm_year * 12 + (d.tm_mon - 1) + add
    return calendar.timegm((month // 12, month % 12 + 1, 1, 0, 0, 0)) * 1000


def _align(ts: int, timeframe: str) -> int:
    """Open time of the candle containing ``ts``."""
    if timeframe.endswith("M"):
        return _month_start(ts)
    length = timeframe_ms(timeframe)
    if timeframe.endswith("w"):
        return (ts - _WEEK_OFFSET) // length * length + _WEEK_OFFSET
    return ts // length * length


def _next_open(ts: int, timeframe: str) -> int:
    if timeframe.endswith("M"):
        return _month_start(ts, int(timeframe[:-1] or 1))
    return ts + timeframe_ms(timeframe)


def _regroup(arrays: tuple[np.ndarray, ...], size: int) -> tuple[np.ndarray, ...]:
    """Merge consecutive groups of ``size`` candles given as (open, high, low, close, volume)."""
    if size == 1:
        return arrays
    o, h, low, c, v = arrays
    n = len(o) // size
    return (
        o[::size],
        h.reshape(n, size).max(axis=1),
        low.reshape(n, size).min(axis=1),
        c[size - 1 :: size],
        v.reshape(n, size).sum(axis=1),
    )


# --------------------------------------------------------------------------------------------
# Fast stateless hashing for per-second trade flows (vectorised splitmix64)
# --------------------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLD
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _uniform(x: np.ndarray) -> np.ndarray:
    return (_mix(x) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# --------------------------------------------------------------------------------------------
# The venue
# --------------------------------------------------------------------------------------------
_TRADE_SLOTS = 4  # at most this many public trades per second; ids are second * 4 + k


class Venue:
    """One exchange's markets and ledger, reproducible for ``seed`` and thread-safe.

    Args:
        exchange: the ccxt id (``"binance"``); picks the default symbols.
        seed: same seed, same prices at the same instants.
        symbols: unified symbols to list (default :data:`DEFAULT_SYMBOLS` for ``exchange``, the
            four USDT markets for an exchange not listed there).
        fee_rate: maker and taker fee, charged in the asset received.
        client_order_id_scope: ``"open"`` refuses a client order id already used by an open
            order (Binance), ``"all"`` by any order of the account.
        order_id: formats the venue's order sequence number as the exchange's order id.
    """

    def __init__(
        self,
        exchange: str,
        seed: int = 0,
        symbols: Iterable[str] | None = None,
        fee_rate: float = 0.001,
        client_order_id_scope: Literal["open", "all"] = "open",
        order_id: Callable[[int], str] = str,
    ) -> None:
        self.exchange = exchange
        self.seed = int(seed)
        names = (
            _checked_symbols(exchange, symbols)
            if symbols is not None
            else DEFAULT_SYMBOLS.get(exchange, DEFAULT_SYMBOLS["binance"])
        )
        self.markets: dict[str, MarketSpec] = {}
        self._walks: dict[str, PriceWalk] = {}
        self._trade_keys: dict[str, np.uint64] = {}
        for i, name in enumerate(names):
            base, quote = name.split("/")
            spec = _spec(base, quote)
            self.markets[name] = spec
            self._walks[name] = PriceWalk(
                self.seed,
                f"{exchange}:{name}",
                spec.base_price,
                spec.minute_sigma,
                spec.volume_per_minute,
            )
            self._trade_keys[name] = np.uint64(
                ((self.seed & 0xFFFFFFFF) << 32) ^ (hash_name(f"{exchange}:{name}") + i)
            )
        self.fee_rate = Decimal(str(fee_rate))
        self.client_order_id_scope = client_order_id_scope
        self._format_order_id = order_id
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._orders: dict[str, Order] = {}
        self._by_client_id: dict[tuple[str, str], list[Order]] = {}
        self._open: dict[str, Order] = {}
        self._checked: dict[str, int] = {}  # open order id -> last time the market was checked
        self._seq = 0
        self._trade_seq = 0

    # -- markets ------------------------------------------------------------------------------
    def market(self, symbol: str) -> MarketSpec:
        """The market listed as ``symbol``, or ``VenueError("unknown_symbol")``."""
        spec = self.markets.get(symbol)
        if spec is None:
            raise VenueError("unknown_symbol", symbol)
        return spec

    def walk(self, symbol: str) -> PriceWalk:
        """The seeded price path behind ``symbol``."""
        self.market(symbol)
        return self._walks[symbol]

    def mid_price(self, symbol: str, ts_ms: int) -> float:
        """The model's mid price at ``ts_ms`` (before rounding to the tick)."""
        return self.walk(symbol).price_at(ts_ms)

    def _quote(self, symbol: str, ts_ms: int) -> tuple[float, float, float]:
        """(bid, ask, tick) at ``ts_ms``, rounded to the tick, at least one tick apart."""
        bids, asks = self._quotes(symbol, np.array([ts_ms], dtype=np.int64))
        return float(bids[0]), float(asks[0]), float(self.markets[symbol].tick)

    # -- candles ------------------------------------------------------------------------------
    def candles(
        self,
        symbol: str,
        timeframe: str,
        now_ms: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Candles aligned to ``timeframe``: from ``since_ms`` (first candle opening at or after
        it) or else the newest ``limit`` up to ``until_ms``/now; the last may still be forming."""
        self.market(symbol)
        limit = max(1, int(limit))
        end = now_ms if until_ms is None else min(int(until_ms), now_ms)
        if since_ms is not None:
            first = _align(int(since_ms), timeframe)
            if first < int(since_ms):
                first = _next_open(first, timeframe)
        else:
            first = _align(end, timeframe)
            for _ in range(limit - 1):
                if first <= LISTING_MS:
                    break
                first = _align(first - 1, timeframe)
        if first < LISTING_MS:
            first = _align(LISTING_MS, timeframe)
            if first < LISTING_MS:
                first = _next_open(first, timeframe)
        if timeframe.endswith("M"):
            opens: list[int] = []
            t = first
            while t <= end and len(opens) < limit:
                opens.append(t)
                t = _next_open(t, timeframe)
        else:
            step = timeframe_ms(timeframe)
            count = min(limit, (end - first) // step + 1) if end >= first else 0
            opens = list(range(first, first + count * step, step))
        if not opens:
            return []
        return self._aggregate(symbol, timeframe, opens, now_ms)

    def _aggregate(self, symbol: str, timeframe: str, opens: list[int], now_ms: int) -> list[Candle]:
        """Candles opening at ``opens``: whole candles from cached per-day arrays (minute paths,
        hourly candles or day summaries), the one still forming from the path up to ``now_ms``."""
        walk = self._walks[symbol]
        closes = [_next_open(o, timeframe) for o in opens[-1:]]
        forming = closes[0] > now_ms
        whole = opens[:-1] if forming else opens
        n = len(whole)
        cols = np.empty((5, n))
        if n:
            length = 0 if timeframe.endswith("M") else timeframe_ms(timeframe)
            minutes = length // MINUTE_MS
            if timeframe.endswith("s"):
                ts = np.asarray(whole, dtype=np.int64)
                a, b = walk.prices_at(ts), walk.prices_at(ts + length)
                cols[0], cols[3] = a, b
                cols[1], cols[2] = np.maximum(a, b), np.minimum(a, b)
                cols[4] = [
                    float(walk.day(t // DAY_MS).volume[t % DAY_MS // MINUTE_MS]) * length / MINUTE_MS
                    for t in whole
                ]
            elif minutes and MINUTES_PER_DAY % minutes == 0:
                first_day = whole[0] // DAY_MS
                last_day = whole[-1] // DAY_MS
                parts = []
                for day in range(first_day, last_day + 1):
                    if minutes % 60 == 0:
                        parts.append(_regroup(walk.hourly(day), minutes // 60))
                    else:
                        parts.append(_regroup(walk.day(day).candles, minutes))
                offset = (whole[0] - first_day * DAY_MS) // length
                for k in range(5):
                    cols[k] = np.concatenate([p[k] for p in parts])[offset : offset + n]
            else:
                bounds = [*whole, _next_open(whole[-1], timeframe)]
                for i in range(n):
                    days = [walk.day_summary(d) for d in range(bounds[i] // DAY_MS, bounds[i + 1] // DAY_MS)]
                    cols[:, i] = (
                        days[0][0],
                        max(d[1] for d in days),
                        min(d[2] for d in days),
                        days[-1][3],
                        sum(d[4] for d in days),
                    )
        spec = self.markets[symbol]
        out = self._candles_from(spec, whole, [_next_open(o, timeframe) for o in whole], cols)
        if forming:
            o, h, low, c, v = self._span(walk, opens[-1], now_ms)
            out += self._candles_from(spec, opens[-1:], closes, np.array([[o], [h], [low], [c], [v]]))
        return out

    @staticmethod
    def _candles_from(
        spec: MarketSpec, opens: list[int], closes: list[int], cols: np.ndarray
    ) -> list[Candle]:
        """Candles from a (5, n) array of open, high, low, close, volume, rounded as served."""
        if not opens:
            return []
        p = spec.price_decimals
        o, h, low, c = (np.round(cols[k], p) for k in range(4))
        h = np.maximum(h, np.maximum(o, c))
        low = np.minimum(low, np.minimum(o, c))
        v = np.round(cols[4], spec.amount_decimals)
        qv = np.round(v * (o + c) / 2, 8)
        trades = (v * 20 / spec.volume_per_minute).astype(np.int64)
        return [
            Candle(*row)
            for row in zip(
                opens,
                o.tolist(),
                h.tolist(),
                low.tolist(),
                c.tolist(),
                v.tolist(),
                [x - 1 for x in closes],
                qv.tolist(),
                trades.tolist(),
                strict=True,
            )
        ]

    @staticmethod
    def _span(walk: PriceWalk, start: int, end: int) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of the path over ``[start, end)``."""
        o = walk.price_at(start)
        highs: list[float] = []
        lows: list[float] = []
        vol = 0.0
        t = start
        while t < end:
            day, rem = divmod(t, DAY_MS)
            day_start = day * DAY_MS
            day_end = day_start + DAY_MS
            stop = min(end, day_end)
            if rem == 0 and stop == day_end:
                _o, h, low, _c, v = walk.day_summary(day)
                highs.append(h)
                lows.append(low)
                vol += v
                t = stop
                continue
            path = walk.day(day)
            m0 = rem // MINUTE_MS
            m1 = (stop - day_start) // MINUTE_MS  # full minutes in [m0, m1)
            if m1 > m0:
                highs.append(float(path.high[m0:m1].max()))
                lows.append(float(path.low[m0:m1].min()))
                vol += float(path.volume[m0:m1].sum())
            partial = stop - (day_start + m1 * MINUTE_MS)
            if partial > 0 and stop < day_end:
                a = float(path.prices[m1])
                b = walk.price_at(stop)
                highs.append(max(a, b))
                lows.append(min(a, b))
                vol += float(path.volume[m1]) * partial / MINUTE_MS
            t = stop
        c = walk.price_at(end) if end > start else o
        h = max([o, c, *highs])
        low = min([o, c, *lows])
        return o, h, low, c, vol

    # -- ticker -------------------------------------------------------------------------------
    def ticker(self, symbol: str, now_ms: int) -> Ticker:
        """The rolling 24 h ticker at ``now_ms``: bid < ask, last within the spread."""
        spec = self.market(symbol)
        walk = self._walks[symbol]
        bid, ask, _tick = self._quote(symbol, now_ms)
        second = now_ms // 1000
        coin = _uniform(np.array([second], dtype=np.uint64) ^ self._trade_keys[symbol])[0]
        last = ask if coin >= 0.5 else bid
        o, h, low, _c, vol = self._span(walk, now_ms - DAY_MS, now_ms)
        p = spec.price_decimals
        o = round(o, p)
        h = max(round(h, p), ask, last)
        low = min(round(low, p), bid, last)
        qvol = vol * (o + last) / 2
        book = self.order_book(symbol, now_ms, depth=1)
        first_id = (now_ms - DAY_MS) // 1000 * _TRADE_SLOTS
        last_id = second * _TRADE_SLOTS
        return Ticker(
            symbol=symbol,
            ts=now_ms,
            bid=bid,
            bid_qty=book.bids[0][1],
            ask=ask,
            ask_qty=book.asks[0][1],
            last=last,
            last_qty=round(spec.volume_per_minute / 40, spec.amount_decimals) or float(spec.min_qty),
            open=o,
            high=h,
            low=low,
            volume=round(vol, spec.amount_decimals),
            quote_volume=round(qvol, 8),
            vwap=round(qvol / vol, p + 2) if vol else None,
            change=round(last - o, p),
            percentage=round((last - o) / o * 100, 3) if o else None,
            prev_close=o,
            open_ts=now_ms - DAY_MS,
            count=int(last_id - first_id),
            first_trade_id=int(first_id),
            last_trade_id=int(last_id),
        )

    # -- order book ---------------------------------------------------------------------------
    def order_book(self, symbol: str, now_ms: int, depth: int = 100) -> OrderBook:
        """A book around the current quote, strictly sorted; sizes change every second and level
        ``i`` is the same whatever depth is asked."""
        spec = self.market(symbol)
        depth = max(1, min(int(depth), 5000))
        bid, ask, tick = self._quote(symbol, now_ms)
        second = now_ms // 1000
        key = self._trade_keys[symbol] ^ np.uint64(0x5EED_B00C)
        levels = np.arange(depth, dtype=np.uint64)
        words = (np.uint64(second) * np.uint64(1 << 16) + levels) * np.uint64(4) ^ key
        gap = max(1, round(bid * 0.00002 / tick))
        out: list[list[list[float]]] = []
        p, a = spec.price_decimals, spec.amount_decimals
        min_qty = float(spec.min_qty)
        for side, best, sign in ((0, bid, -1), (1, ask, 1)):
            u_step = _uniform(words + np.uint64(side))
            u_size = _uniform(words + np.uint64(side + 2))
            steps = (1 + (u_step * 2).astype(np.int64)) * gap
            steps[0] = 0
            offsets = np.cumsum(steps)
            sizes = -np.log(np.maximum(u_size, 1e-12)) * spec.volume_per_minute * 0.02
            prices = np.round(best + sign * offsets * tick, p)
            qtys = np.maximum(np.round(sizes, a), min_qty)
            keep = prices > 0
            out.append([[float(x), float(q)] for x, q in zip(prices[keep], qtys[keep], strict=True)])
        return OrderBook(symbol, now_ms, second, out[0], out[1])

    # -- public trades ------------------------------------------------------------------------
    def trades(
        self,
        symbol: str,
        now_ms: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 500,
        from_id: int | None = None,
    ) -> list[Trade]:
        """Public trades in ascending time: from ``since_ms``/``from_id`` forward, else the newest
        ``limit`` before ``until_ms``/now."""
        self.market(symbol)
        limit = max(1, int(limit))
        end = now_ms if until_ms is None else min(int(until_ms), now_ms)
        if from_id is not None:
            since_ms = int(from_id) // _TRADE_SLOTS * 1000
        if since_ms is not None:
            since_ms = max(int(since_ms), LISTING_MS)  # no trades before the listing, as no candles
            out: list[Trade] = []
            s = int(since_ms) // 1000
            while len(out) < limit and s * 1000 <= end:
                batch = self._trades_in(symbol, s, s + 600)
                for t in batch:
                    if t.ts < since_ms or t.ts > end or (from_id is not None and t.id < from_id):
                        continue
                    out.append(t)
                    if len(out) >= limit:
                        break
                s += 600
            return out
        collected: list[Trade] = []
        s = end // 1000 + 1
        while len(collected) < limit and s * 1000 > LISTING_MS:
            batch = [t for t in self._trades_in(symbol, s - 600, s) if t.ts <= end]
            collected = batch + collected
            s -= 600
        return collected[-limit:]

    def _quotes(self, symbol: str, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`_quote`: (bids, asks) at each timestamp."""
        spec = self.markets[symbol]
        tick = float(spec.tick)
        mid = self._walks[symbol].prices_at(ts_ms)
        spread_ticks = np.maximum(1, np.round(mid * spec.spread_bps / 10_000 / tick))
        bid_ticks = np.trunc(mid / tick - spread_ticks / 2)
        bids = np.round(bid_ticks * tick, spec.price_decimals)
        asks = np.round((bid_ticks + spread_ticks) * tick, spec.price_decimals)
        return bids, asks

    def _trades_in(self, symbol: str, s0: int, s1: int) -> list[Trade]:
        """Trades in seconds ``[s0, s1)``: 0-3 per second, hashed from the seed."""
        spec = self.markets[symbol]
        key = self._trade_keys[symbol]
        seconds = np.arange(s0, s1, dtype=np.int64)
        words = seconds.astype(np.uint64) * np.uint64(_TRADE_SLOTS * 4) ^ key
        counts = (_uniform(words) * _TRADE_SLOTS).astype(np.int64)
        sec = np.repeat(seconds, counts)
        if len(sec) == 0:
            return []
        first = np.repeat(np.cumsum(counts) - counts, counts)
        k = np.arange(len(sec)) - first
        base = np.repeat(words, counts) + np.uint64(1) + k.astype(np.uint64) * np.uint64(3)
        h0 = _uniform(base)
        h1 = _uniform(base + np.uint64(1))
        slot = 1000 // _TRADE_SLOTS
        ms = sec * 1000 + (h0 * slot).astype(np.int64) + k * slot
        bids, asks = self._quotes(symbol, ms)
        maker = h1 < 0.5
        prices = np.where(maker, bids, asks)
        qtys = np.maximum(
            np.round(spec.volume_per_minute / 60 * (0.2 + 3 * h1 * h0), spec.amount_decimals),
            float(spec.min_qty),
        )
        ids = sec * _TRADE_SLOTS + k
        return [
            Trade(int(i), int(t), float(p), float(q), bool(m))
            for i, t, p, q, m in zip(ids, ms, prices, qtys, maker, strict=True)
        ]

    # -- accounts -----------------------------------------------------------------------------
    def add_account(
        self,
        key: str,
        secret: str,
        passphrase: str | None = None,
        balances: dict[str, str | float | Decimal] | None = None,
    ) -> Account:
        """Register an API key (idempotent: an existing key keeps its secret and balances)."""
        with self._lock:
            existing = self._accounts.get(key)
            if existing is not None:
                return existing
            source = DEFAULT_BALANCES if balances is None else balances
            assets = {spec.base for spec in self.markets.values()} | {s.quote for s in self.markets.values()}
            initial = {
                asset: Balance(Decimal(str(source.get(asset, "0"))), Decimal(0)) for asset in sorted(assets)
            }
            for asset, amount in source.items():
                if asset not in initial and balances is not None:
                    initial[asset] = Balance(Decimal(str(amount)), Decimal(0))
            account = Account(key, secret, passphrase, initial)
            self._accounts[key] = account
            return account

    def account(self, key: str | None) -> Account | None:
        """The account of API key ``key``, None when unknown."""
        if key is None:
            return None
        return self._accounts.get(key)

    def balances(self, key: str, now_ms: int) -> dict[str, Balance]:
        """Balances of account ``key`` (copies), after resting orders crossed by now have filled."""
        with self._lock:
            self._match(now_ms)
            account = self._require(key)
            return {asset: Balance(b.free, b.locked) for asset, b in account.balances.items()}

    def _require(self, key: str) -> Account:
        account = self._accounts.get(key)
        if account is None:
            raise VenueError("order_not_found", f"unknown account {key!r}")
        return account

    # -- orders -------------------------------------------------------------------------------
    def create_order(
        self,
        key: str,
        symbol: str,
        side: str,
        type: str,
        now_ms: int,
        amount: Decimal | str | float | None = None,
        price: Decimal | str | float | None = None,
        quote_amount: Decimal | str | float | None = None,
        client_order_id: str | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
    ) -> Order:
        """Place an order: a market order fills against the book now, a limit order takes what it
        crosses and rests with the remainder (IOC/FOK expire it). Returns a snapshot."""
        spec = self.market(symbol)
        side = side.lower()
        type = type.lower()
        if side not in ("buy", "sell"):
            raise VenueError("invalid_order", f"side {side!r}")
        if type not in ("limit", "market"):
            raise VenueError("invalid_order", f"type {type!r}")
        tif = (time_in_force or "GTC").upper()
        if tif not in ("GTC", "IOC", "FOK"):
            raise VenueError("invalid_order", f"timeInForce {time_in_force!r}")
        qty = _dec(amount, "quantity")
        px = _dec(price, "price")
        quote_qty = _dec(quote_amount, "quoteOrderQty")
        if type == "limit":
            if px is None:
                raise VenueError("missing_parameter", "price")
            if qty is None:
                raise VenueError("missing_parameter", "quantity")
        elif qty is None and quote_qty is None:
            raise VenueError("missing_parameter", "quantity")
        if px is not None and (px <= 0 or px > spec.max_price or (px % spec.tick) != 0):
            raise VenueError("invalid_price", f"price {px}")
        if qty is not None and (
            qty <= 0 or qty < spec.min_qty or qty > spec.max_qty or (qty % spec.step) != 0
        ):
            raise VenueError("invalid_quantity", f"quantity {qty}")
        if quote_qty is not None and quote_qty <= 0:
            raise VenueError("invalid_quantity", f"quoteOrderQty {quote_qty}")
        with self._lock:
            account = self._require(key)
            self._match(now_ms)
            if client_order_id is not None:
                taken = self._by_client_id.get((key, client_order_id), ())
                if any(o.status == "open" or self.client_order_id_scope == "all" for o in taken):
                    raise VenueError("duplicate_client_order_id", client_order_id)
            book = self.order_book(symbol, now_ms, depth=200)
            levels = book.asks if side == "buy" else book.bids
            takes = self._walk_book(spec, side, levels, qty, quote_qty, px)
            take_qty = sum((q for _p, q in takes), Decimal(0))
            take_cost = sum((p * q for p, q in takes), Decimal(0))
            if type == "market":
                if take_qty <= 0:
                    raise VenueError("invalid_quantity", "order too small to fill")
                order_qty = qty if qty is not None else take_qty
            else:
                order_qty = qty  # type: ignore[assignment]
                if post_only and take_qty > 0:
                    raise VenueError("post_only_would_take", symbol)
                if tif == "FOK" and take_qty < order_qty:
                    takes, take_qty, take_cost = [], Decimal(0), Decimal(0)
            ref_price = px if px is not None else (take_cost / take_qty)
            if ref_price * order_qty < spec.min_notional:
                raise VenueError("min_notional", f"{ref_price * order_qty} < {spec.min_notional}")
            rests = type == "limit" and tif == "GTC" and take_qty < order_qty
            # funds: a buy pays the cost of what it takes plus the locked price of what rests
            if side == "buy":
                need = take_cost + ((order_qty - take_qty) * px if rests else Decimal(0))  # type: ignore[operator]
                asset = spec.quote
            else:
                need = take_qty + ((order_qty - take_qty) if rests else Decimal(0))
                asset = spec.base
            bal = account.balances.setdefault(asset, Balance(Decimal(0), Decimal(0)))
            if need > bal.free:
                raise VenueError("insufficient_funds", f"{asset}: need {need}, free {bal.free}")
            self._seq += 1
            order = Order(
                id=self._format_order_id(self._seq),
                seq=self._seq,
                client_order_id=client_order_id,
                account=key,
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                type=type,  # type: ignore[arg-type]
                price=px,
                amount=order_qty,
                quote_amount=quote_qty,
                time_in_force=tif,
                post_only=post_only,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
            for p, q in takes:
                self._fill(account, spec, order, p, q, now_ms, maker=False)
            if order.remaining > 0:
                if rests:
                    self._lock_funds(account, spec, order)
                    self._open[order.id] = order
                else:
                    order.status = "expired" if order.filled < order.amount and type == "limit" else "closed"
            else:
                order.status = "closed"
            if type == "market" and order.filled > 0:
                order.status = "closed"
                order.amount = order.filled if qty is None else order.amount
            self._orders[order.id] = order
            if client_order_id is not None:
                self._by_client_id.setdefault((key, client_order_id), []).append(order)
            return order.snapshot()

    def _walk_book(
        self,
        spec: MarketSpec,
        side: str,
        levels: list[list[float]],
        qty: Decimal | None,
        quote_qty: Decimal | None,
        limit_px: Decimal | None,
    ) -> list[tuple[Decimal, Decimal]]:
        """The (price, qty) pieces an order takes from the book, rounded to the lot step."""
        takes: list[tuple[Decimal, Decimal]] = []
        left_qty = qty
        left_quote = quote_qty
        for raw_p, raw_q in levels:
            p = Decimal(repr(raw_p)).quantize(spec.tick)
            if limit_px is not None and (
                (side == "buy" and p > limit_px) or (side == "sell" and p < limit_px)
            ):
                break
            q = Decimal(repr(raw_q)).quantize(spec.step, rounding=ROUND_DOWN)
            if left_qty is not None:
                q = min(q, left_qty)
            elif left_quote is not None:  # the smaller first: a huge quote amount cannot be quantized
                q = min(q, left_quote / p).quantize(spec.step, rounding=ROUND_DOWN)
            if q <= 0:
                break
            takes.append((p, q))
            if left_qty is not None:
                left_qty -= q
                if left_qty <= 0:
                    break
            elif left_quote is not None:
                left_quote -= p * q
                if left_quote <= 0:
                    break
        return takes

    def _fill(
        self,
        account: Account,
        spec: MarketSpec,
        order: Order,
        price: Decimal,
        qty: Decimal,
        now_ms: int,
        maker: bool,
    ) -> None:
        cost = price * qty
        base = account.balances.setdefault(spec.base, Balance(Decimal(0), Decimal(0)))
        quote = account.balances.setdefault(spec.quote, Balance(Decimal(0), Decimal(0)))
        if order.side == "buy":
            fee = (qty * self.fee_rate).quantize(Decimal("1e-8"))
            if maker:  # paid out of the funds locked at the limit price
                quote.locked -= order.price * qty  # type: ignore[operator]
                quote.free += order.price * qty - cost  # type: ignore[operator]
            else:
                quote.free -= cost
            base.free += qty - fee
            fee_asset = spec.base
        else:
            fee = (cost * self.fee_rate).quantize(Decimal("1e-8"))
            if maker:
                base.locked -= qty
            else:
                base.free -= qty
            quote.free += cost - fee
            fee_asset = spec.quote
        self._trade_seq += 1
        order.fills.append(Fill(self._trade_seq, now_ms, price, qty, fee, fee_asset, maker))
        order.filled += qty
        order.cost += cost
        order.fee += fee
        order.fee_asset = fee_asset
        order.updated_ms = now_ms

    def _lock_funds(self, account: Account, spec: MarketSpec, order: Order) -> None:
        if order.side == "buy":
            bal = account.balances[spec.quote]
            amount = order.remaining * order.price  # type: ignore[operator]
        else:
            bal = account.balances[spec.base]
            amount = order.remaining
        bal.free -= amount
        bal.locked += amount

    def _release(self, account: Account, spec: MarketSpec, order: Order) -> None:
        if order.side == "buy":
            bal = account.balances[spec.quote]
            amount = order.remaining * order.price  # type: ignore[operator]
        else:
            bal = account.balances[spec.base]
            amount = order.remaining
        bal.locked -= amount
        bal.free += amount

    def _match(self, now_ms: int) -> None:
        """Fill resting limit orders the market has crossed since they were last checked (as maker):
        a buy when the path's low since then reached its price, a sell when the high did."""
        if not self._open:
            return
        for order in list(self._open.values()):
            since = self._checked.get(order.id, order.created_ms)
            if now_ms <= since:
                continue
            self._checked[order.id] = now_ms
            _o, high, low, _c, _v = self._span(self._walks[order.symbol], since, now_ms)
            bid, ask, _ = self._quote(order.symbol, now_ms)
            px = float(order.price)  # type: ignore[arg-type]
            if order.side == "buy":
                crossed = low <= px or ask <= px
            else:
                crossed = high >= px or bid >= px
            if not crossed:
                continue
            spec = self.markets[order.symbol]
            self._fill(
                self._accounts[order.account], spec, order, order.price, order.remaining, now_ms, maker=True
            )  # type: ignore[arg-type]
            order.status = "closed"
            del self._open[order.id]
            self._checked.pop(order.id, None)

    def _find(self, key: str, symbol: str | None, order_id: str | None, client_order_id: str | None) -> Order:
        order: Order | None = None
        if order_id is not None:
            order = self._orders.get(str(order_id))
        elif client_order_id is not None:
            found = self._by_client_id.get((key, client_order_id))
            order = found[-1] if found else None
        else:
            raise VenueError("missing_parameter", "orderId")
        if order is None or order.account != key or (symbol is not None and order.symbol != symbol):
            raise VenueError("order_not_found", str(order_id or client_order_id))
        return order

    def get_order(
        self,
        key: str,
        now_ms: int,
        symbol: str | None = None,
        order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> Order:
        """The order by exchange id or client order id (the newest with that id)."""
        with self._lock:
            self._match(now_ms)
            return self._find(key, symbol, order_id, client_order_id).snapshot()

    def cancel_order(
        self,
        key: str,
        now_ms: int,
        symbol: str | None = None,
        order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> Order:
        """Cancel an open order and release its locked funds."""
        with self._lock:
            self._match(now_ms)
            order = self._find(key, symbol, order_id, client_order_id)
            if order.status != "open":
                raise VenueError("order_not_open", order.id)
            self._release(self._accounts[key], self.markets[order.symbol], order)
            order.status = "canceled"
            order.updated_ms = now_ms
            self._open.pop(order.id, None)
            self._checked.pop(order.id, None)
            return order.snapshot()

    def open_orders(self, key: str, now_ms: int, symbol: str | None = None) -> list[Order]:
        """Open orders of the account, oldest first, optionally for one symbol."""
        if symbol is not None:
            self.market(symbol)
        with self._lock:
            self._match(now_ms)
            return [
                o.snapshot()
                for o in sorted(self._open.values(), key=lambda o: o.seq)
                if o.account == key and (symbol is None or o.symbol == symbol)
            ]

    def orders(self, key: str | None = None) -> list[Order]:
        """Every order in the ledger (of one account when ``key`` is given), oldest first."""
        with self._lock:
            return [o.snapshot() for o in self._orders.values() if key is None or o.account == key]


def _checked_symbols(exchange: str, symbols: Iterable[str]) -> tuple[str, ...]:
    """``symbols`` as a tuple, or a ValueError naming the exchange, the symbol and what is wrong
    (a bare string, ``BTCUSDT`` instead of ``BTC/USDT``, a base asset the venue cannot price)."""
    if isinstance(symbols, str):
        raise ValueError(
            f"symbols for {exchange!r}: give a list of unified symbols such as ['BTC/USDT'], "
            f"not the string {symbols!r}"
        )
    names = tuple(symbols)
    if not names:
        raise ValueError(f"symbols for {exchange!r}: list at least one market")
    for name in names:
        base, sep, quote = name.partition("/") if isinstance(name, str) else ("", "", "")
        if not sep or not base or not quote or "/" in quote:
            raise ValueError(f"symbols for {exchange!r}: {name!r} is not a unified symbol like 'BTC/USDT'")
        if base not in _ASSET_RULES:
            raise ValueError(
                f"symbols for {exchange!r}: cannot simulate {name!r}; the base asset must be one of "
                f"{', '.join(_ASSET_RULES)}"
            )
    return names


def hash_name(name: str) -> int:
    """A stable 32-bit hash of a name (Python's ``hash`` changes per process)."""
    return zlib.crc32(name.encode())


def _dec(value: Decimal | str | float | None, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        raise VenueError("invalid_order", f"{name} {value!r} is not a number") from None
    if not number.is_finite():  # NaN and Infinity parse, then crash every comparison
        raise VenueError("invalid_order", f"{name} {value!r} is not a number")
    return number
