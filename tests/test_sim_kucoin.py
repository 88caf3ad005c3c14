"""The simulator's KuCoin dialect against an unmodified ccxt.kucoin (sync and async_support)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened.sim.server import Simulator

SYMBOL = "BTC/USDT"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(exchanges=["kucoin"], seed=11).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def ex(sim: Simulator) -> ccxt.kucoin:
    exchange = sim.attach(ccxt.kucoin({"enableRateLimit": False}))
    exchange.load_markets()
    return exchange


def _paths(sim: Simulator) -> list[str]:
    return [rec["path"].split("?")[0] for rec in sim.ground_truth()]


# -- market data ------------------------------------------------------------------------------------
def test_load_markets_complete(sim: Simulator, ex: ccxt.kucoin) -> None:
    assert set(ex.symbols) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"}
    market = ex.market(SYMBOL)
    assert market["id"] == "BTC-USDT" and market["spot"] and market["active"]
    assert market["precision"] == {"amount": 0.00001, "price": 0.01}
    assert market["limits"]["amount"]["min"] == 0.00001
    assert market["limits"]["amount"]["max"] == 9000
    assert market["limits"]["cost"]["min"] == 5
    assert market["taker"] == 0.001 and market["maker"] == 0.001
    assert ex.currencies["BTC"]["precision"] == 1e-8
    # load_markets stayed on faked endpoints: no 404 and no futures call
    statuses = {rec["status"] for rec in sim.ground_truth()}
    assert statuses == {200}
    assert "/kucoin/api/v2/symbols" in _paths(sim)
    assert not any("contracts" in p for p in _paths(sim))


def test_fetch_time_is_the_exchange_clock(sim: Simulator, ex: ccxt.kucoin) -> None:
    sim.clock_offset_ms = 3_600_000
    assert abs(ex.fetch_time() - sim.now_ms()) < 5_000


def test_fetch_ticker(sim: Simulator, ex: ccxt.kucoin) -> None:
    t = ex.fetch_ticker(SYMBOL)
    for field in ("bid", "ask", "last", "high", "low", "baseVolume", "quoteVolume", "timestamp"):
        assert isinstance(t[field], (int, float)), field
    assert 0 < t["bid"] < t["ask"]
    assert t["low"] <= t["last"] <= t["high"]
    assert abs(t["timestamp"] - sim.now_ms()) < 5_000
    assert t["symbol"] == SYMBOL


def test_fetch_ohlcv_aligned_rows(sim: Simulator, ex: ccxt.kucoin) -> None:
    rows = ex.fetch_ohlcv(SYMBOL, "1m", limit=10)
    assert 9 <= len(rows) <= 11
    for row in rows:
        assert len(row) == 6 and all(isinstance(v, (int, float)) for v in row)
        ts, o, h, low, c, v = row
        assert ts % 60_000 == 0
        assert low <= min(o, c) and h >= max(o, c) and v >= 0
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    since = (sim.now_ms() // 3_600_000 - 48) * 3_600_000
    hourly = ex.fetch_ohlcv(SYMBOL, "1h", since=since, limit=24)
    assert len(hourly) == 24
    assert hourly[0][0] == since
    assert all(b[0] - a[0] == 3_600_000 for a, b in itertools.pairwise(hourly))


def test_fetch_order_book(ex: ccxt.kucoin) -> None:
    full = ex.fetch_order_book(SYMBOL)  # with credentials: the signed v3 full book
    assert len(full["bids"]) > 100 and full["nonce"] is not None and full["timestamp"] is not None
    book = ex.fetch_order_book(SYMBOL, 20)
    assert len(book["bids"]) == 20 and len(book["asks"]) == 20
    assert book["bids"][0][0] < book["asks"][0][0]
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
    assert [a[0] for a in book["asks"]] == sorted(a[0] for a in book["asks"])


def test_fetch_trades(sim: Simulator, ex: ccxt.kucoin) -> None:
    trades = ex.fetch_trades(SYMBOL)
    assert 50 <= len(trades) <= 100
    last = trades[-1]
    assert last["side"] in ("buy", "sell") and last["price"] > 0 and last["amount"] > 0
    assert sim.now_ms() - 600_000 < last["timestamp"] <= sim.now_ms()
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)


def test_fetch_balance(ex: ccxt.kucoin) -> None:
    balance = ex.fetch_balance()
    assert balance["USDT"] == {"free": 100000.0, "used": 0.0, "total": 100000.0}
    assert balance["BTC"]["total"] == 2.0


# -- orders -----------------------------------------------------------------------------------------
def test_limit_order_lifecycle(sim: Simulator, ex: ccxt.kucoin) -> None:
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.8, 2)
    placed = ex.create_order(SYMBOL, "limit", "buy", 0.01, price)
    assert placed["id"] and len(placed["id"]) == 24
    order = ex.fetch_order(placed["id"], SYMBOL)
    assert order["status"] == "open"
    assert order["amount"] == 0.01 and order["filled"] == 0.0 and order["price"] == price
    assert order["clientOrderId"]  # ccxt generates a clientOid: KuCoin requires one
    assert order["symbol"] == SYMBOL and order["side"] == "buy" and order["type"] == "limit"
    assert ex.fetch_balance()["USDT"]["used"] == pytest.approx(0.01 * price)
    assert [o["id"] for o in ex.fetch_open_orders(SYMBOL)] == [placed["id"]]
    canceled = ex.cancel_order(placed["id"], SYMBOL)
    assert canceled["id"] == placed["id"]
    assert ex.fetch_order(placed["id"], SYMBOL)["status"] == "canceled"
    assert ex.fetch_open_orders() == []
    assert ex.fetch_balance()["USDT"]["used"] == 0.0


def test_limit_order_with_client_oid(sim: Simulator, ex: ccxt.kucoin) -> None:
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.9, 2)
    placed = ex.create_order(SYMBOL, "limit", "buy", 0.002, price, {"clientOid": "bot-1"})
    by_client = ex.fetch_order(None, SYMBOL, {"clientOid": "bot-1"})
    assert by_client["id"] == placed["id"] and by_client["clientOrderId"] == "bot-1"
    assert sim.orders("kucoin")[0].client_order_id == "bot-1"
    canceled = ex.cancel_order(None, SYMBOL, {"clientOid": "bot-1"})
    assert canceled["id"] == placed["id"] and canceled["clientOrderId"] == "bot-1"
    with pytest.raises(ccxt.BadRequest, match="clientOid is invalid"):  # letters, digits, _ and - only
        ex.create_order(SYMBOL, "limit", "buy", 0.002, price, {"clientOid": "bot 1!"})


def test_market_orders(ex: ccxt.kucoin) -> None:
    plain = ex.create_order(SYMBOL, "market", "buy", 0.001)
    order = ex.fetch_order(plain["id"], SYMBOL)
    assert order["status"] == "closed" and order["filled"] == 0.001 and order["amount"] == 0.001
    assert order["average"] > 0 and order["cost"] == pytest.approx(order["average"] * 0.001)
    tagged = ex.create_order(SYMBOL, "market", "sell", 0.001, None, {"clientOid": "mkt-1"})
    order = ex.fetch_order(None, SYMBOL, {"clientOid": "mkt-1"})
    assert order["id"] == tagged["id"] and order["status"] == "closed" and order["side"] == "sell"
    assert order["fee"]["currency"] == "USDT" and order["fee"]["cost"] > 0
    balance = ex.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(2.0 + 0.001 * 0.999 - 0.001)


def test_duplicate_client_oid_refused_among_active_orders(sim: Simulator, ex: ccxt.kucoin) -> None:
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.8, 2)
    first = ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOid": "dup-1"})
    with pytest.raises(ccxt.BadRequest, match="clientOidDuplicated"):
        ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOid": "dup-1"})
    assert len(sim.orders("kucoin")) == 1
    ex.cancel_order(first["id"], SYMBOL)
    # KuCoin enforces clientOid uniqueness among active orders only
    again = ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOid": "dup-1"})
    assert again["id"] != first["id"]


def test_cancel_unknown_and_twice(ex: ccxt.kucoin) -> None:
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("6650ffff0000000000000999", SYMBOL)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("6650ffff0000000000000999", SYMBOL)
    filled = ex.create_order(SYMBOL, "market", "buy", 0.001)
    with pytest.raises(ccxt.OrderNotFound, match="order_not_exist_or_not_allow_to_cancel"):
        ex.cancel_order(filled["id"], SYMBOL)


def test_insufficient_funds(ex: ccxt.kucoin) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(SYMBOL, "limit", "buy", 100, 60000)


# -- errors -----------------------------------------------------------------------------------------
def test_bad_signature_is_authentication_error(sim: Simulator, ex: ccxt.kucoin) -> None:
    wrong = sim.attach(
        ccxt.kucoin(
            {
                "apiKey": ex.apiKey,
                "secret": "not-the-secret",
                "password": ex.password,
                "enableRateLimit": False,
            }
        )
    )
    with pytest.raises(ccxt.AuthenticationError, match="400005"):
        wrong.fetch_balance()
    bad_pass = sim.attach(
        ccxt.kucoin({"apiKey": ex.apiKey, "secret": ex.secret, "password": "nope", "enableRateLimit": False})
    )
    with pytest.raises(ccxt.AuthenticationError, match="400004"):
        bad_pass.fetch_balance()


def test_bad_symbol(sim: Simulator, ex: ccxt.kucoin) -> None:
    with pytest.raises(ccxt.BadSymbol, match="Unsupported trading pair"):
        ex.public_get_market_stats({"symbol": "DOGE-USDT"})
    before = len(sim.ground_truth())
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ticker("DOGE/USDT")  # unified path: ccxt refuses unknown symbols itself
    assert len(sim.ground_truth()) == before


def test_skewed_timestamp_is_invalid_nonce(sim: Simulator, ex: ccxt.kucoin) -> None:
    sim.clock_offset_ms = 30_000
    with pytest.raises(ccxt.InvalidNonce, match="400002"):
        ex.fetch_balance()
    sim.clock_offset_ms = 0
    ex.options["timeDifference"] = -6_000  # the client's clock runs 6 s ahead
    with pytest.raises(ccxt.InvalidNonce):
        ex.fetch_balance()
    ex.options["timeDifference"] = 0
    assert ex.fetch_balance()["USDT"]["total"] == 100000.0


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("rate_limit", ccxt.RateLimitExceeded),
        ("maintenance", ccxt.ExchangeNotAvailable),
        ("clock_skew", ccxt.InvalidNonce),
    ],
)
def test_semantic_faults(sim: Simulator, ex: ccxt.kucoin, kind: str, error: type[Exception]) -> None:
    sim.set_profile({"faults": [{"kind": "exchange_error", "error": kind, "endpoints": ["ticker"]}]})
    with pytest.raises(error):
        ex.fetch_ticker(SYMBOL)
    assert ex.fetch_ohlcv(SYMBOL, "1m", limit=2)  # other endpoints untouched


def test_throttle_faults_and_headers(sim: Simulator, ex: ccxt.kucoin) -> None:
    ex.fetch_ticker(SYMBOL)
    headers = {k.lower(): v for k, v in ex.last_response_headers.items()}
    assert headers["gw-ratelimit-limit"] == "2000"
    assert 0 < int(headers["gw-ratelimit-remaining"]) < 2000
    assert 0 < int(headers["gw-ratelimit-reset"]) <= 30_000
    sim.set_profile({"faults": [{"kind": "rate_limit_429", "endpoints": ["ticker"], "retry_after": 3}]})
    with pytest.raises(ccxt.RateLimitExceeded, match="429000"):
        ex.fetch_ticker(SYMBOL)
    headers = {k.lower(): v for k, v in ex.last_response_headers.items()}
    assert headers["gw-ratelimit-remaining"] == "0" and headers["gw-ratelimit-reset"] == "3000"
    sim.set_profile({"faults": [{"kind": "ban_418", "endpoints": ["ticker"], "retry_after": 30}]})
    with pytest.raises(ccxt.RateLimitExceeded, match="1015"):
        ex.fetch_ticker(SYMBOL)


def test_enforced_public_pool(sim: Simulator, ex: ccxt.kucoin) -> None:
    sim.set_profile({"enforce_rate_limits": True})
    served = 0
    with pytest.raises(ccxt.RateLimitExceeded):
        for _ in range(200):
            ex.public_get_market_alltickers()  # weight 15 from the public pool of 2000 per 30 s
            served += 1
    # load_markets spent 3 (currencies) + 4 (symbols) + 15 (allTickers) of this IP's window
    assert served == (2000 - 22) // 15


def test_unknown_path(ex: ccxt.kucoin) -> None:
    with pytest.raises(ccxt.NotSupported, match="404000"):
        ex.fetch_contract_markets()


# -- async ------------------------------------------------------------------------------------------
async def test_async_support_flow(sim: Simulator) -> None:
    ex = sim.attach(accxt.kucoin({"enableRateLimit": False}))
    try:
        await ex.load_markets()
        ticker = await ex.fetch_ticker(SYMBOL)
        assert ticker["bid"] < ticker["ask"]
        rows = await ex.fetch_ohlcv(SYMBOL, "5m", limit=3)
        assert rows and all(r[0] % 300_000 == 0 for r in rows)
        placed = await ex.create_order(
            SYMBOL, "limit", "sell", 0.001, round(ticker["ask"] * 1.5, 2), {"clientOid": "a-1"}
        )
        order = await ex.fetch_order(placed["id"], SYMBOL)
        assert order["status"] == "open" and order["clientOrderId"] == "a-1"
        assert (await ex.fetch_balance())["BTC"]["used"] == pytest.approx(0.001)
        await ex.cancel_order(placed["id"], SYMBOL)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order(placed["id"], SYMBOL)
        sim.set_profile(
            {"faults": [{"kind": "exchange_error", "error": "maintenance", "endpoints": ["balance"]}]}
        )
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_balance()
    finally:
        await ex.close()
