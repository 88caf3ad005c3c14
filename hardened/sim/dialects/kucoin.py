"""KuCoin spot REST as ccxt 4.5's ``kucoin`` class calls it: the ``{"code": "200000", "data": ...}``
envelope, KC-API-* signatures (key version 2), KuCoin's error codes and ``gw-ratelimit-*`` headers.

Served under ``/kucoin``: ``/api/v1/{timestamp,status,market/orderbook/level1,market/stats,
market/allTickers,market/candles,market/orderbook/level2_20,market/orderbook/level2_100,
market/histories,accounts,orders (GET, DELETE),orders/{id},order/client-order/{clientOid},fills,
isolated/symbols,hf/accounts/opened}``, ``/api/v2/symbols``, ``/api/v3/{currencies,margin/symbols,
market/orderbook/level2}`` and ``/api/ua/v1/account/mode`` (what ``load_markets`` asks when the
exchange has credentials). The account is "classic" (not unified) and not high-frequency, so ccxt
stays on the classic ``/api/v1/orders`` endpoints.

Error words (each checked against ccxt 4.5.90 ``kucoin.py`` ``describe()["exceptions"]`` so that
ccxt raises what it raises live):

=============================  ====  =========================================  =====================
situation                      HTTP  code / msg                                 ccxt class
=============================  ====  =========================================  =====================
auth header missing            401   400001                                     AuthenticationError
timestamp off by more than 5s  400   400002 "Invalid KC-API-TIMESTAMP"          InvalidNonce
unknown key                    401   400003 "KC-API-KEY not exists"             AuthenticationError
wrong passphrase               401   400004 "Invalid KC-API-PASSPHRASE"         AuthenticationError
wrong signature                401   400005 "Invalid KC-API-SIGN"               AuthenticationError
rate limit (pool exhausted)    429   429000 "Too Many Requests"                 RateLimitExceeded
IP ban (Cloudflare 1015)       429   text "error code: 1015"                    RateLimitExceeded
maintenance                    503   "503" "...maintenance..."                  ExchangeNotAvailable
unknown symbol                 400   400100 "Unsupported trading pair."         BadSymbol
missing / bad parameter        400   400100 (message names it)                  BadRequest
duplicate clientOid            400   400100 "validation.createOrder.            BadRequest
                                     clientOidDuplicated"
insufficient balance           400   200004 "Balance insufficient!"             InsufficientFunds
size under minimum             400   400100 "Order size below the minimum       InvalidOrder
                                     requirement."
size not a step multiple       400   400100 "Order size increment invalid."     InvalidOrder
funds under minimum            400   600101 "The order funds should more then   InvalidOrder
                                     ..."
order not found (GET)          404   400100 "order not exist."                  OrderNotFound
order not found / not open     400   400100 "order_not_exist_or_not_allow_to_   OrderNotFound
(DELETE)                             cancel"
unknown path                   404   404000 "Url Not Found"                     NotSupported
=============================  ====  =========================================  =====================

Sources: KuCoin's gateway error table (docs-new/error-code: 400001-400007), the spot error table
(docs/basic-info/errors-code/spot-errors-code: 200004, 400100, 404000, 400002 "Time differs from
server time by more than 5 seconds"), the rate-limit page (docs-new/rate-limit: "http code 429,
error code 429000"; docs/basic-info/request-rate-limit/rest-api: Cloudflare "error code: 1015"),
issue JKorf/Kucoin.Net#120 (``{"code":"400100","msg":"validation.createOrder.clientOidDuplicated"}``,
enforced among active orders per Kucoin/kucoin-api-docs#468), ccxt issue #24154
(``order_not_exist_or_not_allow_to_cancel``) and the observed answers quoted in ccxt's table
(``Unsupported trading pair.``, ``order not exist.``, ``Order size increment invalid.``...). KuCoin
documents "503 -- temporarily offline for maintenance" without a body; the simulator sends code
"503", the only maintenance word ccxt's table knows (it maps it to ExchangeNotAvailable).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from hardened.sim.dialect import (
    Dialect,
    DialectError,
    Route,
    SimRequest,
    SimResponse,
    WeightWindow,
    hmac_sha256_b64,
    retry_after_header,
)
from hardened.sim.venue import MarketSpec, Order, Venue, VenueError, format_decimal

__all__ = ["API_KEYS", "DIALECT", "KucoinDialect"]

# Every key of ccxt.kucoin().urls["api"]: KuCoin signs the path after the host, so all families
# point at the prefix (futures, broker and earn paths are not faked and answer 404000).
API_KEYS = (
    "public",
    "private",
    "futuresPrivate",
    "futuresPublic",
    "webExchange",
    "broker",
    "earn",
    "uta",
    "utaV2",
    "utaPrivate",
)

# KuCoin's candle "type" words -> ccxt timeframes (ccxt kucoin describe()["timeframes"]).
CANDLE_TYPES = {
    "1min": "1m",
    "3min": "3m",
    "5min": "5m",
    "15min": "15m",
    "30min": "30m",
    "1hour": "1h",
    "2hour": "2h",
    "4hour": "4h",
    "6hour": "6h",
    "8hour": "8h",
    "12hour": "12h",
    "1day": "1d",
    "1week": "1w",
    "1month": "1M",
}
MAX_CANDLES = 1500  # "For each query, the system would return at most 1500 pieces of data"
TIMESTAMP_TOLERANCE_MS = 5000  # 400002: "Time differs from server time by more than 5 seconds"
# Rate-limit pools (docs-new/rate-limit, VIP0): spot 4000 per 30 s per account, public 2000 per
# 30 s per IP; a pool's window starts with the first request that spends from it.
SPOT_POOL = 4000
PUBLIC_POOL = 2000
POOL_WINDOW_MS = 30_000
FULL_BOOK_DEPTH = 500  # /api/v3/market/orderbook/level2 is the "full" book
_SUCCESS = "200000"
_CLIENT_OID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

_PRIVATE_PREFIXES = ("/api/v1/accounts", "/api/v1/orders", "/api/v1/order/", "/api/ua/", "/api/v1/hf/")
_PRIVATE_PATHS = ("/api/v3/margin/symbols", "/api/v1/isolated/symbols", "/api/v3/market/orderbook/level2")


def _ok(data: Any) -> dict[str, Any]:
    return {"code": _SUCCESS, "data": data}


def _fail(code: str, msg: str, status: int = 400) -> SimResponse:
    return SimResponse(status, {"code": code, "msg": msg})


def _err(code: str, msg: str, status: int = 400) -> DialectError:
    return DialectError(_fail(code, msg, status))


def _plain(value: Decimal | None) -> str | None:
    """A ledger Decimal as KuCoin prints it: plain notation, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _hex_id(word: int, salt: str) -> str:
    """A deterministic 24-hex-digit id in the shape of KuCoin's ids (Mongo ObjectIds)."""
    return f"{0x6650_0000 + (zlib.crc32(salt.encode()) & 0xFFFF):08x}{word:016x}"


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _int(value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _err("400100", f"Parameter Error: {value!r} is not an integer") from None


class KucoinDialect(Dialect):
    """KuCoin spot (``api.kucoin.com``, classic account) for an unmodified ``ccxt.kucoin``."""

    exchange_id = "kucoin"
    client_order_id_scope = "open"  # clientOid uniqueness is enforced among active orders
    fee_rate = 0.001  # VIP0 spot maker and taker

    def __init__(self, venue: Venue) -> None:
        super().__init__(venue)
        self._by_id = {_market_id(spec): spec for spec in venue.markets.values()}
        self._spot = WeightWindow(SPOT_POOL, POOL_WINDOW_MS)
        self._public = WeightWindow(PUBLIC_POOL, POOL_WINDOW_MS)
        routes = self.routes()
        self._weights = {(r.method, r.path): r.weight for r in routes if "{" not in r.path}
        self._templated = [(r.method, r.pattern(), r.weight) for r in routes if "{" in r.path]

    # -- wiring -----------------------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        """Every KuCoin path the simulator answers."""
        r = Route  # the weight of each route is KuCoin's (docs-new "weight"; ccxt uses the same costs)
        return (
            r("GET", "/api/v1/timestamp", "time", self.timestamp, 3),
            r("GET", "/api/v1/status", "status", self.status, 3),
            r("GET", "/api/v3/currencies", "markets", self.currencies, 3),
            r("GET", "/api/v2/symbols", "markets", self.symbols, 4),
            r("GET", "/api/v1/symbols", "markets", self.symbols, 4),
            # allTickers feeds fetch_markets (fee rates) as well as fetch_tickers
            r("GET", "/api/v1/market/allTickers", "markets", self.all_tickers, 15),
            r("GET", "/api/v3/margin/symbols", "markets", self.margin_symbols, 3),
            r("GET", "/api/v1/isolated/symbols", "markets", self.isolated_symbols, 3),
            r("GET", "/api/v1/hf/accounts/opened", "account_mode", self.hf_opened, 2),
            r("GET", "/api/ua/v1/account/mode", "account_mode", self.account_mode, 30),
            r("GET", "/api/v1/market/stats", "ticker", self.stats, 15),
            r("GET", "/api/v1/market/orderbook/level1", "ticker", self.level1, 2),
            r("GET", "/api/v1/market/candles", "ohlcv", self.candles, 3),
            r("GET", "/api/v1/market/orderbook/level2_20", "order_book", self.book_20, 2),
            r("GET", "/api/v1/market/orderbook/level2_100", "order_book", self.book_100, 4),
            r("GET", "/api/v3/market/orderbook/level2", "order_book", self.book_full, 3),
            r("GET", "/api/v1/market/histories", "trades", self.histories, 3),
            r("GET", "/api/v1/accounts", "balance", self.accounts, 5),
            r("POST", "/api/v1/orders", "create_order", self.create_order, 2),
            r("GET", "/api/v1/orders/{orderId}", "fetch_order", self.fetch_order, 2),
            r(
                "GET",
                "/api/v1/order/client-order/{clientOid}",
                "fetch_order",
                self.fetch_order_by_client_oid,
                2,
            ),
            r("DELETE", "/api/v1/orders/{orderId}", "cancel_order", self.cancel_order, 3),
            r(
                "DELETE",
                "/api/v1/order/client-order/{clientOid}",
                "cancel_order",
                self.cancel_by_client_oid,
                5,
            ),
            r("GET", "/api/v1/orders", "open_orders", self.list_orders, 2),
            r("DELETE", "/api/v1/orders", "cancel_order", self.cancel_all, 20),
            r("GET", "/api/v1/fills", "my_trades", self.fills, 10),
        )

    def api_urls(self, base: str) -> dict[str, str]:
        """Every ccxt kucoin API family pointed at ``base`` (ccxt appends ``/api/v1/...``)."""
        return dict.fromkeys(API_KEYS, base)

    def configure(self, exchange: Any) -> None:
        """Spot markets only: the contract markets live on api-futures.kucoin.com, not faked."""
        options = exchange.options
        fetch_markets = dict(options.get("fetchMarkets") or {})
        fetch_markets["types"] = ["spot"]
        options["fetchMarkets"] = fetch_markets

    def default_credentials(self) -> dict[str, str]:
        """KuCoin keys come with a passphrase (ccxt's ``password``)."""
        return {
            "apiKey": "sim-kucoin-key",
            "secret": "sim-kucoin-secret",
            "password": "sim-kucoin-passphrase",
        }

    @staticmethod
    def order_id(seq: int) -> str:
        """24 hex digits, as KuCoin's order ids."""
        return _hex_id(seq, "order")

    # -- errors -----------------------------------------------------------------------------------
    def venue_error(self, error: VenueError, req: SimRequest) -> SimResponse:
        """KuCoin's code and message for each venue refusal (see the module docstring)."""
        kind, detail = error.kind, error.detail
        if kind == "unknown_symbol":
            return _fail("400100", "Unsupported trading pair.")
        if kind == "duplicate_client_order_id":
            return _fail("400100", "validation.createOrder.clientOidDuplicated")
        if kind == "insufficient_funds":
            return _fail("200004", "Balance insufficient!")
        if kind in ("order_not_found", "order_not_open"):
            if req.method == "DELETE":
                return _fail("400100", "order_not_exist_or_not_allow_to_cancel")
            return _fail("400100", "order not exist.", 404)
        if kind == "invalid_quantity":
            return _fail("400100", self._size_message(req))
        if kind == "min_notional":
            spec = self._by_id.get(req.body_str("symbol") or "")
            quote = spec.quote if spec else "USDT"
            minimum = _plain(spec.min_notional) if spec else "0.1"
            return _fail("600101", f"The order funds should more then {minimum} {quote}.")
        if kind == "invalid_price":
            # KuCoin answers a price off the tick with 400100 (wording not documented; ccxt maps
            # the code to BadRequest whatever the words).
            return _fail("400100", "Price increment invalid.")
        if kind == "post_only_would_take":
            # Live KuCoin accepts such an order and cancels it at once; the venue refuses it, so
            # the simulator answers the parameter error a rejected post-only order gets.
            return _fail("400100", "The postOnly order would be filled immediately.")
        if kind == "missing_parameter":
            return _fail("400100", f"{detail} is required" if detail else "Parameter Error")
        if detail.startswith("unsupported timeframe"):
            return _fail("400100", "Unsupported candle type")
        return _fail("400100", f"Parameter Error: {detail}" if detail else "Parameter Error")

    def _size_message(self, req: SimRequest) -> str:
        spec = self._by_id.get(req.body_str("symbol") or "")
        try:
            size = Decimal(req.body_str("size") or "0")
        except InvalidOperation:
            return "Parameter Error: size"
        if spec is not None and 0 < size < spec.min_qty:
            return "Order size below the minimum requirement."
        if spec is not None and size > spec.max_qty:
            return "Order size above the maximum requirement."
        return "Order size increment invalid."

    def fault_error(self, kind: str, req: SimRequest) -> SimResponse:
        """rate_limit: 429 429000; clock_skew: 400 400002; maintenance: 503 code "503"."""
        if kind == "rate_limit":
            return self.throttled(429, 1.0, req)
        if kind == "clock_skew":
            return _fail("400002", "Invalid KC-API-TIMESTAMP")
        return _fail("503", "Service Unavailable -- system maintenance, please try again later.", 503)

    def throttled(self, status: int, retry_after: float, req: SimRequest) -> SimResponse:
        """429: the resource pool is spent (429000, reset in ``gw-ratelimit-reset`` ms); 418 (a ban):
        KuCoin's Cloudflare front blocks the IP with HTTP 429 and ``error code: 1015``."""
        reset_ms = max(0, round(retry_after * 1000))
        headers = {
            "gw-ratelimit-limit": str(self._pool_for(req)[0].limit),
            "gw-ratelimit-remaining": "0",
            "gw-ratelimit-reset": str(reset_ms),
        }
        if status == 418:
            headers = {"Retry-After": retry_after_header(retry_after)}
            return SimResponse(429, "error code: 1015", headers, content_type="text/plain")
        return SimResponse(429, {"code": "429000", "msg": "Too Many Requests"}, headers)

    def not_found(self, req: SimRequest) -> SimResponse:
        """Unknown paths: KuCoin's gateway answers 404 with code 404000."""
        return _fail("404000", "Url Not Found", 404)

    # -- rate limits ------------------------------------------------------------------------------
    def _pool_for(self, req: SimRequest) -> tuple[WeightWindow, str]:
        path = req.path
        if path.startswith(_PRIVATE_PREFIXES) or path in _PRIVATE_PATHS:
            return self._spot, "key:" + (req.header("KC-API-KEY") or "?")
        return self._public, "ip:" + (req.remote or "?")

    def _weight(self, req: SimRequest) -> int:
        found = self._weights.get((req.method, req.path))
        if found is not None:
            return found
        for method, pattern, weight in self._templated:
            if method == req.method and pattern is not None and pattern.match(req.path):
                return weight
        return 1

    def before(self, req: SimRequest) -> SimResponse | None:
        """Spend the request's weight from its pool; over the pool and enforcing: 429000."""
        pool, who = self._pool_for(req)
        used, reset_at = pool.charge(who, self._weight(req), req.now_ms)
        reset_ms = reset_at - req.now_ms  # KuCoin publishes the time left, not the moment
        if self.enforce_rate_limits and used > pool.limit:
            return self.throttled(429, reset_ms / 1000, req)
        return None

    def after(self, req: SimRequest, resp: SimResponse) -> None:
        """KuCoin's ``gw-ratelimit-*`` headers (limit, remaining weight, ms until reset)."""
        if "gw-ratelimit-remaining" in resp.headers or resp.content_type != "application/json":
            return
        pool, who = self._pool_for(req)
        used, reset_at = pool.peek(who, req.now_ms)
        reset_ms = reset_at - req.now_ms
        resp.headers["gw-ratelimit-limit"] = str(pool.limit)
        resp.headers["gw-ratelimit-remaining"] = str(max(0, pool.limit - used))
        resp.headers["gw-ratelimit-reset"] = str(reset_ms)

    # -- helpers ----------------------------------------------------------------------------------
    def _spec(self, market_id: str | None) -> MarketSpec:
        if not market_id:
            raise _err("400100", "symbol is required")
        spec = self._by_id.get(market_id)
        if spec is None:
            raise _err("400100", "Unsupported trading pair.")
        return spec

    def _signed(self, req: SimRequest) -> str:
        """Check the KC-API-* headers as KuCoin's gateway does; returns the API key."""
        key = req.header("KC-API-KEY")
        sign = req.header("KC-API-SIGN")
        timestamp = req.header("KC-API-TIMESTAMP")
        passphrase = req.header("KC-API-PASSPHRASE")
        if not key or not sign or not timestamp or not passphrase:
            raise _err(
                "400001",
                "Any of KC-API-KEY, KC-API-SIGN, KC-API-TIMESTAMP, KC-API-PASSPHRASE "
                "is missing in your request header",
                401,
            )
        try:
            ts = int(timestamp)
        except ValueError:
            raise _err("400002", "Invalid KC-API-TIMESTAMP") from None
        if abs(req.now_ms - ts) > TIMESTAMP_TOLERANCE_MS:
            raise _err("400002", "Invalid KC-API-TIMESTAMP")
        account = self.venue.account(key)
        if account is None:
            raise _err("400003", "KC-API-KEY not exists", 401)
        secret = account.secret
        endpoint = req.path + ("?" + req.raw_query if req.raw_query else "")
        payload = timestamp + req.method + endpoint + req.body_text
        if sign != hmac_sha256_b64(secret, payload):
            # KuCoin signs the URL before percent-encoding: accept the decoded form as well
            decoded = timestamp + req.method + unquote(endpoint) + req.body_text
            if sign != hmac_sha256_b64(secret, decoded):
                raise _err("400005", "Invalid KC-API-SIGN", 401)
        version = req.header("KC-API-KEY-VERSION") or "1"
        expected_pass = account.passphrase or ""
        if version != "1":  # key versions 2 and 3 send the passphrase signed with the secret
            expected_pass = hmac_sha256_b64(secret, expected_pass)
        if account.passphrase is None or passphrase != expected_pass:
            raise _err("400004", "Invalid KC-API-PASSPHRASE", 401)
        return key

    def _p(self, spec: MarketSpec, value: float | None) -> str | None:
        return format_decimal(value, spec.price_decimals)

    def _q(self, spec: MarketSpec, value: float | None) -> str | None:
        return format_decimal(value, spec.amount_decimals)

    # -- public: time and markets -------------------------------------------------------------------
    def timestamp(self, req: SimRequest) -> Any:
        """GET /api/v1/timestamp: the server clock in ms."""
        return {"code": _SUCCESS, "msg": "success", "data": req.now_ms}

    def status(self, req: SimRequest) -> Any:
        """GET /api/v1/status."""
        return _ok({"status": "open", "msg": ""})

    def currencies(self, req: SimRequest) -> Any:
        """GET /api/v3/currencies: every base and quote asset with one chain each."""
        assets = sorted(
            {s.base for s in self.venue.markets.values()} | {s.quote for s in self.venue.markets.values()}
        )
        out = []
        for asset in assets:
            chain = {
                "chainName": "ERC20" if asset in ("USDT", "USDC") else asset,
                "chainId": "eth" if asset in ("USDT", "USDC") else asset.lower(),
                "withdrawalMinSize": "10" if asset in ("USDT", "USDC", "EUR") else "0.001",
                "depositMinSize": None,
                "withdrawFeeRate": "0",
                "withdrawalMinFee": "1" if asset in ("USDT", "USDC", "EUR") else "0.0005",
                "isWithdrawEnabled": True,
                "isDepositEnabled": True,
                "confirms": 12,
                "preConfirms": 12,
                "contractAddress": "",
                "withdrawPrecision": 8,
                "maxWithdraw": None,
                "maxDeposit": None,
                "needTag": False,
            }
            out.append(
                {
                    "currency": asset,
                    "name": asset,
                    "fullName": asset,
                    "precision": 8,
                    "confirms": None,
                    "contractAddress": None,
                    "isMarginEnabled": False,
                    "isDebitEnabled": False,
                    "chains": [chain],
                }
            )
        return _ok(out)

    def _symbol_json(self, spec: MarketSpec) -> dict[str, Any]:
        mid = _market_id(spec)
        return {
            "symbol": mid,
            "name": mid,
            "baseCurrency": spec.base,
            "quoteCurrency": spec.quote,
            "feeCurrency": spec.quote,
            "market": "USDS" if spec.quote in ("USDT", "USDC") else spec.quote,
            "baseMinSize": _plain(spec.min_qty),
            "quoteMinSize": _plain(spec.min_notional),
            "baseMaxSize": _plain(spec.max_qty),
            "quoteMaxSize": "99999999",
            "baseIncrement": _plain(spec.step),
            "quoteIncrement": "0.000001",
            "priceIncrement": _plain(spec.tick),
            "priceLimitRate": "0.1",
            "minFunds": _plain(spec.min_notional),
            "isMarginEnabled": False,
            "enableTrading": True,
            "feeCategory": 1,
            "makerFeeCoefficient": "1.00",
            "takerFeeCoefficient": "1.00",
            "st": False,
            "callauctionIsEnabled": False,
            "callauctionPriceFloor": None,
            "callauctionPriceCeiling": None,
            "callauctionFirstStageStartTime": None,
            "callauctionSecondStageStartTime": None,
            "callauctionThirdStageStartTime": None,
            "tradingStartTime": None,
        }

    def symbols(self, req: SimRequest) -> Any:
        """GET /api/v2/symbols (optionally ``?market=USDS``)."""
        market = req.query.get("market")
        out = [self._symbol_json(s) for s in self.venue.markets.values()]
        if market:
            out = [s for s in out if s["market"] == market]
        return _ok(out)

    def margin_symbols(self, req: SimRequest) -> Any:
        """GET /api/v3/margin/symbols: no cross-margin pairs (the simulator trades spot only)."""
        self._signed(req)
        return _ok({"timestamp": req.now_ms, "items": []})

    def isolated_symbols(self, req: SimRequest) -> Any:
        """GET /api/v1/isolated/symbols: no isolated-margin pairs."""
        self._signed(req)
        return _ok([])

    def hf_opened(self, req: SimRequest) -> Any:
        """GET /api/v1/hf/accounts/opened: false, a classic (not high-frequency) account."""
        self._signed(req)
        return _ok(False)

    def account_mode(self, req: SimRequest) -> Any:
        """GET /api/ua/v1/account/mode: a classic account, not the unified trading account."""
        self._signed(req)
        return _ok({"selfAccountMode": "CLASSIC", "subAccountMode": []})

    # -- public: tickers ----------------------------------------------------------------------------
    def _ticker_fields(self, spec: MarketSpec, t: Any) -> dict[str, Any]:
        change_rate = None if t.percentage is None else format_decimal(t.percentage / 100, 4)
        return {
            "symbol": _market_id(spec),
            "symbolName": _market_id(spec),
            "buy": self._p(spec, t.bid),
            "bestBidSize": self._q(spec, t.bid_qty),
            "sell": self._p(spec, t.ask),
            "bestAskSize": self._q(spec, t.ask_qty),
            "changeRate": change_rate,
            "changePrice": self._p(spec, t.change),
            "high": self._p(spec, t.high),
            "low": self._p(spec, t.low),
            "vol": self._q(spec, t.volume),
            "volValue": format_decimal(t.quote_volume, 8),
            "last": self._p(spec, t.last),
            "averagePrice": self._p(spec, t.vwap),
            "takerFeeRate": "0.001",
            "makerFeeRate": "0.001",
            "takerCoefficient": "1",
            "makerCoefficient": "1",
        }

    def stats(self, req: SimRequest) -> Any:
        """GET /api/v1/market/stats?symbol=: the 24 h statistics ccxt's fetch_ticker reads."""
        spec = self._spec(req.query.get("symbol"))
        t = req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms))
        data = {"time": t.ts, **self._ticker_fields(spec, t)}
        for name in ("symbolName", "bestBidSize", "bestAskSize"):  # not in the stats answer
            data.pop(name)
        return _ok(data)

    def all_tickers(self, req: SimRequest) -> Any:
        """GET /api/v1/market/allTickers: every market's 24 h ticker with fee rates."""
        tickers = []
        for spec in self.venue.markets.values():
            t = self.venue.ticker(spec.symbol, req.now_ms)
            tickers.append(self._ticker_fields(spec, t))
        return _ok({"time": req.now_ms, "ticker": tickers})

    def level1(self, req: SimRequest) -> Any:
        """GET /api/v1/market/orderbook/level1?symbol=: best bid/ask and last trade."""
        spec = self._spec(req.query.get("symbol"))
        t = req.apply_bad_data(self.venue.ticker(spec.symbol, req.now_ms))
        return _ok(
            {
                "time": t.ts,
                "sequence": str(req.now_ms // 1000),
                "price": self._p(spec, t.last),
                "size": self._q(spec, t.last_qty),
                "bestBid": self._p(spec, t.bid),
                "bestBidSize": self._q(spec, t.bid_qty),
                "bestAsk": self._p(spec, t.ask),
                "bestAskSize": self._q(spec, t.ask_qty),
            }
        )

    # -- public: candles, books, trades ---------------------------------------------------------------
    def candles(self, req: SimRequest) -> Any:
        """GET /api/v1/market/candles?symbol=&type=&startAt=&endAt= (seconds): newest first, rows
        ``[time (s), open, close, high, low, volume, turnover]``, at most 1500."""
        spec = self._spec(req.query.get("symbol"))
        kind = req.query.get("type")
        if not kind:
            raise _err("400100", "type is required")
        timeframe = CANDLE_TYPES.get(kind)
        if timeframe is None:
            raise _err("400100", "Unsupported candle type")
        start = _int(req.query.get("startAt"), 0) or None
        end = _int(req.query.get("endAt"), 0) or None
        candles = self.venue.candles(
            spec.symbol,
            timeframe,
            req.now_ms,
            since_ms=None if start is None else start * 1000,
            until_ms=None if end is None else end * 1000,
            limit=MAX_CANDLES,
        )
        candles = req.apply_bad_data(candles)
        rows = [
            [
                str(c.ts // 1000),
                self._p(spec, c.open),
                self._p(spec, c.close),
                self._p(spec, c.high),
                self._p(spec, c.low),
                self._q(spec, c.volume),
                format_decimal(c.quote_volume, 8),
            ]
            for c in reversed(candles)
        ]
        return _ok(rows)

    def _book(self, req: SimRequest, depth: int, spec: MarketSpec | None = None) -> Any:
        spec = spec or self._spec(req.query.get("symbol"))
        book = req.apply_bad_data(self.venue.order_book(spec.symbol, req.now_ms, depth=depth))
        return _ok(
            {
                "time": book.ts,
                "sequence": str(book.nonce),
                "bids": [[self._p(spec, p), self._q(spec, q)] for p, q in book.bids],
                "asks": [[self._p(spec, p), self._q(spec, q)] for p, q in book.asks],
            }
        )

    def book_20(self, req: SimRequest) -> Any:
        """GET /api/v1/market/orderbook/level2_20?symbol=."""
        return self._book(req, 20)

    def book_100(self, req: SimRequest) -> Any:
        """GET /api/v1/market/orderbook/level2_100?symbol=."""
        return self._book(req, 100)

    def book_full(self, req: SimRequest) -> Any:
        """GET /api/v3/market/orderbook/level2?symbol= (signed): the full book."""
        self._signed(req)
        return self._book(req, FULL_BOOK_DEPTH)

    def histories(self, req: SimRequest) -> Any:
        """GET /api/v1/market/histories?symbol=: the last 100 trades, ``time`` in nanoseconds."""
        spec = self._spec(req.query.get("symbol"))
        trades = req.apply_bad_data(self.venue.trades(spec.symbol, req.now_ms, limit=100))
        return _ok(
            [
                {
                    "sequence": str(t.id),
                    "price": self._p(spec, t.price),
                    "size": self._q(spec, t.qty),
                    "side": t.side,
                    "time": t.ts * 1_000_000,
                }
                for t in trades
            ]
        )

    # -- private: balance -----------------------------------------------------------------------------
    def accounts(self, req: SimRequest) -> Any:
        """GET /api/v1/accounts?type=trade[&currency=]: the trading account's balances."""
        key = self._signed(req)
        kind = req.query.get("type")
        currency = req.query.get("currency")
        if kind not in (None, "", "trade"):
            return _ok([])  # main, margin, trade_hf...: the simulator keeps funds in "trade"
        out = []
        for asset, bal in sorted(self.venue.balances(key, req.now_ms).items()):
            if currency and asset != currency:
                continue
            out.append(
                {
                    "id": _hex_id(zlib.crc32(f"{key}:{asset}".encode()), "account"),
                    "currency": asset,
                    "type": "trade",
                    "balance": _plain(bal.total),
                    "available": _plain(bal.free),
                    "holds": _plain(bal.locked),
                }
            )
        return _ok(out)

    # -- private: orders ------------------------------------------------------------------------------
    def _order_json(self, o: Order) -> dict[str, Any]:
        spec = self.venue.markets[o.symbol]
        done = o.status in ("canceled", "expired")
        return {
            "id": o.id,
            "symbol": _market_id(spec),
            "opType": "DEAL",
            "type": o.type,
            "side": o.side,
            "price": _plain(o.price) if o.price is not None else "0",
            "size": _plain(o.amount),
            "funds": _plain(o.quote_amount) if o.quote_amount is not None else "0",
            "dealFunds": _plain(o.cost),
            "dealSize": _plain(o.filled),
            "fee": _plain(o.fee),
            "feeCurrency": o.fee_asset or spec.quote,
            "stp": "",
            "stop": "",
            "stopTriggered": False,
            "stopPrice": "0",
            "timeInForce": o.time_in_force,
            "postOnly": o.post_only,
            "hidden": False,
            "iceberg": False,
            "visibleSize": "0",
            "cancelAfter": 0,
            "channel": "API",
            "clientOid": o.client_order_id or "",
            "remark": None,
            "tags": "",
            "isActive": o.status == "open",
            "cancelExist": done,
            "createdAt": o.created_ms,
            "tradeType": "TRADE",
        }

    def create_order(self, req: SimRequest) -> Any:
        """POST /api/v1/orders (JSON body): answers ``{"orderId": ...}`` as the classic endpoint."""
        key = self._signed(req)
        body = req.json
        if not isinstance(body, dict):
            raise _err("400100", "Parameter Error")
        client_oid = req.body_str("clientOid")
        if not client_oid:
            raise _err("400100", "validation.createOrder.clientOidIsRequired")
        if not _CLIENT_OID_RE.match(client_oid):  # letters, digits, _ and -, at most 40
            raise _err("400100", "clientOid is invalid")
        spec = self._spec(req.body_str("symbol"))
        side = req.body_str("side")
        if side not in ("buy", "sell"):
            raise _err("400100", "side is required" if not side else "side is invalid")
        order_type = req.body_str("type") or "limit"
        if order_type not in ("limit", "market"):
            raise _err("400100", "type is invalid")
        size = req.body_str("size")
        price = req.body_str("price")
        funds = req.body_str("funds")
        tif = (req.body_str("timeInForce") or "GTC").upper()
        if tif not in ("GTC", "GTT", "IOC", "FOK"):
            raise _err("400100", "timeInForce is invalid")
        if order_type == "limit":
            if not price:
                raise _err("400100", "price is required")
            if not size:
                raise _err("400100", "size is required")
            funds = None
        elif not size and not funds:
            raise _err("400100", "size or funds is required")
        elif size and funds:
            raise _err("400100", "size and funds can not be used together")
        order = self.venue.create_order(
            key,
            spec.symbol,
            side,
            order_type,
            req.now_ms,
            amount=size or None,
            price=price if order_type == "limit" else None,
            quote_amount=funds or None,
            client_order_id=client_oid,
            time_in_force="GTC" if tif == "GTT" else tif,  # GTT (cancel after n s) rests like GTC
            post_only=order_type == "limit" and _truthy(body.get("postOnly")),
        )
        return _ok({"orderId": order.id})

    def fetch_order(self, req: SimRequest) -> Any:
        """GET /api/v1/orders/{orderId}."""
        key = self._signed(req)
        order = self.venue.get_order(key, req.now_ms, order_id=req.path_params["orderId"])
        return _ok(self._order_json(order))

    def fetch_order_by_client_oid(self, req: SimRequest) -> Any:
        """GET /api/v1/order/client-order/{clientOid}: the newest order with that clientOid."""
        key = self._signed(req)
        order = self.venue.get_order(key, req.now_ms, client_order_id=req.path_params["clientOid"])
        return _ok(self._order_json(order))

    def cancel_order(self, req: SimRequest) -> Any:
        """DELETE /api/v1/orders/{orderId}: ``{"cancelledOrderIds": [id]}``."""
        key = self._signed(req)
        order = self.venue.cancel_order(key, req.now_ms, order_id=req.path_params["orderId"])
        return _ok({"cancelledOrderIds": [order.id]})

    def cancel_by_client_oid(self, req: SimRequest) -> Any:
        """DELETE /api/v1/order/client-order/{clientOid}."""
        key = self._signed(req)
        client_oid = req.path_params["clientOid"]
        order = self.venue.cancel_order(key, req.now_ms, client_order_id=client_oid)
        return _ok({"cancelledOrderId": order.id, "clientOid": client_oid, "cancelledOcoOrderIds": None})

    def cancel_all(self, req: SimRequest) -> Any:
        """DELETE /api/v1/orders[?symbol=]: cancel every open order (of a symbol); answers the ids."""
        key = self._signed(req)
        symbol_id = req.query.get("symbol")
        symbol = self._spec(symbol_id).symbol if symbol_id else None
        ids = [
            self.venue.cancel_order(key, req.now_ms, symbol=o.symbol, order_id=o.id).id
            for o in self.venue.open_orders(key, req.now_ms, symbol)
        ]
        return _ok({"cancelledOrderIds": ids})

    def list_orders(self, req: SimRequest) -> Any:
        """GET /api/v1/orders?status=active|done[&symbol=][&side=][&type=][&currentPage=][&pageSize=]:
        a page of orders, newest first."""
        key = self._signed(req)
        status = req.query.get("status") or "done"
        if status not in ("active", "done"):
            raise _err("400100", "status is invalid")
        symbol_id = req.query.get("symbol")
        spec = self._spec(symbol_id) if symbol_id else None
        symbol = spec.symbol if spec is not None else None
        if status == "active":
            orders = self.venue.open_orders(key, req.now_ms, symbol)
        else:
            orders = [
                o
                for o in self.venue.orders(key)
                if o.status != "open" and (symbol is None or o.symbol == symbol)
            ]
        side = req.query.get("side")
        kind = req.query.get("type")
        orders = [o for o in orders if (not side or o.side == side) and (not kind or o.type == kind)]
        start = _int(req.query.get("startAt"), None)
        end = _int(req.query.get("endAt"), None)
        orders = [
            o
            for o in orders
            if (start is None or o.created_ms >= start) and (end is None or o.created_ms <= end)
        ]
        orders.sort(key=lambda o: o.seq, reverse=True)
        page_size = min(500, max(10, _int(req.query.get("pageSize"), 50) or 50))
        page = max(1, _int(req.query.get("currentPage"), 1) or 1)
        total = len(orders)
        items = orders[(page - 1) * page_size : page * page_size]
        return _ok(
            {
                "currentPage": page,
                "pageSize": page_size,
                "totalNum": total,
                "totalPage": (total + page_size - 1) // page_size,
                "items": [self._order_json(o) for o in items],
            }
        )

    def fills(self, req: SimRequest) -> Any:
        """GET /api/v1/fills[?symbol=][&orderId=][&side=][&type=][&startAt=][&endAt=][&currentPage=]
        [&pageSize=]: a page of the account's fills, newest first (KuCoin's classic trade history)."""
        key = self._signed(req)
        symbol_id = req.query.get("symbol")
        spec = self._spec(symbol_id) if symbol_id else None
        order_id = req.query.get("orderId")
        side = req.query.get("side")
        kind = req.query.get("type")
        start = _int(req.query.get("startAt"), None)
        end = _int(req.query.get("endAt"), None)
        self.venue.balances(key, req.now_ms)  # settle the matching up to now first
        rows: list[tuple[int, dict[str, Any]]] = []
        for o in self.venue.orders(key):
            if spec is not None and o.symbol != spec.symbol:
                continue
            if (order_id and o.id != order_id) or (side and o.side != side) or (kind and o.type != kind):
                continue
            market = self.venue.markets[o.symbol]
            for f in o.fills:
                if (start is not None and f.ts < start) or (end is not None and f.ts > end):
                    continue
                rows.append(
                    (
                        f.trade_id,
                        {
                            "symbol": _market_id(market),
                            "tradeId": _hex_id(f.trade_id, "fill"),
                            "orderId": o.id,
                            "counterOrderId": _hex_id(f.trade_id, "counter"),
                            "side": o.side,
                            "liquidity": "maker" if f.maker else "taker",
                            "forceTaker": False,
                            "price": _plain(f.price),
                            "size": _plain(f.qty),
                            "funds": _plain(f.price * f.qty),
                            "fee": _plain(f.fee),
                            "feeRate": _plain(_fee_rate(f.fee, f.fee_asset, market, f.price, f.qty)),
                            "feeCurrency": f.fee_asset,
                            "stop": "",
                            "tradeType": "TRADE",
                            "type": o.type,
                            "createdAt": f.ts,
                        },
                    )
                )
        rows.sort(key=lambda row: row[0], reverse=True)
        page_size = min(500, max(10, _int(req.query.get("pageSize"), 50) or 50))
        page = max(1, _int(req.query.get("currentPage"), 1) or 1)
        total = len(rows)
        return _ok(
            {
                "currentPage": page,
                "pageSize": page_size,
                "totalNum": total,
                "totalPage": (total + page_size - 1) // page_size,
                "items": [row for _, row in rows[(page - 1) * page_size : page * page_size]],
            }
        )


def _fee_rate(fee: Decimal, asset: str, spec: MarketSpec, price: Decimal, qty: Decimal) -> Decimal:
    """The fee as a share of what it was charged on: the base amount or the quote amount."""
    basis = qty if asset == spec.base else price * qty
    return (fee / basis).quantize(Decimal("0.00000001")) if basis else Decimal(0)


def _market_id(spec: MarketSpec) -> str:
    return f"{spec.base}-{spec.quote}"


DIALECT = KucoinDialect
