"""Bitvavo REST v2 as ccxt 4.5's ``bitvavo`` class calls it: JSON shapes, ``Bitvavo-Access-*``
signatures, ``{"errorCode": n, "error": "..."}`` errors and ``bitvavo-ratelimit-*`` headers.

Served under ``/bitvavo``: ``/v2/{time,markets,assets,ticker/24h,ticker/book,ticker/price,
{market}/candles,{market}/book,{market}/trades,balance,order,orders (GET, DELETE),ordersOpen,
trades}``.

Error words (each checked against ccxt 4.5.90 ``bitvavo.py`` ``describe()["exceptions"]`` so that
ccxt raises what it raises live; sources: docs.bitvavo.com/docs/errors, the error texts quoted in
ccxt's table, and Bitvavo's support article "API-Fehlermeldungen"):

==================================  ====  ===========================================  ====================
situation                           HTTP  errorCode / error                            ccxt class
==================================  ====  ===========================================  ====================
no key header                       403   300 "Authentication is required ..."         AuthenticationError
key not 64 characters               403   301 "API Key must be of length 64."          AuthenticationError
timestamp header not a number       403   302 "Timestamp is invalid ..."               AuthenticationError
window outside 100..60000 ms        403   303 "Window must be between 100 and 60000"   AuthenticationError
timestamp outside the window        403   304 "Request was not received within ..."    AuthenticationError
  (clock skew)
unknown key                         403   305 "No active API key found."               AuthenticationError
signature not 64 hex digits         403   308 "The signature length is invalid ..."    AuthenticationError
wrong signature                     403   309 "The signature is invalid."              AuthenticationError
rate limit                          429   103 "You have been rate limited ..."         RateLimitExceeded
ban                                 429   105 "Your IP or API key has been banned ..." RateLimitExceeded
maintenance / overload              503   107 "The matching engine is overloaded ..."  ExchangeNotAvailable
unknown market                      400   205 "market parameter is invalid."           BadRequest
missing parameter                   400   203 "<name> parameter is required."          BadSymbol (sic)
invalid parameter                   400   205 "<name> parameter is invalid."           BadRequest
amount not a step multiple          400   205 "amount parameter is invalid."           InvalidOrder
amount under / over the limits      400   212 / 210                                    InvalidOrder
price off the tick / too high       400   214 / 211                                    InvalidOrder
notional under the minimum          400   217 "Minimum order size in quote ..."        InvalidOrder
insufficient balance                400   216 "You do not have sufficient balance ..." InsufficientFunds
duplicate clientOrderId             400   220 "clientOrderId conflict within the       ExchangeError
                                          market."
order not found                     404   240 "No order found. ..."                    OrderNotFound
cancel of a closed order            400   233 "Order must be active ..."               OrderNotFound
unknown path                        404   110 "Invalid endpoint. ..."                  BadRequest
==================================  ====  ===========================================  ====================

Notes: ccxt has no entry for 220, so a refused duplicate clientOrderId surfaces as the generic
ExchangeError; 203 is mapped to BadSymbol in ccxt whatever parameter is missing; Bitvavo's own
documentation places 304 (clock skew) among the authentication errors, so ccxt raises
AuthenticationError for it. ccxt's ``parse_order`` never reads ``clientOrderId`` (it is in
``info``). Maintenance has no documented code: the simulator answers 107, the documented
"unavailable" word that ccxt maps to ExchangeNotAvailable. A clientOrderId must be a UUID
(docs: "Your identifier of the order", UUID examples; FIX ClOrdID "Must be a valid UUID") and
unique among open orders.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from hardened.sim.dialect import Dialect, DialectError, Route, SimRequest, SimResponse, WeightWindow
from hardened.sim.venue import MarketSpec, Order, Ticker, Venue, VenueError, format_decimal

__all__ = ["DIALECT", "BitvavoDialect"]

INTERVALS = ("1m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1W", "1M")
MAX_CANDLES = 1440
MAX_TRADES = 1000
DEFAULT_TRADES = 500
DEFAULT_BOOK_DEPTH = 1000
RATE_LIMIT = 1000  # weighted requests per minute, per API key (or per IP without one)
RATE_WINDOW_MS = 60_000
DEFAULT_WINDOW_MS = 10_000  # Bitvavo-Access-Window when absent
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FIAT_DECIMALS = {"EUR": 2, "USDT": 2, "USDC": 2}
_ORDER_UUID_TAG = 0xB17A_0001
_TRADE_UUID_TAG = 0xB17A_0002
_FILL_UUID_TAG = 0xB17A_0003

_MSG_103 = (
    "You have been rate limited. Please observe the Bitvavo-Ratelimit-AllowAt header to see when you can "
    "send requests again. Failure to respect this limit will result in an IP ban. The default value is "
    "1000 weighted requests per minute. Please contact support if you wish to increase this limit."
)
_MSG_304 = (
    "Request was not received within acceptable window (default 30s, or custom with Bitvavo-Access-Window "
    "header) of Bitvavo-Access-Timestamp header (or timestamp parameter for websocket)."
)
_MSG_240 = (
    "No order found. Please be aware that simultaneously updating the same order may return this error."
)


def _uuid(tag: int, n: int) -> str:
    """A deterministic version-4-shaped UUID carrying ``n`` (Bitvavo ids are UUIDs)."""
    return str(uuid.UUID(int=(tag << 96) | (n & ((1 << 62) - 1)), version=4))


def _fail(code: int, error: str, status: int = 400) -> SimResponse:
    return SimResponse(status, {"errorCode": code, "error": error})


def _err(code: int, error: str, status: int = 400) -> DialectError:
    return DialectError(_fail(code, error, status))


def _required(name: str) -> DialectError:
    return _err(203, f"{name} parameter is required.")


def _invalid(name: str) -> DialectError:
    return _err(205, f"{name} parameter is invalid.")


def _plain(value: Decimal | None) -> str | None:
    """A ledger Decimal in plain notation without trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _int(req: SimRequest, name: str, default: int | None) -> int | None:
    value = req.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _invalid(name) from None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class BitvavoDialect(Dialect):
    """Bitvavo (``api.bitvavo.com/v2``) for an unmodified ``ccxt.bitvavo``."""

    exchange_id = "bitvavo"
    client_order_id_scope = "open"  # "Must be unique across open orders"
    fee_rate = 0.0025  # category A taker fee at the lowest volume tier

    def __init__(self, venue: Venue) -> None:
        super().__init__(venue)
        self._by_id = {_market_id(spec): spec for spec in venue.markets.values()}
        self._budget = WeightWindow(RATE_LIMIT, RATE_WINDOW_MS)

    # -- wiring -----------------------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        """Every Bitvavo path the simulator answers (literal paths win over ``{market}``)."""
        r = Route
        return (
            r("GET", "/v2/time", "time", self.time, 1),
            r("GET", "/v2/markets", "markets", self.markets, 1),
            r("GET", "/v2/assets", "markets", self.assets, 1),
            r("GET", "/v2/ticker/24h", "ticker", self.ticker_24h, 1),
            r("GET", "/v2/ticker/book", "ticker", self.ticker_book, 1),
            r("GET", "/v2/ticker/price", "ticker", self.ticker_price, 1),
            r("GET", "/v2/{market}/candles", "ohlcv", self.candles, 1),
            r("GET", "/v2/{market}/book", "order_book", self.book, 1),
            r("GET", "/v2/{market}/trades", "trades", self.trades, 5),
            r("GET", "/v2/balance", "balance", self.balance, 5),
            r("POST", "/v2/order", "create_order", self.create_order, 1),
            r("GET", "/v2/order", "fetch_order", self.fetch_order, 1),
            r("DELETE", "/v2/order", "cancel_order", self.cancel_order, 1),
            r("GET", "/v2/ordersOpen", "open_orders", self.orders_open, 5),
            r("GET", "/v2/orders", "orders", self.orders, 5),
            r("DELETE", "/v2/orders", "cancel_order", self.cancel_all, 1),
            r("GET", "/v2/trades", "my_trades", self.my_trades, 5),
        )

    def api_urls(self, base: str) -> dict[str, str]:
        """ccxt bitvavo's two API families pointed at ``base`` (ccxt appends ``/v2/...``)."""
        return {"public": base, "private": base}

    def configure(self, exchange: Any) -> None:
        """Give ccxt an ``operatorId`` (Bitvavo requires one on every order since 2025; ccxt
        refuses create/cancel without it) unless the caller set one."""
        if exchange.options.get("operatorId") is None:
            exchange.options["operatorId"] = 1

    def default_credentials(self) -> dict[str, str]:
        """A 64-character key and a 128-character secret, the lengths Bitvavo issues."""
        return {
            "apiKey": hashlib.sha256(b"sim-bitvavo-key").hexdigest(),
            "secret": hashlib.sha512(b"sim-bitvavo-secret").hexdigest(),
        }

    @staticmethod
    def order_id(seq: int) -> str:
        """Bitvavo order ids are UUIDs."""
        return _uuid(_ORDER_UUID_TAG, seq)

    # -- errors -----------------------------------------------------------------------------------
    def venue_error(self, error: VenueError, req: SimRequest) -> SimResponse:
        """Bitvavo's errorCode and words for each venue refusal (see the module docstring)."""
        kind, detail = error.kind, error.detail
        if kind == "unknown_symbol":
            return _fail(205, "market parameter is invalid.")
        if kind == "duplicate_client_order_id":
            return _fail(220, "clientOrderId conflict within the market.")
        if kind == "insufficient_funds":
            return _fail(216, "You do not have sufficient balance to complete this operation.")
        if kind == "order_not_found":
            return _fail(240, _MSG_240, 404)
        if kind == "order_not_open":
            return _fail(
                233, "Order must be active (status new or partiallyFilled) to allow updating/cancelling."
            )
        if kind == "invalid_quantity":
            return self._amount_error(req)
        if kind == "invalid_price":
            return self._price_error(req)
        if kind == "min_notional":
            spec = self._by_id.get(req.body_str("market") or "")
            quote = spec.quote if spec is not None else "EUR"
            minimum = _plain(spec.min_notional) if spec is not None else "5"
            return _fail(217, f"Minimum order size in quote currency is {minimum} {quote}.")
        if kind == "post_only_would_take":
            # Live Bitvavo accepts it and cancels it (status canceledPostOnly); the venue refuses it,
            # so the simulator answers the matching engine's documented rejection.
            return _fail(230, "The order is rejected by the matching engine.")
        if kind == "missing_parameter":
            return _fail(203, f"{_param_name(detail)} parameter is required.")
        if detail.startswith("unsupported timeframe"):
            return _fail(205, "interval parameter is invalid.")
        return _fail(205, f"{_param_name(detail)} parameter is invalid.")

    def _amount_error(self, req: SimRequest) -> SimResponse:
        spec = self._by_id.get(req.body_str("market") or "")
        raw = req.body_str("amount")
        if spec is None or raw is None:
            return _fail(205, ("amountQuote" if raw is None else "amount") + " parameter is invalid.")
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            return _fail(205, "amount parameter is invalid.")
        if 0 < amount < spec.min_qty:
            return _fail(212, "Amount is below the minimum allowed amount for this asset.")
        if amount > spec.max_qty:
            return _fail(210, f"Amount exceeds the maximum allowed amount ({_plain(spec.max_qty)}).")
        return _fail(205, "amount parameter is invalid.")

    def _price_error(self, req: SimRequest) -> SimResponse:
        spec = self._by_id.get(req.body_str("market") or "")
        try:
            price = Decimal(req.body_str("price") or "0")
        except InvalidOperation:
            return _fail(205, "price parameter is invalid.")
        if price <= 0:
            return _fail(213, "Price is below the minimum allowed amount (0.000000000000001).")
        if spec is not None and price > spec.max_price:
            return _fail(211, f"Price exceeds the maximum allowed amount ({_plain(spec.max_price)}).")
        return _fail(214, "Price is too detailed")

    def fault_error(self, kind: str, req: SimRequest) -> SimResponse:
        """rate_limit: 429 errorCode 103; clock_skew: 403 errorCode 304; maintenance: 503 errorCode 107."""
        if kind == "rate_limit":
            return self.throttled(429, 1.0, req)
        if kind == "clock_skew":
            return _fail(304, _MSG_304, 403)
        return _fail(
            107, "The matching engine is overloaded. Please wait 500ms and resubmit your order.", 503
        )

    def throttled(self, status: int, retry_after: float, req: SimRequest) -> SimResponse:
        """429 errorCode 103 (rate limited) or, for a ban (418), 429 errorCode 105 with its expiry;
        ``bitvavo-ratelimit-allowat`` tells when requests are accepted again."""
        allow_at = req.now_ms + max(0, round(retry_after * 1000))
        headers = {
            "bitvavo-ratelimit-limit": str(RATE_LIMIT),
            "bitvavo-ratelimit-remaining": "0",
            "bitvavo-ratelimit-resetat": str(allow_at),
            "bitvavo-ratelimit-allowat": str(allow_at),
        }
        if status == 418:
            body = {
                "errorCode": 105,
                "error": f"Your IP or API key has been banned for not respecting the rate limit. "
                f"The ban expires at {allow_at}.",
            }
            return SimResponse(429, body, headers)
        return SimResponse(429, {"errorCode": 103, "error": _MSG_103}, headers)

    def not_found(self, req: SimRequest) -> SimResponse:
        """Unknown paths: errorCode 110."""
        return _fail(110, "Invalid endpoint. Please check url and HTTP method.", 404)

    # -- rate limits ------------------------------------------------------------------------------
    def _who(self, req: SimRequest) -> str:
        key = req.header("Bitvavo-Access-Key")
        return "key:" + key if key else "ip:" + (req.remote or "?")

    def _weight(self, req: SimRequest) -> int:
        path = req.path
        has_market = bool(req.query.get("market"))
        if path == "/v2/ticker/24h":
            return 1 if has_market else 25
        if path == "/v2/ordersOpen":
            return 5 if has_market else 100  # ccxt's costs (ordersOpen 5, noMarket 100)
        if path in ("/v2/balance", "/v2/orders") or path.endswith("/trades"):
            return 5
        return 1

    def before(self, req: SimRequest) -> SimResponse | None:
        """Spend the request's weight; over the budget and enforcing: 429 errorCode 103."""
        used, reset_at = self._budget.charge(self._who(req), self._weight(req), req.now_ms)
        if self.enforce_rate_limits and used > RATE_LIMIT:
            return self.throttled(429, (reset_at - req.now_ms) / 1000, req)
        return None

    def after(self, req: SimRequest, resp: SimResponse) -> None:
        """``bitvavo-ratelimit-limit``, ``-remaining`` and ``-resetat`` (epoch ms) on every answer."""
        if "bitvavo-ratelimit-remaining" in resp.headers or resp.content_type != "application/json":
            return
        used, reset_at = self._budget.peek(self._who(req), req.now_ms)
        resp.headers["bitvavo-ratelimit-limit"] = str(RATE_LIMIT)
        resp.headers["bitvavo-ratelimit-remaining"] = str(max(0, RATE_LIMIT - used))
        resp.headers["bitvavo-ratelimit-resetat"] = str(reset_at)

    # -- helpers ----------------------------------------------------------------------------------
    def _spec(self, market_id: str | None) -> MarketSpec:
        if not market_id:
            raise _required("market")
        spec = self._by_id.get(market_id)
        if spec is None:
            raise _invalid("market")
        return spec

    def _signed(self, req: SimRequest) -> str:
        """Check the Bitvavo-Access-* headers as Bitvavo does; returns the API key."""
        key = req.header("Bitvavo-Access-Key")
        if not key:
            raise _err(300, "Authentication is required for this endpoint.", 403)
        if len(key) != 64:
            raise _err(301, "API Key must be of length 64.", 403)
        raw_ts = req.header("Bitvavo-Access-Timestamp")
        try:
            ts = int(raw_ts or "")
        except ValueError:
            raise _err(
                302,
                "Timestamp is invalid. This must be a timestamp in ms. See Bitvavo-Access-Timestamp header "
                "or timestamp parameter for websocket.",
                403,
            ) from None
        try:
            window = int(req.header("Bitvavo-Access-Window") or DEFAULT_WINDOW_MS)
        except ValueError:
            window = -1
        if not 100 <= window <= 60_000:
            raise _err(303, "Window must be between 100 and 60000 ms.", 403)
        account = self.venue.account(key)
        if account is None:
            raise _err(305, "No active API key found.", 403)
        if abs(req.now_ms - ts) > window:
            raise _err(304, _MSG_304, 403)
        signature = req.header("Bitvavo-Access-Signature") or ""
        if len(signature) != 64:
            raise _err(
                308,
                "The signature length is invalid (HMAC-SHA256 should return a 64 length hexadecimal string).",
                403,
            )
        url = req.path + ("?" + req.raw_query if req.raw_query else "")
        payload = f"{raw_ts}{req.method}{url}{req.body_text}"
        expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower(), expected):
            raise _err(309, "The signature is invalid.", 403)
        return key

    def _p(self, spec: MarketSpec, value: float | None) -> str | None:
        return format_decimal(value, spec.price_decimals)

    def _q(self, spec: MarketSpec, value: float | None) -> str | None:
        return format_decimal(value, spec.amount_decimals)

    # -- public -------------------------------------------------------------------------------------
    def time(self, req: SimRequest) -> Any:
        """GET /v2/time."""
        return {"time": req.now_ms, "timeNs": req.now_ms * 1_000_000}

    def _market_json(self, spec: MarketSpec) -> dict[str, Any]:
        return {
            "market": _market_id(spec),
            "status": "trading",
            "base": spec.base,
            "quote": spec.quote,
            "pricePrecision": "0",
            "tickSize": _plain(spec.tick),
            "minOrderInBaseAsset": _plain(spec.min_qty),
            "minOrderInQuoteAsset": _plain(spec.min_notional),
            "maxOrderInBaseAsset": _plain(spec.max_qty),
            "maxOrderInQuoteAsset": "1000000000",
            "quantityDecimals": str(spec.amount_decimals),
            "notionalDecimals": str(_FIAT_DECIMALS.get(spec.quote, 8)),
            "maxOpenOrders": "100",
            "feeCategory": "A",
            "orderTypes": ["market", "limit", "stopLoss", "stopLossLimit", "takeProfit", "takeProfitLimit"],
        }

    def markets(self, req: SimRequest) -> Any:
        """GET /v2/markets[?market=]: one object for a market, else the list."""
        market_id = req.query.get("market")
        if market_id:
            return self._market_json(self._spec(market_id))
        return [self._market_json(s) for s in self.venue.markets.values()]

    def assets(self, req: SimRequest) -> Any:
        """GET /v2/assets[?symbol=]: every base and quote asset."""
        names = sorted(
            {s.base for s in self.venue.markets.values()} | {s.quote for s in self.venue.markets.values()}
        )
        symbol = req.query.get("symbol")
        if symbol:
            if symbol not in names:
                raise _invalid("symbol")
            names = [symbol]
        out = []
        for name in names:
            fiat = name == "EUR"
            out.append(
                {
                    "symbol": name,
                    "displayTicker": name,
                    "name": name,
                    "slug": name.lower(),
                    "popularity": -1,
                    "decimals": _FIAT_DECIMALS.get(name, 8),
                    "depositFee": "0",
                    "depositConfirmations": 0 if fiat else 10,
                    "depositStatus": "OK",
                    "withdrawalFee": "0" if fiat else "0.0001",
                    "withdrawalMinAmount": "1" if fiat else "0.001",
                    "withdrawalStatus": "OK",
                    "networks": ["SEPA"] if fiat else ["ETH" if name in ("USDT", "USDC") else name],
                    "visibility": "PUBLIC",
                    "message": "",
                }
            )
        return out[0] if symbol else out

    def _ticker_json(self, spec: MarketSpec, t: Ticker) -> dict[str, Any]:
        return {
            "market": _market_id(spec),
            "startTimestamp": t.open_ts,
            "timestamp": t.ts,
            "open": self._p(spec, t.open),
            "openTimestamp": t.open_ts,
            "high": self._p(spec, t.high),
            "low": self._p(spec, t.low),
            "last": self._p(spec, t.last),
            "closeTimestamp": t.ts,
            "bid": self._p(spec, t.bid),
            "bidSize": self._q(spec, t.bid_qty),
            "ask": self._p(spec, t.ask),
            "askSize": self._q(spec, t.ask_qty),
            "volume": self._q(spec, t.volume),
            "volumeQuote": format_decimal(t.quote_volume, 2),
        }

    def _ticker_specs(self, req: SimRequest) -> list[MarketSpec] | None:
        market_id = req.query.get("market")
        return [self._spec(market_id)] if market_id else None

    def ticker_24h(self, req: SimRequest) -> Any:
        """GET /v2/ticker/24h[?market=]: what ccxt's fetch_ticker reads."""
        specs = self._ticker_specs(req)
        if specs is not None:
            spec = specs[0]
            return self._ticker_json(spec, req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms)))
        return [
            self._ticker_json(s, self.venue.ticker(s.symbol, req.now_ms)) for s in self.venue.markets.values()
        ]

    def ticker_book(self, req: SimRequest) -> Any:
        """GET /v2/ticker/book[?market=]: best bid and ask."""
        specs = self._ticker_specs(req)
        out = []
        for spec in specs or list(self.venue.markets.values()):
            t = self.venue.ticker(spec.symbol, req.now_ms)
            if specs is not None:
                t = req.apply_bad_data(t)
            out.append(
                {
                    "market": _market_id(spec),
                    "bid": self._p(spec, t.bid),
                    "bidSize": self._q(spec, t.bid_qty),
                    "ask": self._p(spec, t.ask),
                    "askSize": self._q(spec, t.ask_qty),
                }
            )
        return out[0] if specs is not None else out

    def ticker_price(self, req: SimRequest) -> Any:
        """GET /v2/ticker/price[?market=]: last prices."""
        specs = self._ticker_specs(req)
        out = [
            {"market": _market_id(s), "price": self._p(s, self.venue.ticker(s.symbol, req.now_ms).last)}
            for s in (specs or list(self.venue.markets.values()))
        ]
        return out[0] if specs is not None else out

    def candles(self, req: SimRequest) -> Any:
        """GET /v2/{market}/candles?interval=&limit=&start=&end=: newest first,
        ``[timestamp, open, high, low, close, volume]``."""
        spec = self._spec(req.path_params.get("market"))
        interval = req.query.get("interval")
        if not interval:
            raise _required("interval")
        if interval not in INTERVALS:
            raise _invalid("interval")
        timeframe = {"1W": "1w"}.get(interval, interval)
        limit = _int(req, "limit", MAX_CANDLES)
        if limit is None or not 1 <= limit <= MAX_CANDLES:
            raise _invalid("limit")
        start = _int(req, "start", None)
        end = _int(req, "end", None)
        candles = self.venue.candles(
            spec.symbol, timeframe, req.now_ms, since_ms=start, until_ms=end, limit=limit
        )
        candles = req.apply_bad_data(candles)
        return [
            [
                c.ts,
                self._p(spec, c.open),
                self._p(spec, c.high),
                self._p(spec, c.low),
                self._p(spec, c.close),
                self._q(spec, c.volume),
            ]
            for c in reversed(candles)
        ]

    def book(self, req: SimRequest) -> Any:
        """GET /v2/{market}/book[?depth=]."""
        spec = self._spec(req.path_params.get("market"))
        depth = _int(req, "depth", DEFAULT_BOOK_DEPTH)
        if depth is None or depth < 1:
            raise _invalid("depth")
        book = req.apply_bad_data(self.venue.order_book(spec.symbol, req.now_ms, depth=depth))
        return {
            "market": _market_id(spec),
            "nonce": book.nonce,
            "bids": [[self._p(spec, p), self._q(spec, q)] for p, q in book.bids],
            "asks": [[self._p(spec, p), self._q(spec, q)] for p, q in book.asks],
        }

    def trades(self, req: SimRequest) -> Any:
        """GET /v2/{market}/trades?limit=&start=&end=: newest first, UUID trade ids."""
        spec = self._spec(req.path_params.get("market"))
        limit = _int(req, "limit", DEFAULT_TRADES)
        if limit is None or not 1 <= limit <= MAX_TRADES:
            raise _invalid("limit")
        start = _int(req, "start", None)
        end = _int(req, "end", None)
        trades = self.venue.trades(spec.symbol, req.now_ms, since_ms=start, until_ms=end, limit=limit)
        trades = req.apply_bad_data(trades)
        return [
            {
                "id": _uuid(_TRADE_UUID_TAG, t.id),
                "timestamp": t.ts,
                "amount": self._q(spec, t.qty),
                "price": self._p(spec, t.price),
                "side": t.side,
            }
            for t in reversed(trades)
        ]

    # -- private --------------------------------------------------------------------------------------
    def balance(self, req: SimRequest) -> Any:
        """GET /v2/balance[?symbol=]: non-zero balances, ``available`` and ``inOrder``."""
        key = self._signed(req)
        symbol = req.query.get("symbol")
        out = []
        for asset, bal in sorted(self.venue.balances(key, req.now_ms).items()):
            if (symbol and asset != symbol) or (not symbol and bal.total == 0):
                continue
            out.append({"symbol": asset, "available": _plain(bal.free), "inOrder": _plain(bal.locked)})
        return out

    def _order_json(self, o: Order) -> dict[str, Any]:
        spec = self.venue.markets[o.symbol]
        if o.status == "open":
            status = "partiallyFilled" if o.filled > 0 else "new"
        elif o.status == "closed":
            status = "filled"
        elif o.status == "expired":
            status = {"IOC": "canceledIOC", "FOK": "canceledFOK"}.get(o.time_in_force, "expired")
        else:
            status = o.status
        on_hold = Decimal(0)
        if o.status == "open":
            on_hold = o.remaining * o.price if o.side == "buy" and o.price is not None else o.remaining
        out: dict[str, Any] = {"orderId": o.id}
        if o.client_order_id is not None:
            out["clientOrderId"] = o.client_order_id
        out.update(
            {
                "market": _market_id(spec),
                "created": o.created_ms,
                "updated": o.updated_ms,
                "status": status,
                "side": o.side,
                "orderType": o.type,
            }
        )
        if o.quote_amount is not None and o.type == "market":
            out["amountQuote"] = _plain(o.quote_amount)
            out["amountQuoteRemaining"] = _plain(max(Decimal(0), o.quote_amount - o.cost))
        else:
            out["amount"] = _plain(o.amount)
            out["amountRemaining"] = _plain(o.remaining)
        if o.price is not None:
            out["price"] = _plain(o.price)
        out.update(
            {
                "onHold": _plain(on_hold),
                "onHoldCurrency": spec.quote if o.side == "buy" else spec.base,
                "filledAmount": _plain(o.filled),
                "filledAmountQuote": _plain(o.cost),
                "feePaid": _plain(o.fee),
                "feeCurrency": o.fee_asset or spec.quote,
                "fills": [
                    {
                        "id": _uuid(_FILL_UUID_TAG, f.trade_id),
                        "timestamp": f.ts,
                        "amount": _plain(f.qty),
                        "price": _plain(f.price),
                        "taker": not f.maker,
                        "fee": _plain(f.fee),
                        "feeCurrency": f.fee_asset,
                        "settled": True,
                    }
                    for f in o.fills
                ],
                "selfTradePrevention": "decrementAndCancel",
                "visible": True,
                "timeInForce": o.time_in_force,
                "postOnly": o.post_only,
                "disableMarketProtection": False,
            }
        )
        return out

    def _operator_id(self, value: Any) -> int:
        if value is None or value == "":
            raise _required("operatorId")
        if isinstance(value, bool):
            raise _invalid("operatorId")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _invalid("operatorId") from None

    def create_order(self, req: SimRequest) -> Any:
        """POST /v2/order (JSON body): the full order, fills included."""
        key = self._signed(req)
        body = req.json
        if not isinstance(body, dict):
            raise _err(102, "The JSON object you sent is invalid.")
        spec = self._spec(req.body_str("market"))
        side = req.body_str("side")
        if not side:
            raise _required("side")
        if side not in ("buy", "sell"):
            raise _invalid("side")
        order_type = req.body_str("orderType")
        if not order_type:
            raise _required("orderType")
        if order_type not in ("market", "limit"):
            raise _invalid("orderType")
        operator_id = self._operator_id(body.get("operatorId"))
        client_order_id = req.body_str("clientOrderId")
        if client_order_id is not None and not _UUID_RE.match(client_order_id):
            raise _invalid("clientOrderId")
        amount = req.body_str("amount")
        amount_quote = req.body_str("amountQuote")
        price = req.body_str("price")
        tif = req.body_str("timeInForce") or "GTC"
        if tif not in ("GTC", "IOC", "FOK"):
            raise _invalid("timeInForce")
        post_only = _truthy(body.get("postOnly"))
        if order_type == "limit":
            if amount_quote is not None:
                raise _err(202, "amountQuote order parameter is not supported.")
            if not amount:
                raise _required("amount")
            if not price:
                raise _required("price")
        else:
            if price is not None:
                raise _err(202, "price order parameter is not supported.")
            if amount and amount_quote:
                raise _err(
                    206,
                    "Use either amount or amountQuote. "
                    "The usage of both parameters at the same time is not supported.",
                )
            if not amount and not amount_quote:
                raise _err(203, "amount or amountQuote parameter is required.")
            if post_only:
                raise _err(202, "postOnly order parameter is not supported.")
        order = self.venue.create_order(
            key,
            spec.symbol,
            side,
            order_type,
            req.now_ms,
            amount=amount or None,
            price=price,
            quote_amount=amount_quote or None,
            client_order_id=client_order_id,
            time_in_force=tif,
            post_only=post_only,
        )
        out = self._order_json(order)
        out["operatorId"] = operator_id
        return out

    def _order_ref(self, req: SimRequest) -> tuple[MarketSpec, str | None, str | None]:
        spec = self._spec(req.query.get("market"))
        order_id = req.query.get("orderId")
        client_order_id = req.query.get("clientOrderId")
        if not order_id and not client_order_id:
            raise _required("orderId")
        if order_id and not _UUID_RE.match(order_id):
            raise _invalid("orderId")
        if client_order_id and not _UUID_RE.match(client_order_id):
            raise _invalid("clientOrderId")
        return spec, order_id or None, (None if order_id else client_order_id)

    def fetch_order(self, req: SimRequest) -> Any:
        """GET /v2/order?market=&orderId= (or &clientOrderId=)."""
        key = self._signed(req)
        spec, order_id, client_order_id = self._order_ref(req)
        order = self.venue.get_order(
            key, req.now_ms, symbol=spec.symbol, order_id=order_id, client_order_id=client_order_id
        )
        return self._order_json(order)

    def cancel_order(self, req: SimRequest) -> Any:
        """DELETE /v2/order?market=&orderId=|clientOrderId=&operatorId=: ``{"orderId": ...}``."""
        key = self._signed(req)
        spec, order_id, client_order_id = self._order_ref(req)
        operator_id = self._operator_id(req.query.get("operatorId"))
        order = self.venue.cancel_order(
            key, req.now_ms, symbol=spec.symbol, order_id=order_id, client_order_id=client_order_id
        )
        out: dict[str, Any] = {"orderId": order.id}
        if order.client_order_id is not None:
            out["clientOrderId"] = order.client_order_id
        out["operatorId"] = operator_id
        return out

    def cancel_all(self, req: SimRequest) -> Any:
        """DELETE /v2/orders[?market=]&operatorId=: cancel every open order (of a market); answers
        ``[{"orderId": ..., "operatorId": ...}]``."""
        key = self._signed(req)
        market_id = req.query.get("market")
        symbol = self._spec(market_id).symbol if market_id else None
        operator_id = self._operator_id(req.query.get("operatorId"))
        out = []
        for order in self.venue.open_orders(key, req.now_ms, symbol):
            canceled = self.venue.cancel_order(key, req.now_ms, symbol=order.symbol, order_id=order.id)
            out.append({"orderId": canceled.id, "operatorId": operator_id})
        return out

    def orders_open(self, req: SimRequest) -> Any:
        """GET /v2/ordersOpen[?market=][&base=]: open orders, newest first."""
        key = self._signed(req)
        market_id = req.query.get("market")
        symbol = self._spec(market_id).symbol if market_id else None
        base = req.query.get("base")
        orders = [
            o
            for o in self.venue.open_orders(key, req.now_ms, symbol)
            if not base or self.venue.markets[o.symbol].base == base
        ]
        return [self._order_json(o) for o in sorted(orders, key=lambda o: o.seq, reverse=True)]

    def orders(self, req: SimRequest) -> Any:
        """GET /v2/orders?market=[&limit=][&start=][&end=]: the market's orders, newest first."""
        key = self._signed(req)
        spec = self._spec(req.query.get("market"))
        limit = _int(req, "limit", 500)
        if limit is None or not 1 <= limit <= 1000:
            raise _invalid("limit")
        start = _int(req, "start", None)
        end = _int(req, "end", None)
        self.venue.open_orders(key, req.now_ms, spec.symbol)  # fills resting orders crossed by now
        orders = [
            o
            for o in self.venue.orders(key)
            if o.symbol == spec.symbol
            and (start is None or o.created_ms >= start)
            and (end is None or o.created_ms <= end)
        ]
        orders.sort(key=lambda o: o.seq, reverse=True)
        return [self._order_json(o) for o in orders[:limit]]

    def my_trades(self, req: SimRequest) -> Any:
        """GET /v2/trades?market=[&limit=][&start=][&end=]: the account's fills in a market,
        newest first (each fill's id is the one its order's ``fills`` carry)."""
        key = self._signed(req)
        market_id = req.query.get("market")
        if not market_id:
            raise _required("market")
        spec = self._spec(market_id)
        limit = _int(req, "limit", 500)
        if limit is None or not 1 <= limit <= 1000:
            raise _invalid("limit")
        start = _int(req, "start", None)
        end = _int(req, "end", None)
        self.venue.open_orders(key, req.now_ms, spec.symbol)  # fills resting orders crossed by now
        fills = [
            (f, o)
            for o in self.venue.orders(key)
            if o.symbol == spec.symbol
            for f in o.fills
            if (start is None or f.ts >= start) and (end is None or f.ts <= end)
        ]
        fills.sort(key=lambda pair: pair[0].trade_id, reverse=True)
        return [
            {
                "id": _uuid(_FILL_UUID_TAG, f.trade_id),
                "orderId": o.id,
                "timestamp": f.ts,
                "market": _market_id(spec),
                "side": o.side,
                "amount": _plain(f.qty),
                "price": _plain(f.price),
                "taker": not f.maker,
                "fee": _plain(f.fee),
                "feeCurrency": f.fee_asset,
                "settled": True,
            }
            for f, o in fills[:limit]
        ]


def _market_id(spec: MarketSpec) -> str:
    return f"{spec.base}-{spec.quote}"


def _param_name(detail: str) -> str:
    """The Bitvavo parameter a venue detail is about (``"side 'x'"`` -> ``side``)."""
    word = detail.split(" ", 1)[0] if detail else "order"
    return {
        "type": "orderType",
        "quantity": "amount",
        "quoteOrderQty": "amountQuote",
        "timeInForce": "timeInForce",
    }.get(word, word or "order")


DIALECT = BitvavoDialect
