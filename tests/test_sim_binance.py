"""An unmodified ccxt.binance (sync and async) against the simulator's Binance dialect over HTTP.

Every unified result is checked field by field, so a JSON shape ccxt cannot parse shows up here.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.request
from decimal import Decimal
from itertools import pairwise

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened.sim import Simulator

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]


def test_attach_points_every_api_family_at_the_simulator(
    binance_sim: Simulator, binance: ccxt.binance
) -> None:
    reference = ccxt.binance().urls["api"]
    assert set(binance.urls["api"]) >= set(reference)
    base = binance_sim.exchange_url("binance")
    for key, url in binance.urls["api"].items():
        assert url.startswith(base + "/"), key
        assert url.endswith(reference[key].split(".com", 1)[1]), key
    assert binance.options["fetchMarkets"]["types"] == ["spot"]
    assert binance.options["fetchCurrencies"] is True  # served by /sapi/v1/capital/config/getall
    assert binance.apiKey and binance.secret


def test_load_markets_parses_precision_and_limits(binance: ccxt.binance) -> None:
    markets = binance.load_markets()
    assert sorted(markets) == sorted(SYMBOLS)
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"] and btc["type"] == "spot"
    assert btc["precision"]["amount"] == 0.00001 and btc["precision"]["price"] == 0.01
    assert btc["limits"]["amount"]["min"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5
    assert btc["limits"]["price"]["min"] == 0.01
    assert markets["XRP/USDT"]["precision"]["price"] == 0.0001


def test_fetch_ticker_is_complete_and_consistent(binance_sim: Simulator, binance: ccxt.binance) -> None:
    ticker = binance.fetch_ticker("BTC/USDT")
    for field in (
        "timestamp", "high", "low", "bid", "ask", "bidVolume", "askVolume", "vwap", "open", "close",
        "last", "previousClose", "change", "percentage", "baseVolume", "quoteVolume",
    ):  # fmt: skip
        assert ticker[field] is not None, field
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["bid"] < ticker["ask"]
    assert ticker["bid"] <= ticker["last"] <= ticker["ask"]
    assert ticker["low"] <= ticker["last"] <= ticker["high"]
    assert ticker["low"] <= ticker["open"] <= ticker["high"]
    assert abs(ticker["timestamp"] - binance_sim.now_ms()) < 60_000
    assert ticker["baseVolume"] > 0 and ticker["quoteVolume"] > ticker["baseVolume"]


def test_fetch_tickers_lists_every_market(binance: ccxt.binance) -> None:
    tickers = binance.fetch_tickers()
    assert sorted(tickers) == sorted(SYMBOLS)
    assert all(t["bid"] < t["ask"] for t in tickers.values())


def test_fetch_ohlcv_is_aligned_and_honours_since_and_limit(
    binance_sim: Simulator, binance: ccxt.binance
) -> None:
    now = binance_sim.now_ms()
    candles = binance.fetch_ohlcv("ETH/USDT", "1h", limit=5)
    assert len(candles) == 5
    assert all(c[0] % 3_600_000 == 0 for c in candles)
    assert [b[0] - a[0] for a, b in pairwise(candles)] == [3_600_000] * 4
    assert candles[-1][0] <= now < candles[-1][0] + 3_600_000  # the last candle is still forming
    for _ts, o, h, low, c, v in candles:
        assert low <= min(o, c) <= max(o, c) <= h and v > 0
    since = candles[0][0] - 3 * 3_600_000 + 1  # not aligned: the first candle opens after it
    later = binance.fetch_ohlcv("ETH/USDT", "1h", since=since, limit=3)
    assert [c[0] for c in later] == [candles[0][0] - 2 * 3_600_000 + h * 3_600_000 for h in range(3)]


def test_ohlcv_timeframes_aggregate_the_same_path(binance: ccxt.binance) -> None:
    day = binance.fetch_ohlcv("BTC/USDT", "1d", limit=3)[0]  # a complete day
    hours = binance.fetch_ohlcv("BTC/USDT", "4h", since=day[0], limit=6)
    assert [h[0] for h in hours] == [day[0] + i * 4 * 3_600_000 for i in range(6)]
    assert hours[0][1] == day[1]  # open
    assert hours[-1][4] == day[4]  # close
    assert max(h[2] for h in hours) == day[2]
    assert min(h[3] for h in hours) == day[3]
    assert sum(h[5] for h in hours) == pytest.approx(day[5], rel=1e-6)
    week = binance.fetch_ohlcv("BTC/USDT", "1w", limit=2)
    assert time.gmtime(week[0][0] / 1000).tm_wday == 0  # weeks open on Monday, as on Binance
    month = binance.fetch_ohlcv("BTC/USDT", "1M", limit=2)
    assert time.gmtime(month[-1][0] / 1000).tm_mday == 1


def test_fetch_order_book_is_strictly_sorted(binance: ccxt.binance) -> None:
    book = binance.fetch_order_book("SOL/USDT", 20)
    bids = [p for p, _ in book["bids"]]
    asks = [p for p, _ in book["asks"]]
    assert len(bids) == len(asks) == 20
    assert all(a > b for a, b in pairwise(bids))
    assert all(a < b for a, b in pairwise(asks))
    assert bids[0] < asks[0]
    assert all(q > 0 for _, q in book["bids"] + book["asks"])
    assert book["nonce"] is not None


def test_an_order_book_deeper_than_5000_is_truncated_not_refused(binance: ccxt.binance) -> None:
    """Binance's docs: "If limit > 5000, then the response will truncate to 5000"."""
    book = binance.fetch_order_book("BTC/USDT", 6000)
    assert len(book["bids"]) == len(book["asks"]) == 5000
    with pytest.raises(ccxt.BadRequest):
        binance.fetch_order_book("BTC/USDT", 0)


@pytest.mark.parametrize("quote_qty", ["99999999999999999999999", "1e400"])
def test_a_huge_quote_order_qty_is_answered_not_crashed_on(quote_qty: str) -> None:
    """The LIMIT order was placed, then formatting its answer raised InvalidOperation: a 500 (ccxt
    ExchangeNotAvailable, "not placed") for an order resting in the ledger; the MARKET one crashed
    the book walk."""
    with Simulator(exchange="binance") as sim:
        ex = sim.attach(ccxt.binance({"enableRateLimit": False}))
        ex.load_markets()
        order = {"symbol": "ETHUSDT", "side": "BUY", "quoteOrderQty": quote_qty}
        placed = ex.privatePostOrder(
            {**order, "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.1", "price": "100"}
        )
        assert placed["status"] == "NEW" and Decimal(placed["origQuoteOrderQty"]) == Decimal(quote_qty)
        with pytest.raises(ccxt.InsufficientFunds):
            ex.privatePostOrder({**order, "type": "MARKET"})
        assert [(o.id, o.status) for o in sim.orders()] == [(str(placed["orderId"]), "open")]
        assert not [r for r in sim.ground_truth() if r["status"] == 500]


def test_fetch_trades_are_recent_ordered_and_complete(binance_sim: Simulator, binance: ccxt.binance) -> None:
    trades = binance.fetch_trades("BTC/USDT", limit=50)
    assert len(trades) == 50
    stamps = [t["timestamp"] for t in trades]
    assert stamps == sorted(stamps) and stamps[-1] <= binance_sim.now_ms()
    assert len({t["id"] for t in trades}) == 50
    for t in trades:
        assert t["side"] in ("buy", "sell") and t["price"] > 0 and t["amount"] > 0
        assert t["cost"] == pytest.approx(t["price"] * t["amount"])
    since = stamps[0] - 60_000
    older = binance.fetch_trades("BTC/USDT", since=since, limit=10)
    assert len(older) == 10 and all(t["timestamp"] >= since for t in older)


def test_fetch_balance(binance: ccxt.binance) -> None:
    balance = binance.fetch_balance()
    assert balance["USDT"]["free"] > 0
    for code in ("BTC", "ETH", "SOL", "XRP", "USDT"):
        assert balance[code]["total"] == balance[code]["free"] + balance[code]["used"]


def test_limit_order_lifecycle_with_client_order_id(binance_sim: Simulator, binance: ccxt.binance) -> None:
    binance.load_markets()
    before = binance.fetch_balance()["USDT"]
    price = round(binance.fetch_ticker("BTC/USDT")["bid"] * 0.8, 2)
    order = binance.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"clientOrderId": "life-1"})
    assert order["status"] == "open" and order["clientOrderId"] == "life-1"
    assert order["id"] and order["price"] == price and order["amount"] == 0.01 and order["filled"] == 0
    assert order["type"] == "limit" and order["side"] == "buy" and order["timeInForce"] == "GTC"
    locked = binance.fetch_balance()["USDT"]
    assert locked["used"] == pytest.approx(before["used"] + price * 0.01)
    fetched = binance.fetch_order(order["id"], "BTC/USDT")
    assert (fetched["id"], fetched["status"], fetched["clientOrderId"]) == (order["id"], "open", "life-1")
    by_client_id = binance.fetch_order(None, "BTC/USDT", {"clientOrderId": "life-1"})
    assert by_client_id["id"] == order["id"]
    assert order["id"] in [o["id"] for o in binance.fetch_open_orders("BTC/USDT")]
    canceled = binance.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled" and canceled["id"] == order["id"]
    assert binance.fetch_order(order["id"], "BTC/USDT")["status"] == "canceled"
    assert binance.fetch_balance()["USDT"]["used"] == pytest.approx(before["used"])
    ledger = [o for o in binance_sim.orders("binance") if o.id == order["id"]]
    assert ledger[0].status == "canceled" and ledger[0].client_order_id == "life-1"


def test_market_order_fills_at_the_book_and_moves_balances(binance: ccxt.binance) -> None:
    binance.load_markets()
    before = binance.fetch_balance()
    ask = binance.fetch_order_book("ETH/USDT", 5)["asks"][0][0]
    order = binance.create_order("ETH/USDT", "market", "buy", 0.5)
    assert order["status"] == "closed" and order["filled"] == 0.5 and order["remaining"] == 0
    assert order["clientOrderId"]  # ccxt generates one, the sim echoes it
    assert order["average"] >= ask * 0.99 and order["cost"] == pytest.approx(order["average"] * 0.5)
    assert order["fee"]["currency"] == "ETH" and order["fee"]["cost"] == pytest.approx(0.0005)
    assert len(order["trades"]) >= 1
    after = binance.fetch_balance()
    assert after["ETH"]["free"] == pytest.approx(before["ETH"]["free"] + 0.5 - 0.0005)
    assert after["USDT"]["free"] == pytest.approx(before["USDT"]["free"] - order["cost"])


def test_market_buy_by_cost_and_newClientOrderId(binance: ccxt.binance) -> None:
    binance.load_markets()
    order = binance.create_market_buy_order_with_cost("XRP/USDT", 100, {"newClientOrderId": "cost-1"})
    assert order["status"] == "closed" and order["clientOrderId"] == "cost-1"
    assert 99 <= order["cost"] <= 100


def test_duplicate_client_order_id_is_refused(binance: ccxt.binance) -> None:
    binance.load_markets()
    price = round(binance.fetch_ticker("SOL/USDT")["bid"] * 0.7, 2)
    binance.create_order("SOL/USDT", "limit", "buy", 1, price, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        binance.create_order("SOL/USDT", "limit", "buy", 1, price, {"clientOrderId": "dup-1"})


def test_unknown_orders_raise_order_not_found(binance: ccxt.binance) -> None:
    binance.load_markets()
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        binance.fetch_order("123", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        binance.cancel_order("123", "BTC/USDT")


def test_insufficient_funds(binance: ccxt.binance) -> None:
    binance.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):
        binance.create_order("BTC/USDT", "market", "buy", 100)


def test_order_filters_are_enforced(binance: ccxt.binance) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        binance.privatePostOrder(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.000001"}
        )
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        binance.privatePostOrder({"symbol": "BTCUSDT", "type": "MARKET", "quantity": "0.01"})


def test_wrong_secret_is_an_authentication_error(binance_sim: Simulator, binance: ccxt.binance) -> None:
    intruder = binance_sim.attach(ccxt.binance({"apiKey": binance.apiKey, "secret": "not-the-secret"}))
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        intruder.fetch_balance()
    stranger = binance_sim.attach(ccxt.binance({"apiKey": "nobody", "secret": "x"}), credentials=False)
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        stranger.fetch_balance()


def test_signature_is_checked_over_the_exact_query(binance_sim: Simulator, binance: ccxt.binance) -> None:
    query = f"timestamp={binance_sim.now_ms()}&recvWindow=5000"
    good = hmac.new(binance.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{binance_sim.exchange_url('binance')}/api/v3/account?{query}&signature={good}"
    request = urllib.request.Request(url, headers={"X-MBX-APIKEY": binance.apiKey})
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 200
    tampered = urllib.request.Request(
        url.replace("recvWindow=5000", "recvWindow=5001"), headers=request.headers
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tampered)
    assert err.value.code == 400 and b"-1022" in err.value.read()


def test_unknown_symbol_is_bad_symbol(binance: ccxt.binance) -> None:
    binance.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        binance.fetch_ticker("DOGE/USDT")  # refused by ccxt itself: not in the markets
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        binance.publicGetTicker24hr({"symbol": "DOGEUSDT"})  # refused by the simulator


@pytest.mark.parametrize("offset_ms", [-60_000, 60_000])
def test_clock_skew_is_invalid_nonce(binance_sim: Simulator, binance: ccxt.binance, offset_ms: int) -> None:
    binance_sim.clock_offset_ms = offset_ms
    try:
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            binance.fetch_balance()
        assert binance.fetch_time() == pytest.approx(time.time() * 1000 + offset_ms, abs=5_000)
    finally:
        binance_sim.clock_offset_ms = 0
    assert binance.fetch_balance()["USDT"]["free"] > 0


def test_usage_headers(binance: ccxt.binance) -> None:
    binance.load_markets()
    binance.fetch_ticker("BTC/USDT")
    first = int(binance.last_response_headers["x-mbx-used-weight-1m"])
    binance.fetch_order_book("BTC/USDT", 100)
    second = int(binance.last_response_headers["x-mbx-used-weight-1m"])
    assert second >= first + 5 or second == 5  # depth(100) weighs 5 (or a new minute began)
    binance.create_order("BTC/USDT", "market", "buy", 0.001)
    assert int(binance.last_response_headers["x-mbx-order-count-10s"]) >= 1


@pytest.mark.parametrize(("ms_left", "header"), [(1_500, "2"), (59_001, "60"), (200, "1")])
def test_the_weight_limit_retry_after_is_not_before_the_window_ends(ms_left: int, header: str) -> None:
    """Retry-After was the seconds left rounded down: 1.5 s left said 1, and a client that obeyed it
    was refused again."""
    from hardened.sim.dialect import SimRequest
    from hardened.sim.dialects.binance import BinanceDialect
    from hardened.sim.venue import Venue

    venue = Venue("binance")
    dialect = BinanceDialect(venue)
    dialect.enforce_rate_limits = True
    now = 29_383_334 * 60_000 + 60_000 - ms_left  # ms_left before a minute (2025-11-13) ends

    def info() -> SimRequest:
        return SimRequest("binance", "GET", "/api/v3/exchangeInfo", "", {}, {}, b"", "10.0.0.1", now, venue)

    answers = [dialect.before(info()) for _ in range(301)]  # 20 weight each: the 301st is over 6000
    assert answers[:300] == [None] * 300
    refused = answers[300]
    assert refused is not None and refused.status == 429
    assert refused.headers["Retry-After"] == header


def test_request_weight_limit_when_enforced() -> None:
    with Simulator(exchange="binance", profile={"enforce_rate_limits": True}) as sim:
        ex = sim.attach(ccxt.binance({"enableRateLimit": False}))
        ex.load_markets()
        used = int(ex.last_response_headers["x-mbx-used-weight-1m"])
        ex.fetch_order_book("BTC/USDT", 5000)  # the deepest book weighs 250
        assert int(ex.last_response_headers["x-mbx-used-weight-1m"]) == used + 250
        with pytest.raises(ccxt.DDoSProtection, match="-1003"):
            # every ticker: 80 weight each, small answers; 6000 runs out at 75. Twice that: a
            # minute's window that resets midway (a slow machine) still runs out in the next one.
            for _ in range(200):
                ex.fetch_tickers()
        assert int(ex.last_response_headers["Retry-After"]) >= 1


def test_ledger_numbers_are_exact(binance_sim: Simulator, binance: ccxt.binance) -> None:
    binance.load_markets()
    order = binance.create_order("XRP/USDT", "market", "sell", 30.1)
    ledger = next(o for o in binance_sim.orders("binance") if o.id == order["id"])
    assert ledger.filled == Decimal("30.1")
    assert ledger.cost == sum(f.price * f.qty for f in ledger.fills)


async def test_async_binance_end_to_end(binance_sim: Simulator) -> None:
    ex = binance_sim.attach(accxt.binance({"enableRateLimit": False}))
    try:
        markets = await ex.load_markets()
        assert sorted(markets) == sorted(SYMBOLS)
        ticker = await ex.fetch_ticker("BTC/USDT")
        assert ticker["bid"] < ticker["ask"]
        candles = await ex.fetch_ohlcv("BTC/USDT", "15m", limit=4)
        assert len(candles) == 4 and all(c[0] % 900_000 == 0 for c in candles)
        book = await ex.fetch_order_book("BTC/USDT", 10)
        assert book["bids"][0][0] < book["asks"][0][0]
        assert len(await ex.fetch_trades("BTC/USDT", limit=5)) == 5
        balance = await ex.fetch_balance()
        assert balance["USDT"]["free"] > 0
        price = round(ticker["bid"] * 0.5, 2)
        order = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, price, {"clientOrderId": "async-1"})
        assert order["clientOrderId"] == "async-1" and order["status"] == "open"
        assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "open"
        assert order["id"] in [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")]
        with pytest.raises(ccxt.InvalidOrder):
            await ex.create_order("BTC/USDT", "limit", "buy", 0.001, price, {"clientOrderId": "async-1"})
        assert (await ex.cancel_order(order["id"], "BTC/USDT"))["status"] == "canceled"
        market = await ex.create_order("BTC/USDT", "market", "sell", 0.001)
        assert market["status"] == "closed" and market["filled"] == 0.001
    finally:
        await ex.close()
