"""Binance spot REST as ccxt 4.5's ``binance`` class calls it: JSON shapes, HMAC signatures,
error codes and the ``x-mbx-used-weight`` / ``x-mbx-order-count`` headers.

Served under ``/binance``: ``/api/v3/{time,ping,exchangeInfo,ticker/24hr,ticker,
ticker/bookTicker,ticker/price,avgPrice,klines,uiKlines,depth,trades,aggTrades,historicalTrades,
account,order,order/test,openOrders,allOrders,myTrades}``, ``/sapi/v1/system/status`` and
``/sapi/v1/capital/config/getall`` (currencies).
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hardened.sim.dialect import (
    Dialect,
    DialectError,
    Route,
    SimRequest,
    SimResponse,
    hmac_sha256_hex,
    retry_after_header,
)
from hardened.sim.venue import Candle, MarketSpec, Order, Ticker, Trade, VenueError, format_decimal

__all__ = ["DIALECT", "BinanceDialect"]

# Every key of ccxt.binance().urls["api"] and the path its URL carries on the real hosts.
API_PATHS: dict[str, str] = {
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}

INTERVALS = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
WEIGHT_LIMIT_1M = 6000
ORDER_LIMIT_10S = 100
MAX_DEPTH = 5000  # /api/v3/depth truncates deeper asks to this
_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_STATUS = {"closed": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED", "rejected": "REJECTED"}
_Q8 = 8  # Binance prints every price and quantity with 8 decimals


def _f8(value: Decimal | float | None) -> str | None:
    return format_decimal(value, _Q8)


def _err(code: int, msg: str, status: int = 400) -> DialectError:
    return DialectError(SimResponse(status, {"code": code, "msg": msg}))


def _mandatory(name: str) -> DialectError:
    return _err(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


class BinanceDialect(Dialect):
    """Binance spot (``api.binance.com``) for an unmodified ``ccxt.binance``."""

    exchange_id = "binance"
    client_order_id_scope = "open"  # Binance: "a unique id among open orders"
    fee_rate = 0.001

    def __init__(self, venue: Any) -> None:
        super().__init__(venue)
        self._by_id = {spec.base + spec.quote: spec for spec in venue.markets.values()}
        self._lock = threading.Lock()
        self._weights: dict[str, tuple[int, int]] = {}  # ip -> (minute, used weight)
        self._order_counts: dict[str, tuple[int, int, int, int]] = {}  # key -> (10s slot, n, day, n)
        self._cancel_ids = 0

    # -- wiring -----------------------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        """Every Binance path the simulator answers."""
        r = Route
        return (
            r("GET", "/api/v3/ping", "time", self.ping),
            r("GET", "/api/v3/time", "time", self.time),
            r("GET", "/api/v3/exchangeInfo", "markets", self.exchange_info),
            r("GET", "/api/v3/ticker/24hr", "ticker", self.ticker_24hr),
            r("GET", "/api/v3/ticker", "ticker", self.ticker_rolling),
            r("GET", "/api/v3/ticker/bookTicker", "ticker", self.book_ticker),
            r("GET", "/api/v3/ticker/price", "ticker", self.price_ticker),
            r("GET", "/api/v3/avgPrice", "ticker", self.avg_price),
            r("GET", "/api/v3/klines", "ohlcv", self.klines),
            r("GET", "/api/v3/uiKlines", "ohlcv", self.klines),
            r("GET", "/api/v3/depth", "order_book", self.depth),
            r("GET", "/api/v3/trades", "trades", self.recent_trades),
            r("GET", "/api/v3/historicalTrades", "trades", self.recent_trades),
            r("GET", "/api/v3/aggTrades", "trades", self.agg_trades),
            r("GET", "/api/v3/account", "balance", self.account),
            r("POST", "/api/v3/order", "create_order", self.create_order),
            r("POST", "/api/v3/order/test", "create_order", self.create_order),
            r("GET", "/api/v3/order", "fetch_order", self.fetch_order),
            r("DELETE", "/api/v3/order", "cancel_order", self.cancel_order),
            r("GET", "/api/v3/openOrders", "open_orders", self.open_orders),
            r("DELETE", "/api/v3/openOrders", "cancel_order", self.cancel_all),
            r("GET", "/api/v3/allOrders", "orders", self.all_orders),
            r("GET", "/api/v3/myTrades", "my_trades", self.my_trades),
            r("GET", "/sapi/v1/system/status", "status", self.system_status),
            r("GET", "/sapi/v1/capital/config/getall", "markets", self.coins),
        )

    def api_urls(self, base: str) -> dict[str, str]:
        """Every ccxt binance API family pointed at ``base`` (futures and margin answer 404)."""
        return {key: base + path for key, path in API_PATHS.items()}

    def configure(self, exchange: Any) -> None:
        """Spot markets only, currencies from sapi capital/config (ccxt asks only with a key),
        no margin pair lists."""
        options = exchange.options
        fetch_markets = dict(options.get("fetchMarkets") or {})
        fetch_markets["types"] = ["spot"]
        options["fetchMarkets"] = fetch_markets
        options["fetchCurrencies"] = True
        options["fetchMargins"] = False
        options["defaultType"] = "spot"

    @staticmethod
    def order_id(seq: int) -> str:
        """Binance order ids are integers beyond 32 bits."""
        return str(4_000_000_000 + seq)

    # -- errors -----------------------------------------------------------------------------------
    def venue_error(self, error: VenueError, req: SimRequest) -> SimResponse:
        """Binance's codes and words for each venue refusal."""
        kind, detail = error.kind, error.detail
        if kind == "unknown_symbol":
            code, msg = -1121, "Invalid symbol."
        elif kind == "missing_parameter":
            code, msg = -1102, f"Mandatory parameter '{detail}' was not sent, was empty/null, or malformed."
        elif kind == "invalid_quantity":
            code, msg = -1013, "Filter failure: LOT_SIZE"
        elif kind == "invalid_price":
            code, msg = -1013, "Filter failure: PRICE_FILTER"
        elif kind == "min_notional":
            code, msg = -1013, "Filter failure: NOTIONAL"
        elif kind == "duplicate_client_order_id":
            code, msg = -2010, "Duplicate order sent."
        elif kind == "insufficient_funds":
            code, msg = -2010, "Account has insufficient balance for requested action."
        elif kind == "post_only_would_take":
            code, msg = -2010, "Order would immediately match and take."
        elif kind in ("order_not_found", "order_not_open"):
            if req.endpoint == "cancel_order":
                code, msg = -2011, "Unknown order sent."
            else:
                code, msg = -2013, "Order does not exist."
        elif detail.startswith("side"):
            code, msg = -1117, "Invalid side."
        elif detail.startswith("type"):
            code, msg = -1116, "Invalid orderType."
        elif detail.startswith("timeInForce"):
            code, msg = -1115, "Invalid timeInForce."
        elif detail.startswith("unsupported timeframe"):
            code, msg = -1120, "Invalid interval."
        else:
            code, msg = -1100, f"Illegal characters found in a parameter: {detail}"
        return SimResponse(400, {"code": code, "msg": msg})

    def fault_error(self, kind: str, req: SimRequest) -> SimResponse:
        """rate_limit: 429 -1003; clock_skew: 400 -1021; maintenance: 503 'System is under maintenance.'"""
        if kind == "rate_limit":
            return self.throttled(429, 1.0, req)
        if kind == "clock_skew":
            return SimResponse(
                400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
            )
        return SimResponse(503, {"code": -1016, "msg": "System is under maintenance."})

    def throttled(self, status: int, retry_after: float, req: SimRequest) -> SimResponse:
        """429 (-1003, too many requests) or 418 (-1003, IP banned until ...), with Retry-After."""
        seconds = int(retry_after_header(retry_after))
        ip = req.remote or "127.0.0.1"
        if status == 418:
            until = req.now_ms + seconds * 1000
            msg = (
                f"Way too many requests; IP({ip}) banned until {until}. "
                "Please use the websocket for live updates to avoid bans."
            )
        else:
            msg = (
                f"Too many requests; current limit of IP({ip}) is {WEIGHT_LIMIT_1M} requests per minute. "
                "Please use the websocket for live updates to avoid polling the API."
            )
        return SimResponse(status, {"code": -1003, "msg": msg}, {"Retry-After": str(seconds)})

    def not_found(self, req: SimRequest) -> SimResponse:
        """Unknown paths: Binance's front end answers 404 with an HTML body."""
        return SimResponse(404, "<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html")

    # -- rate limits ------------------------------------------------------------------------------
    def _weight(self, req: SimRequest) -> int:
        path = req.path
        q = req.query
        if path == "/api/v3/exchangeInfo" or path == "/api/v3/account":
            return 20
        if path == "/api/v3/ticker/24hr" or path == "/api/v3/ticker":
            if "symbol" in q:
                return 2 if path.endswith("24hr") else 4
            symbols = q.get("symbols")
            if symbols is not None:
                n = symbols.count(",") + 1
                return 2 if n <= 20 else (40 if n <= 100 else 80)
            return 80
        if path in ("/api/v3/ticker/bookTicker", "/api/v3/ticker/price"):
            return 2 if "symbol" in q else 4
        if path in ("/api/v3/klines", "/api/v3/uiKlines", "/api/v3/avgPrice"):
            return 2
        if path == "/api/v3/depth":
            limit = _int(q.get("limit"), 100)
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if path in ("/api/v3/trades", "/api/v3/historicalTrades"):
            return 25
        if path == "/api/v3/aggTrades":
            return 4
        if path == "/api/v3/order":
            return 4 if req.method == "GET" else 1
        if path == "/api/v3/openOrders":
            return (6 if "symbol" in q else 80) if req.method == "GET" else 1
        if path in ("/api/v3/allOrders", "/api/v3/myTrades"):
            return 20
        return 1

    def before(self, req: SimRequest) -> SimResponse | None:
        """Count request weight per IP per minute; refuse over the budget when enforcing."""
        weight = self._weight(req)
        minute = req.now_ms // 60_000
        ip = req.remote or "?"
        with self._lock:
            slot, used = self._weights.get(ip, (minute, 0))
            if slot != minute:
                used = 0
            used += weight
            self._weights[ip] = (minute, used)
        if self.enforce_rate_limits and used > WEIGHT_LIMIT_1M:
            retry = (minute + 1) * 60_000 - req.now_ms
            return SimResponse(
                429,
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {WEIGHT_LIMIT_1M} request weight "
                    "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                },
                {"Retry-After": retry_after_header(max(1.0, retry / 1000))},  # the window's end, not before
            )
        return None

    def after(self, req: SimRequest, resp: SimResponse) -> None:
        """Binance's usage headers on every answer."""
        minute = req.now_ms // 60_000
        _slot, used = self._weights.get(req.remote or "?", (minute, 0))
        if _slot != minute:
            used = 0
        resp.headers["x-mbx-used-weight"] = str(used)
        resp.headers["x-mbx-used-weight-1m"] = str(used)
        if req.endpoint == "create_order" and req.method == "POST":
            key = req.header("X-MBX-APIKEY") or "?"
            slot10, day = req.now_ms // 10_000, req.now_ms // 86_400_000
            with self._lock:
                s, n, d, nd = self._order_counts.get(key, (slot10, 0, day, 0))
                n = n + 1 if s == slot10 else 1
                nd = nd + 1 if d == day else 1
                self._order_counts[key] = (slot10, n, day, nd)
            resp.headers["x-mbx-order-count-10s"] = str(n)
            resp.headers["x-mbx-order-count-1d"] = str(nd)

    # -- helpers ----------------------------------------------------------------------------------
    def _spec(self, req: SimRequest, name: str = "symbol") -> MarketSpec:
        market_id = req.param(name)
        if not market_id:
            raise _mandatory(name)
        spec = self._by_id.get(market_id.upper())
        if spec is None:
            raise _err(-1121, "Invalid symbol.")
        return spec

    def _signed(self, req: SimRequest) -> str:
        """Check API key, signature and timestamp as Binance does; returns the API key."""
        key = req.header("X-MBX-APIKEY")
        if not key:
            raise _err(-2014, "API-key format invalid.", 401)
        account = self.venue.account(key)
        if account is None:
            raise _err(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        query, body = req.raw_query, req.body_text
        signature = None
        parts_q, sig_q = _strip_signature(query)
        parts_b, sig_b = _strip_signature(body)
        signature = sig_q or sig_b
        if not signature:
            raise _mandatory("signature")
        timestamp = req.param("timestamp")
        if not timestamp:
            raise _mandatory("timestamp")
        expected = hmac_sha256_hex(account.secret, parts_q + parts_b)
        if signature.lower() != expected:
            raise _err(-1022, "Signature for this request is not valid.")
        recv_window = _int(req.param("recvWindow"), 5000)
        if recv_window > 60_000:
            raise _err(-1131, "recvWindow must be less than 60000")
        ts = _int(timestamp, 0)
        if ts > req.now_ms + 1000:
            raise _err(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if req.now_ms - ts > recv_window:
            raise _err(-1021, "Timestamp for this request is outside of the recvWindow.")
        return key

    # -- public -----------------------------------------------------------------------------------
    def ping(self, req: SimRequest) -> Any:
        """GET /api/v3/ping."""
        return {}

    def time(self, req: SimRequest) -> Any:
        """GET /api/v3/time."""
        return {"serverTime": req.now_ms}

    def system_status(self, req: SimRequest) -> Any:
        """GET /sapi/v1/system/status."""
        return {"status": 0, "msg": "normal"}

    def _symbol_info(self, spec: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": spec.base + spec.quote,
            "status": "TRADING",
            "baseAsset": spec.base,
            "baseAssetPrecision": 8,
            "quoteAsset": spec.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _f8(spec.tick),
                    "maxPrice": _f8(spec.max_price),
                    "tickSize": _f8(spec.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _f8(spec.min_qty),
                    "maxQty": _f8(spec.max_qty),
                    "stepSize": _f8(spec.step),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": _f8(spec.max_qty),
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _f8(spec.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def exchange_info(self, req: SimRequest) -> Any:
        """GET /api/v3/exchangeInfo (optionally ``symbol`` or ``symbols``)."""
        specs = list(self.venue.markets.values())
        wanted = req.param("symbol")
        symbols = req.param("symbols")
        if wanted:
            specs = [self._spec(req)]
        elif symbols:
            ids = [s.strip('"') for s in symbols.strip("[]").split(",") if s]
            if any(i not in self._by_id for i in ids):
                raise _err(-1121, "Invalid symbol.")
            specs = [self._by_id[i] for i in ids]
        return {
            "timezone": "UTC",
            "serverTime": req.now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": WEIGHT_LIMIT_1M,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": ORDER_LIMIT_10S,
                },
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(spec) for spec in specs],
        }

    def _ticker_specs(self, req: SimRequest) -> tuple[list[MarketSpec], bool]:
        if req.param("symbol"):
            return [self._spec(req)], True
        symbols = req.param("symbols")
        if symbols:
            ids = [s.strip().strip('"') for s in symbols.strip("[]").split(",") if s.strip()]
            if any(i not in self._by_id for i in ids):
                raise _err(-1121, "Invalid symbol.")
            return [self._by_id[i] for i in ids], False
        return list(self.venue.markets.values()), False

    def _ticker_json(self, spec: MarketSpec, t: Ticker, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": spec.base + spec.quote,
            "priceChange": _f8(t.change),
            "priceChangePercent": None if t.percentage is None else f"{t.percentage:.3f}",
            "weightedAvgPrice": _f8(t.vwap),
        }
        if full:
            out["prevClosePrice"] = _f8(t.prev_close)
        out["lastPrice"] = _f8(t.last)
        if full:
            out.update(
                {
                    "lastQty": _f8(t.last_qty),
                    "bidPrice": _f8(t.bid),
                    "bidQty": _f8(t.bid_qty),
                    "askPrice": _f8(t.ask),
                    "askQty": _f8(t.ask_qty),
                }
            )
        out.update(
            {
                "openPrice": _f8(t.open),
                "highPrice": _f8(t.high),
                "lowPrice": _f8(t.low),
                "volume": _f8(t.volume),
                "quoteVolume": _f8(t.quote_volume),
                "openTime": t.open_ts,
                "closeTime": t.ts,
                "firstId": t.first_trade_id,
                "lastId": t.last_trade_id,
                "count": t.count,
            }
        )
        return out

    def _tickers(self, req: SimRequest, full: bool) -> Any:
        specs, single = self._ticker_specs(req)
        rows = [
            self._ticker_json(spec, req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms)), full)
            for spec in specs
        ]
        return rows[0] if single else rows

    def ticker_24hr(self, req: SimRequest) -> Any:
        """GET /api/v3/ticker/24hr."""
        return self._tickers(req, full=True)

    def ticker_rolling(self, req: SimRequest) -> Any:
        """GET /api/v3/ticker (rolling window: no bid/ask, as on Binance)."""
        return self._tickers(req, full=False)

    def book_ticker(self, req: SimRequest) -> Any:
        """GET /api/v3/ticker/bookTicker."""
        specs, single = self._ticker_specs(req)
        rows = []
        for spec in specs:
            t = req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms))
            rows.append(
                {
                    "symbol": spec.base + spec.quote,
                    "bidPrice": _f8(t.bid),
                    "bidQty": _f8(t.bid_qty),
                    "askPrice": _f8(t.ask),
                    "askQty": _f8(t.ask_qty),
                }
            )
        return rows[0] if single else rows

    def price_ticker(self, req: SimRequest) -> Any:
        """GET /api/v3/ticker/price."""
        specs, single = self._ticker_specs(req)
        rows = [
            {
                "symbol": spec.base + spec.quote,
                "price": _f8(req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms)).last),
            }
            for spec in specs
        ]
        return rows[0] if single else rows

    def avg_price(self, req: SimRequest) -> Any:
        """GET /api/v3/avgPrice (5-minute average)."""
        spec = self._spec(req)
        candles = self.venue.candles(spec.symbol, "1m", req.now_ms, limit=5)
        avg = sum(c.close for c in candles) / len(candles)
        return {"mins": 5, "price": _f8(avg), "closeTime": req.now_ms}

    def klines(self, req: SimRequest) -> Any:
        """GET /api/v3/klines: interval, startTime, endTime, limit (default 500, max 1000)."""
        spec = self._spec(req)
        interval = req.param("interval")
        if not interval:
            raise _mandatory("interval")
        if interval not in INTERVALS:
            raise _err(-1120, "Invalid interval.")
        limit = _int(req.param("limit"), 500)
        if not 1 <= limit <= 1000:
            raise _err(-1100, "Illegal characters found in parameter 'limit'; legal range is '1000'.")
        candles: list[Candle] = self.venue.candles(
            spec.symbol,
            interval,
            req.now_ms,
            since_ms=_opt_int(req.param("startTime")),
            until_ms=_opt_int(req.param("endTime")),
            limit=limit,
        )
        candles = req.apply_bad_data(candles)
        return [
            [
                c.ts,
                _f8(c.open),
                _f8(c.high),
                _f8(c.low),
                _f8(c.close),
                _f8(c.volume),
                c.close_ts,
                _f8(c.quote_volume),
                c.trades,
                _f8(c.volume / 2),
                _f8(c.quote_volume / 2),
                "0",
            ]
            for c in candles
        ]

    def depth(self, req: SimRequest) -> Any:
        """GET /api/v3/depth: limit default 100, max 5000 ("If limit > 5000, then the response will
        truncate to 5000", Binance's docs: a deeper ask is answered, not refused)."""
        spec = self._spec(req)
        limit = _int(req.param("limit"), 100)
        if limit < 1:
            raise _err(-1100, "Illegal characters found in parameter 'limit'; legal range is '5000'.")
        limit = min(limit, MAX_DEPTH)
        book = req.apply_bad_data(self.venue.order_book(spec.symbol, req.now_ms, limit))
        return {
            "lastUpdateId": book.nonce,
            "bids": [[_f8(p), _f8(q)] for p, q in book.bids],
            "asks": [[_f8(p), _f8(q)] for p, q in book.asks],
        }

    def _trades(self, req: SimRequest, default_limit: int = 500) -> list[Trade]:
        spec = self._spec(req)
        limit = _int(req.param("limit"), default_limit)
        if not 1 <= limit <= 1000:
            raise _err(-1100, "Illegal characters found in parameter 'limit'; legal range is '1000'.")
        trades = self.venue.trades(
            spec.symbol,
            req.now_ms,
            since_ms=_opt_int(req.param("startTime")),
            until_ms=_opt_int(req.param("endTime")),
            limit=limit,
            from_id=_opt_int(req.param("fromId")),
        )
        return req.apply_bad_data(trades)

    def recent_trades(self, req: SimRequest) -> Any:
        """GET /api/v3/trades and /historicalTrades."""
        return [
            {
                "id": t.id,
                "price": _f8(t.price),
                "qty": _f8(t.qty),
                "quoteQty": _f8(t.price * t.qty),
                "time": t.ts,
                "isBuyerMaker": t.buyer_is_maker,
                "isBestMatch": True,
            }
            for t in self._trades(req)
        ]

    def agg_trades(self, req: SimRequest) -> Any:
        """GET /api/v3/aggTrades (what ccxt's fetch_trades calls by default)."""
        return [
            {
                "a": t.id,
                "p": _f8(t.price),
                "q": _f8(t.qty),
                "f": t.id,
                "l": t.id,
                "T": t.ts,
                "m": t.buyer_is_maker,
                "M": True,
            }
            for t in self._trades(req)
        ]

    # -- private ----------------------------------------------------------------------------------
    def account(self, req: SimRequest) -> Any:
        """GET /api/v3/account."""
        key = self._signed(req)
        balances = self.venue.balances(key, req.now_ms)
        omit_zero = (req.param("omitZeroBalances") or "").lower() == "true"
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": req.now_ms,
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": _f8(b.free), "locked": _f8(b.locked)}
                for asset, b in balances.items()
                if not (omit_zero and b.total == 0)
            ],
            "permissions": ["SPOT"],
            "uid": 100000000 + zlib.crc32(key.encode()) % 100000000,
        }

    def _order_json(self, o: Order, spec: MarketSpec, *, create: bool = False) -> dict[str, Any]:
        if o.status == "open":
            status = "PARTIALLY_FILLED" if o.filled > 0 else "NEW"
        else:
            status = _STATUS[o.status]
        out: dict[str, Any] = {
            "symbol": spec.base + spec.quote,
            "orderId": int(o.id),
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
        }
        if create:
            out["transactTime"] = o.created_ms
        out.update(
            {
                "price": _f8(o.price if o.price is not None else Decimal(0)),
                "origQty": _f8(o.amount),
                "executedQty": _f8(o.filled),
                "origQuoteOrderQty": _f8(o.quote_amount or Decimal(0)),
                "cummulativeQuoteQty": _f8(o.cost),
                "status": status,
                "timeInForce": o.time_in_force,
                "type": "LIMIT_MAKER" if o.post_only else o.type.upper(),
                "side": o.side.upper(),
            }
        )
        if not create:
            out.update(
                {
                    "stopPrice": "0.00000000",
                    "icebergQty": "0.00000000",
                    "time": o.created_ms,
                    "updateTime": o.updated_ms,
                    "isWorking": o.status == "open",
                }
            )
        out["workingTime"] = o.created_ms
        out["selfTradePreventionMode"] = "NONE"
        return out

    def create_order(self, req: SimRequest) -> Any:
        """POST /api/v3/order (and /order/test, which validates and answers ``{}``)."""
        key = self._signed(req)
        spec = self._spec(req)
        side = req.param("side")
        if not side:
            raise _mandatory("side")
        order_type = req.param("type")
        if not order_type:
            raise _mandatory("type")
        order_type = order_type.upper()
        if order_type not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise (
                _err(-1116, "Invalid orderType.")
                if order_type not in _KNOWN_TYPES
                else _err(-1013, "This order type is not supported by the simulator.")
            )
        tif = req.param("timeInForce")
        if order_type == "LIMIT" and not tif:
            raise _mandatory("timeInForce")
        client_id = req.param("newClientOrderId")
        if client_id is not None and not _CLIENT_ID_RE.match(client_id):
            raise _err(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        if client_id is None:
            client_id = self._generated_client_id()
        quantity = req.param("quantity")
        quote_qty = req.param("quoteOrderQty")
        if order_type == "MARKET" and quantity and quote_qty:
            raise _err(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if req.path.endswith("/test"):
            return {}
        order = self.venue.create_order(
            key,
            spec.symbol,
            side.lower(),
            "market" if order_type == "MARKET" else "limit",
            req.now_ms,
            amount=quantity or None,
            price=req.param("price") if order_type != "MARKET" else None,
            quote_amount=quote_qty or None,
            client_order_id=client_id,
            time_in_force=(tif or "GTC") if order_type != "MARKET" else "GTC",
            post_only=order_type == "LIMIT_MAKER",
        )
        resp_type = (req.param("newOrderRespType") or "FULL").upper()
        if resp_type == "ACK":
            return {
                "symbol": spec.base + spec.quote,
                "orderId": int(order.id),
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": order.created_ms,
            }
        body = self._order_json(order, spec, create=True)
        if resp_type == "FULL":
            body["fills"] = [
                {
                    "price": _f8(f.price),
                    "qty": _f8(f.qty),
                    "commission": _f8(f.fee),
                    "commissionAsset": f.fee_asset,
                    "tradeId": f.trade_id,
                }
                for f in order.fills
            ]
        return body

    def _generated_client_id(self) -> str:
        with self._lock:
            self._cancel_ids += 1
            n = self._cancel_ids
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        x = int.from_bytes(hashlib.blake2b(f"{self.venue.seed}:{n}".encode(), digest_size=17).digest(), "big")
        chars = []
        for _ in range(22):
            x, r = divmod(x, 62)
            chars.append(alphabet[r])
        return "".join(chars)

    def _order_ref(self, req: SimRequest) -> tuple[str | None, str | None]:
        order_id = req.param("orderId")
        client_id = req.param("origClientOrderId")
        if not order_id and not client_id:
            raise _err(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        return order_id or None, (client_id or None) if not order_id else None

    def fetch_order(self, req: SimRequest) -> Any:
        """GET /api/v3/order by orderId or origClientOrderId."""
        key = self._signed(req)
        spec = self._spec(req)
        order_id, client_id = self._order_ref(req)
        order = self.venue.get_order(key, req.now_ms, spec.symbol, order_id, client_id)
        return self._order_json(order, spec)

    def _cancel_json(self, order: Order, spec: MarketSpec, req: SimRequest) -> dict[str, Any]:
        body = self._order_json(order, spec, create=True)
        body["origClientOrderId"] = order.client_order_id
        body["clientOrderId"] = req.param("newClientOrderId") or self._generated_client_id()
        body["transactTime"] = order.updated_ms
        return body

    def cancel_order(self, req: SimRequest) -> Any:
        """DELETE /api/v3/order by orderId or origClientOrderId."""
        key = self._signed(req)
        spec = self._spec(req)
        order_id, client_id = self._order_ref(req)
        order = self.venue.cancel_order(key, req.now_ms, spec.symbol, order_id, client_id)
        return self._cancel_json(order, spec, req)

    def cancel_all(self, req: SimRequest) -> Any:
        """DELETE /api/v3/openOrders: cancel every open order of a symbol."""
        key = self._signed(req)
        spec = self._spec(req)
        out = []
        for order in self.venue.open_orders(key, req.now_ms, spec.symbol):
            canceled = self.venue.cancel_order(key, req.now_ms, spec.symbol, order.id)
            out.append(self._cancel_json(canceled, spec, req))
        if not out:
            raise _err(-2011, "Unknown order sent.")
        return out

    def open_orders(self, req: SimRequest) -> Any:
        """GET /api/v3/openOrders (one symbol or all)."""
        key = self._signed(req)
        symbol = self._spec(req).symbol if req.param("symbol") else None
        return [
            self._order_json(o, self.venue.markets[o.symbol])
            for o in self.venue.open_orders(key, req.now_ms, symbol)
        ]

    def all_orders(self, req: SimRequest) -> Any:
        """GET /api/v3/allOrders for a symbol (startTime, endTime, limit)."""
        key = self._signed(req)
        spec = self._spec(req)
        since = _opt_int(req.param("startTime"))
        until = _opt_int(req.param("endTime"))
        limit = _int(req.param("limit"), 500)
        self.venue.balances(key, req.now_ms)  # lets resting orders fill first
        orders = [
            o
            for o in self.venue.orders(key)
            if o.symbol == spec.symbol
            and (since is None or o.created_ms >= since)
            and (until is None or o.created_ms <= until)
        ]
        return [self._order_json(o, spec) for o in orders[-limit:]]

    def coins(self, req: SimRequest) -> Any:
        """GET /sapi/v1/capital/config/getall: every asset of the listed markets with the account's
        holdings and one deposit/withdraw network each (Binance's "all coins' information")."""
        key = self._signed(req)
        balances = self.venue.balances(key, req.now_ms)
        assets = sorted(
            {a for spec in self.venue.markets.values() for a in (spec.base, spec.quote)} | set(balances)
        )
        out = []
        for asset in assets:
            network = _NETWORKS.get(asset, asset)
            held = balances.get(asset)
            out.append(
                {
                    "coin": asset,
                    "depositAllEnable": True,
                    "withdrawAllEnable": True,
                    "name": _COIN_NAMES.get(asset, asset),
                    "free": _f8(held.free if held else Decimal(0)),
                    "locked": _f8(held.locked if held else Decimal(0)),
                    "freeze": "0",
                    "withdrawing": "0",
                    "ipoing": "0",
                    "ipoable": "0",
                    "storage": "0",
                    "isLegalMoney": asset in ("EUR", "USD"),
                    "trading": True,
                    "networkList": [
                        {
                            "network": network,
                            "coin": asset,
                            "withdrawIntegerMultiple": "0.00000001",
                            "isDefault": True,
                            "depositEnable": True,
                            "withdrawEnable": True,
                            "depositDesc": "",
                            "withdrawDesc": "",
                            "specialTips": "",
                            "name": _COIN_NAMES.get(asset, asset),
                            "resetAddressStatus": False,
                            "addressRegex": "^[0-9A-Za-z]{20,64}$",
                            "memoRegex": "",
                            "withdrawFee": _WITHDRAW_FEES.get(asset, "0.1"),
                            "withdrawMin": _WITHDRAW_MINS.get(asset, "1"),
                            "withdrawMax": "9999999999",
                            "depositDust": "0.00000001",
                            "minConfirm": 1,
                            "unLockConfirm": 0,
                            "sameAddress": False,
                            "estimatedArrivalTime": 5,
                            "busy": False,
                            "contractAddressUrl": "",
                            "contractAddress": "",
                        }
                    ],
                }
            )
        return out

    def my_trades(self, req: SimRequest) -> Any:
        """GET /api/v3/myTrades[?orderId=]: the account's fills in a symbol (of one order)."""
        key = self._signed(req)
        spec = self._spec(req)
        limit = _int(req.param("limit"), 500)
        order_id = req.param("orderId")
        self.venue.balances(key, req.now_ms)
        rows = []
        for o in self.venue.orders(key):
            if o.symbol != spec.symbol or (order_id and o.id != order_id):
                continue
            for f in o.fills:
                rows.append(
                    {
                        "symbol": spec.base + spec.quote,
                        "id": f.trade_id,
                        "orderId": int(o.id),
                        "orderListId": -1,
                        "price": _f8(f.price),
                        "qty": _f8(f.qty),
                        "quoteQty": _f8(f.price * f.qty),
                        "commission": _f8(f.fee),
                        "commissionAsset": f.fee_asset,
                        "time": f.ts,
                        "isBuyer": o.side == "buy",
                        "isMaker": f.maker,
                        "isBestMatch": True,
                    }
                )
        rows.sort(key=lambda r: r["id"])
        return rows[-limit:]


# Deposit/withdraw networks, names and fees of the simulated coins (the shapes of Binance's answer;
# the numbers are plausible, not Binance's).
_NETWORKS = {"USDT": "ETH", "EUR": "SEPA"}
_COIN_NAMES = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "SOL": "Solana",
    "XRP": "Ripple",
    "USDT": "TetherUS",
    "EUR": "Euro",
}
_WITHDRAW_FEES = {"BTC": "0.0002", "ETH": "0.0012", "SOL": "0.01", "XRP": "0.2", "USDT": "4", "EUR": "0"}
_WITHDRAW_MINS = {"BTC": "0.001", "ETH": "0.005", "SOL": "0.1", "XRP": "20", "USDT": "10", "EUR": "10"}

_KNOWN_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """(``raw`` without its ``signature=`` parameter, the signature)."""
    if not raw or "signature=" not in raw:
        return raw, None
    kept = []
    signature = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _err(-1100, f"Illegal characters found in parameter; '{value}' is not an integer.") from None


def _opt_int(value: str | None) -> int | None:
    return None if value is None or value == "" else _int(value, 0)


DIALECT = BinanceDialect
