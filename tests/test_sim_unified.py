"""Every unified ccxt method the simulator claims runs against it and returns ccxt's unified structures.

For each exchange, ``SUPPORTED`` lists the unified methods the simulator answers; the test runs each
one on an unmodified ccxt exchange attached to the simulator and checks the result against ccxt's
documented unified structures (market, currency, ticker, OHLCV, order book, trade, balance, order:
https://docs.ccxt.com/#/README?id=unified-api): required keys, their types and the invariants a bot
relies on. ccxt's own test-suite helpers are not shipped with the package, hence these assertions.

Every other method ccxt's ``has`` marks True or ``"emulated"`` for these exchanges must match one of
``LEFT_OUT``, which says why the simulator does not serve it, so the list cannot silently go stale
when ccxt adds a method.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import ccxt
import pytest

from hardened import HardenedClient
from hardened.sim import Simulator

pytestmark = pytest.mark.usefixtures("calm")  # `sim` and `calm` come from conftest.py

SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}

_COMMON = {
    "loadMarkets",
    "fetchMarkets",
    "fetchCurrencies",
    "fetchTime",
    "fetchTicker",
    "fetchTickers",
    "fetchOHLCV",
    "fetchOrderBook",
    "fetchL2OrderBook",
    "fetchTrades",
    "fetchBalance",
    "createOrder",
    "createLimitOrder",
    "createMarketOrder",
    "createPostOnlyOrder",
    "fetchOrder",
    "cancelOrder",
    "cancelAllOrders",
    "fetchOpenOrders",
    "fetchMyTrades",
}
SUPPORTED: dict[str, set[str]] = {
    "binance": _COMMON
    | {
        "fetchStatus",
        "fetchBidsAsks",
        "fetchLastPrices",
        "fetchOrders",
        "fetchClosedOrders",
        "fetchCanceledOrders",
        "fetchCanceledAndClosedOrders",
        "fetchOrderTrades",
        "fetchTradingLimits",
        "createLimitBuyOrder",
        "createLimitSellOrder",
        "createMarketBuyOrder",
        "createMarketSellOrder",
    },
    "kucoin": _COMMON
    | {"fetchStatus", "fetchClosedOrders", "fetchOrdersByStatus", "fetchOrderTrades", "fetchAccounts"},
    "bitvavo": _COMMON | {"fetchOrders"},
}

_SPOT_ONLY = "derivatives and margin: the simulator is a spot venue"
_WALLET = "wallet, funding and account administration: the venue has balances, not a wallet"
LEFT_OUT: list[tuple[str, str]] = [
    (
        r"Margin|Leverage|Position|Funding|Borrow|Greeks|Option|Mark(Price|OHLCV)|IndexOHLCV|Premium|"
        r"OpenInterest|ADL|Liquidation|Settlement|LongShort|ReduceOnly|closePosition",
        _SPOT_ONLY,
    ),
    (
        r"Deposit|Withdraw|withdraw|transfer|Transfer|Ledger|Convert|TransactionFee|fetchAccounts$|"
        r"TradingFee",
        _WALLET,
    ),
    (
        r"Stop|Trigger|TakeProfit|Trailing",
        "conditional orders: the venue's matching engine knows limit and market orders only",
    ),
    (r"WithCost$", "orders sized in quote currency (cost) are not simulated"),
    (r"^(createOrders|editOrder|editOrders|cancelOrders)$", "batch and amend endpoints are not simulated"),
    (r"^cancelAllOrdersAfter$", "the dead man's switch is not simulated"),
    (r"^fetchL3OrderBook$", "the book is aggregated per price level; no per-order (L3) book"),
    (r"^fetchOpenOrder$", "ccxt serves it for derivatives only on Binance"),
]


def _left_out_reason(method: str) -> str | None:
    for pattern, reason in LEFT_OUT:
        if re.search(pattern, method):
            return reason
    return None


def claimed_by_ccxt(exchange_id: str) -> set[str]:
    """Unified REST methods ccxt's ``has`` marks True or emulated for ``exchange_id``."""
    ex = getattr(ccxt, exchange_id)()
    return {
        name
        for name, value in ex.has.items()
        if value in (True, "emulated")
        and name[0].islower()
        and not name.startswith(("watch", "unWatch"))
        and callable(getattr(ex, name, None))
    }


@pytest.mark.parametrize("exchange_id", sorted(SUPPORTED))
def test_every_method_ccxt_has_is_simulated_or_left_out_with_a_reason(exchange_id: str) -> None:
    claimed = claimed_by_ccxt(exchange_id)
    unexplained = sorted(m for m in claimed - SUPPORTED[exchange_id] if _left_out_reason(m) is None)
    assert not unexplained, f"{exchange_id}: neither simulated nor left out with a reason: {unexplained}"
    not_in_ccxt = sorted(SUPPORTED[exchange_id] - claimed - {"loadMarkets", "fetchMarkets"})
    assert not not_in_ccxt, f"{exchange_id}: claimed as simulated but ccxt has no such method: {not_in_ccxt}"


# --- ccxt's unified structures ---------------------------------------------------------------

NUMBER = (int, float)
ORDER_STATUSES = {"open", "closed", "canceled", "expired", "rejected"}


def _num(value: Any, name: str, *, optional: bool = False, positive: bool = False) -> None:
    if value is None and optional:
        return
    assert isinstance(value, NUMBER) and not isinstance(value, bool), f"{name}: {value!r} is not a number"
    assert math.isfinite(value), f"{name}: {value!r}"
    if positive:
        assert value > 0, f"{name}: {value!r} is not positive"


def _timestamp(value: Any, name: str, now_ms: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    assert isinstance(value, int) and not isinstance(value, bool), f"{name}: {value!r} is not an int"
    assert 1_230_000_000_000 < value <= now_ms + 60_000, f"{name}: {value} is not a recent time in ms"


def _keys(obj: Any, keys: tuple[str, ...], what: str) -> None:
    assert isinstance(obj, Mapping), f"{what}: not a dict but {type(obj).__name__}"
    missing = [k for k in keys if k not in obj]
    assert not missing, f"{what}: missing keys {missing}"


def check_market(m: Any) -> None:
    _keys(
        m,
        (
            "id",
            "symbol",
            "base",
            "quote",
            "baseId",
            "quoteId",
            "active",
            "type",
            "spot",
            "precision",
            "limits",
            "info",
        ),
        "market",
    )
    assert m["symbol"] == f"{m['base']}/{m['quote']}" and m["type"] == "spot" and m["spot"] is True
    _num(m["precision"]["amount"], "precision.amount", positive=True)
    _num(m["precision"]["price"], "precision.price", positive=True)
    for key in ("amount", "price", "cost"):
        _keys(m["limits"][key], ("min", "max"), f"limits.{key}")


def check_currency(code: str, c: Any) -> None:
    _keys(
        c,
        ("id", "code", "precision", "active", "deposit", "withdraw", "fee", "limits", "networks", "info"),
        "currency",
    )
    assert c["code"] == code and isinstance(c["id"], str)
    _num(c["precision"], "currency precision", optional=True, positive=True)
    assert isinstance(c["networks"], Mapping)


def check_ticker(t: Any, symbol: str, now_ms: int) -> None:
    _keys(
        t,
        (
            "symbol",
            "timestamp",
            "datetime",
            "high",
            "low",
            "bid",
            "ask",
            "last",
            "close",
            "baseVolume",
            "info",
        ),
        "ticker",
    )
    assert t["symbol"] == symbol
    _timestamp(t["timestamp"], "ticker timestamp", now_ms, optional=True)
    for key in ("high", "low", "bid", "ask", "last", "close", "baseVolume", "quoteVolume"):
        _num(t.get(key), f"ticker {key}", optional=True)
    assert t["bid"] is not None or t["last"] is not None, "a ticker without any price"
    if t["bid"] is not None and t["ask"] is not None:
        assert t["bid"] <= t["ask"], "crossed ticker"
    if t["high"] is not None and t["low"] is not None:
        assert t["low"] <= t["high"]


def check_ohlcv(rows: Any, now_ms: int) -> None:
    assert isinstance(rows, list) and rows
    for row in rows:
        assert isinstance(row, list) and len(row) == 6, row
        _timestamp(row[0], "candle time", now_ms)
        for value in row[1:]:
            _num(value, "candle value")
        assert row[3] <= min(row[1], row[4]) <= max(row[1], row[4]) <= row[2], row
    assert [r[0] for r in rows] == sorted({r[0] for r in rows}), "candles not ascending and unique"


def check_order_book(book: Any, symbol: str) -> None:
    _keys(book, ("symbol", "bids", "asks", "timestamp", "datetime", "nonce"), "order book")
    assert book["symbol"] == symbol and book["bids"] and book["asks"]
    for side in ("bids", "asks"):
        for level in book[side]:
            assert len(level) >= 2
            _num(level[0], f"{side} price", positive=True)
            _num(level[1], f"{side} amount", positive=True)
    bids = [b[0] for b in book["bids"]]
    asks = [a[0] for a in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def check_trade(t: Any, symbol: str, now_ms: int, *, mine: bool = False) -> None:
    _keys(
        t,
        (
            "id",
            "timestamp",
            "datetime",
            "symbol",
            "order",
            "type",
            "side",
            "takerOrMaker",
            "price",
            "amount",
            "cost",
            "fee",
            "info",
        ),
        "trade",
    )
    assert t["symbol"] == symbol and t["side"] in ("buy", "sell")
    # KuCoin's public trade history carries no trade id (ccxt leaves ``id`` None); own trades have one.
    assert isinstance(t["id"], str) or (t["id"] is None and not mine), t["id"]
    _timestamp(t["timestamp"], "trade time", now_ms)
    _num(t["price"], "trade price", positive=True)
    _num(t["amount"], "trade amount", positive=True)
    _num(t["cost"], "trade cost", optional=True)
    if t["cost"] is not None:
        assert math.isclose(t["cost"], t["price"] * t["amount"], rel_tol=1e-6)
    if mine:
        assert isinstance(t["order"], str) and t["takerOrMaker"] in ("taker", "maker")
        _keys(t["fee"], ("cost", "currency"), "trade fee")
        _num(t["fee"]["cost"], "fee cost")


def check_trades(trades: Any, symbol: str, now_ms: int, *, mine: bool = False) -> None:
    assert isinstance(trades, list) and trades
    for t in trades:
        check_trade(t, symbol, now_ms, mine=mine)
    stamps = [t["timestamp"] for t in trades]
    assert stamps == sorted(stamps), "trades not ascending"


def check_balance(b: Any) -> None:
    _keys(b, ("info", "free", "used", "total"), "balance")
    assert b["total"], "an account with no currencies"
    for code, total in b["total"].items():
        _keys(b[code], ("free", "used", "total"), f"balance {code}")
        for part in ("free", "used", "total"):
            _num(b[part][code], f"{part} {code}")
        assert math.isclose(b["free"][code] + b["used"][code], total, rel_tol=1e-9, abs_tol=1e-12)


def check_order(o: Any, symbol: str, now_ms: int) -> None:
    _keys(
        o,
        (
            "id",
            "clientOrderId",
            "timestamp",
            "datetime",
            "symbol",
            "type",
            "side",
            "price",
            "amount",
            "filled",
            "remaining",
            "cost",
            "status",
            "fee",
            "trades",
            "info",
        ),
        "order",
    )
    assert isinstance(o["id"], str) and o["id"] and o["symbol"] == symbol
    assert o["status"] in ORDER_STATUSES and o["side"] in ("buy", "sell") and o["type"] in ("limit", "market")
    _timestamp(o["timestamp"], "order time", now_ms)
    _num(o["amount"], "order amount", positive=True)
    _num(o["filled"], "order filled")
    _num(o["remaining"], "order remaining")
    assert math.isclose(o["filled"] + o["remaining"], o["amount"], rel_tol=1e-9)
    assert isinstance(o["trades"], list)


def check_orders(orders: Any, symbol: str, now_ms: int, status: set[str] | None = None) -> None:
    assert isinstance(orders, list) and orders
    for o in orders:
        check_order(o, symbol, now_ms)
        if status is not None:
            assert o["status"] in status, o["status"]


# --- running them ----------------------------------------------------------------------------


class Runner:
    """Calls unified methods by their camelCase name and remembers which ran."""

    def __init__(self, ex: Any) -> None:
        self.ex = ex
        self.ran: set[str] = set()

    def __call__(self, method: str, *args: Any) -> Any:
        self.ran.add(method)
        return getattr(self.ex, method)(*args)


def _settle(fn: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    """Fills land when the venue matches; ask again briefly until they show (no fixed sleeps)."""
    deadline = time.monotonic() + 5
    while True:
        result = fn()
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.mark.parametrize("wrapped", [False, True], ids=["ccxt", "hardened"])
@pytest.mark.parametrize("exchange_id", sorted(SUPPORTED))
def test_every_simulated_method_returns_ccxts_unified_structures(
    sim: Simulator, exchange_id: str, wrapped: bool
) -> None:
    ex = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 5000}))
    if wrapped:  # the same calls through the hardened client: its checks must pass every real answer
        ex = HardenedClient(ex, quality_policy="raise", cache_ttl=0.0, stale_if_error=0.0)
    run = Runner(ex)
    symbol = SYMBOL[exchange_id]
    has = ex.has
    now = ex.milliseconds

    markets = run("loadMarkets")
    assert symbol in markets
    for market in run("fetchMarkets"):
        check_market(market)
    currencies = run("fetchCurrencies")
    assert {markets[symbol]["base"], markets[symbol]["quote"]} <= set(currencies)
    for code, currency in currencies.items():
        check_currency(code, currency)
    _timestamp(run("fetchTime"), "server time", now())
    if "fetchStatus" in SUPPORTED[exchange_id]:
        status = run("fetchStatus")
        _keys(status, ("status", "updated", "info"), "status")
        assert status["status"] == "ok"

    check_ticker(run("fetchTicker", symbol), symbol, now())
    tickers = run("fetchTickers")
    assert symbol in tickers
    for sym, ticker in tickers.items():
        check_ticker(ticker, sym, now())
    if "fetchTradingLimits" in SUPPORTED[exchange_id]:
        limits = run("fetchTradingLimits")
        assert set(limits) == set(markets)
        for sym, amount in limits.items():
            _keys(amount, ("min", "max"), f"{sym} amount limits")
            _num(amount["min"], f"{sym} min amount", positive=True)
    if has.get("fetchBidsAsks") is True:
        for sym, ticker in run("fetchBidsAsks").items():
            assert ticker["symbol"] == sym and ticker["bid"] <= ticker["ask"]
    if has.get("fetchLastPrices") is True:
        for sym, last in run("fetchLastPrices").items():
            assert last["symbol"] == sym
            _num(last["price"], "last price", positive=True)
    check_ohlcv(run("fetchOHLCV", symbol, "1m", None, 50), now())
    check_order_book(run("fetchOrderBook", symbol, 20), symbol)
    check_order_book(run("fetchL2OrderBook", symbol, 20), symbol)
    check_trades(run("fetchTrades", symbol), symbol, now())
    check_balance(run("fetchBalance"))

    # Orders: one resting limit order far from the market, one market order that fills.
    ticker = ex.fetch_ticker(symbol)
    low = float(ex.price_to_precision(symbol, ticker["bid"] * 0.5))
    resting = run("createOrder", symbol, "limit", "buy", 0.01, low)
    assert isinstance(resting["id"], str) and resting["id"]
    limit = run("createLimitOrder", symbol, "buy", 0.01, low)
    post_only = run("createPostOnlyOrder", symbol, "limit", "buy", 0.01, low)
    market = run("createMarketOrder", symbol, "buy", 0.01)
    if "createLimitBuyOrder" in SUPPORTED[exchange_id]:
        run("createLimitBuyOrder", symbol, 0.01, low)
        high = float(ex.price_to_precision(symbol, ticker["ask"] * 1.5))
        run("createLimitSellOrder", symbol, 0.01, high)
        run("createMarketBuyOrder", symbol, 0.01)
        run("createMarketSellOrder", symbol, 0.01)

    fetched = run("fetchOrder", resting["id"], symbol)
    check_order(fetched, symbol, now())
    assert fetched["status"] == "open" and fetched["id"] == resting["id"]
    filled = _settle(lambda: ex.fetch_order(market["id"], symbol), lambda o: o["status"] == "closed")
    check_order(filled, symbol, now())
    assert filled["status"] == "closed" and filled["filled"] > 0

    check_orders(run("fetchOpenOrders", symbol), symbol, now(), {"open"})
    mine = _settle(lambda: run("fetchMyTrades", symbol), bool)
    check_trades(mine, symbol, now(), mine=True)
    assert market["id"] in {t["order"] for t in mine}
    if "fetchOrderTrades" in SUPPORTED[exchange_id]:
        own = run("fetchOrderTrades", market["id"], symbol)
        check_trades(own, symbol, now(), mine=True)
        assert {t["order"] for t in own} == {market["id"]}

    canceled = run("cancelOrder", resting["id"], symbol)
    assert canceled["id"] == resting["id"]
    assert ex.fetch_order(resting["id"], symbol)["status"] == "canceled"
    run("cancelAllOrders", symbol)
    assert ex.fetch_open_orders(symbol) == []
    for placed in (limit, post_only):
        assert ex.fetch_order(placed["id"], symbol)["status"] == "canceled"

    if "fetchOrders" in SUPPORTED[exchange_id]:
        check_orders(run("fetchOrders", symbol), symbol, now())
    if "fetchClosedOrders" in SUPPORTED[exchange_id]:
        check_orders(run("fetchClosedOrders", symbol), symbol, now(), {"closed", "canceled", "expired"})
    if "fetchCanceledAndClosedOrders" in SUPPORTED[exchange_id]:
        check_orders(
            run("fetchCanceledAndClosedOrders", symbol), symbol, now(), {"closed", "canceled", "expired"}
        )
    if "fetchCanceledOrders" in SUPPORTED[exchange_id]:
        check_orders(run("fetchCanceledOrders", symbol), symbol, now(), {"canceled"})
    if "fetchOrdersByStatus" in SUPPORTED[exchange_id]:
        check_orders(
            run("fetchOrdersByStatus", "closed", symbol), symbol, now(), {"closed", "canceled", "expired"}
        )
    if "fetchAccounts" in SUPPORTED[exchange_id]:
        accounts = run("fetchAccounts")
        assert accounts and all({"id", "type", "code", "info"} <= set(a) for a in accounts)

    assert run.ran == SUPPORTED[exchange_id], f"claimed but not run: {SUPPORTED[exchange_id] - run.ran}"
