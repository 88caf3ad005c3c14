"""The simulator's Bitvavo dialect against an unmodified ccxt.bitvavo (sync and async_support)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import ccxt
import ccxt.async_support as accxt
import pytest

from hardened.sim.server import Simulator

SYMBOL = "BTC/EUR"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(exchanges=["bitvavo"], seed=5).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def ex(sim: Simulator) -> ccxt.bitvavo:
    exchange = sim.attach(ccxt.bitvavo({"enableRateLimit": False}))
    exchange.load_markets()
    return exchange


def _headers(ex: ccxt.Exchange) -> dict[str, str]:
    return {k.lower(): v for k, v in ex.last_response_headers.items()}


# -- market data ------------------------------------------------------------------------------------
def test_load_markets_complete(sim: Simulator, ex: ccxt.bitvavo) -> None:
    assert set(ex.symbols) == {"BTC/EUR", "ETH/EUR", "SOL/EUR", "XRP/EUR"}
    market = ex.market(SYMBOL)
    assert market["id"] == "BTC-EUR" and market["spot"] and market["active"]
    assert market["precision"] == {"amount": 0.00001, "price": 0.01, "cost": 0.01}
    assert market["limits"]["amount"] == {"min": 0.00001, "max": 9000}
    assert market["limits"]["cost"]["min"] == 5
    assert ex.currencies["EUR"]["type"] == "fiat" and ex.currencies["BTC"]["active"]
    paths = [rec["path"] for rec in sim.ground_truth()]
    assert paths == ["/bitvavo/v2/assets", "/bitvavo/v2/markets"]
    assert all(rec["status"] == 200 for rec in sim.ground_truth())
    assert ex.options["operatorId"] == 1  # attach supplies the operatorId Bitvavo requires


def test_fetch_time(sim: Simulator, ex: ccxt.bitvavo) -> None:
    sim.clock_offset_ms = -90_000
    assert abs(ex.fetch_time() - sim.now_ms()) < 5_000


def test_fetch_ticker(sim: Simulator, ex: ccxt.bitvavo) -> None:
    t = ex.fetch_ticker(SYMBOL)
    for field in ("bid", "ask", "last", "open", "high", "low", "baseVolume", "quoteVolume", "timestamp"):
        assert isinstance(t[field], (int, float)), field
    assert 0 < t["bid"] < t["ask"] and t["low"] <= t["last"] <= t["high"]
    assert abs(t["timestamp"] - sim.now_ms()) < 5_000
    assert t["bidVolume"] > 0 and t["askVolume"] > 0


def test_fetch_ohlcv_aligned_rows(sim: Simulator, ex: ccxt.bitvavo) -> None:
    rows = ex.fetch_ohlcv(SYMBOL, "15m", limit=8)
    assert len(rows) == 8
    for ts, o, h, low, c, v in rows:
        assert ts % 900_000 == 0 and low <= min(o, c) and h >= max(o, c) and v >= 0
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert rows[-1][0] == sim.now_ms() // 900_000 * 900_000
    since = (sim.now_ms() // 86_400_000 - 10) * 86_400_000
    daily = ex.fetch_ohlcv(SYMBOL, "1d", since=since, limit=5)
    assert [r[0] for r in daily] == [since + i * 86_400_000 for i in range(5)]


def test_fetch_order_book(ex: ccxt.bitvavo) -> None:
    book = ex.fetch_order_book(SYMBOL, 25)
    assert len(book["bids"]) == 25 and len(book["asks"]) == 25
    assert book["bids"][0][0] < book["asks"][0][0]
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
    assert isinstance(book["nonce"], int)


def test_fetch_trades(sim: Simulator, ex: ccxt.bitvavo) -> None:
    trades = ex.fetch_trades(SYMBOL, limit=50)
    assert len(trades) == 50
    assert all(uuid.UUID(t["id"]) for t in trades)
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)
    assert trades[-1]["timestamp"] <= sim.now_ms() and trades[-1]["side"] in ("buy", "sell")


def test_fetch_balance(ex: ccxt.bitvavo) -> None:
    balance = ex.fetch_balance()
    assert balance["EUR"] == {"free": 100000.0, "used": 0.0, "total": 100000.0}
    assert balance["BTC"]["total"] == 2.0


# -- orders -----------------------------------------------------------------------------------------
def test_limit_order_lifecycle(ex: ccxt.bitvavo) -> None:
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.8, 2)
    placed = ex.create_order(SYMBOL, "limit", "buy", 0.01, price)
    assert uuid.UUID(placed["id"])
    assert placed["status"] == "open" and placed["amount"] == 0.01 and placed["filled"] == 0.0
    order = ex.fetch_order(placed["id"], SYMBOL)
    assert order["status"] == "open" and order["price"] == price and order["remaining"] == 0.01
    assert "clientOrderId" not in order["info"]
    assert ex.fetch_balance()["EUR"]["used"] == pytest.approx(0.01 * price)
    assert [o["id"] for o in ex.fetch_open_orders(SYMBOL)] == [placed["id"]]
    canceled = ex.cancel_order(placed["id"], SYMBOL)
    assert canceled["id"] == placed["id"]
    assert ex.fetch_order(placed["id"], SYMBOL)["status"] == "canceled"
    assert ex.fetch_open_orders(SYMBOL) == []


def test_limit_order_with_client_order_id(sim: Simulator, ex: ccxt.bitvavo) -> None:
    cid = str(uuid.uuid4())
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.9, 2)
    placed = ex.create_order(SYMBOL, "limit", "buy", 0.002, price, {"clientOrderId": cid})
    # ccxt's bitvavo parser does not read clientOrderId; it is in the raw answer
    assert placed["info"]["clientOrderId"] == cid
    by_client = ex.fetch_order(None, SYMBOL, {"clientOrderId": cid})
    assert by_client["id"] == placed["id"] and by_client["info"]["clientOrderId"] == cid
    assert sim.orders("bitvavo")[0].client_order_id == cid
    canceled = ex.cancel_order(None, SYMBOL, {"clientOrderId": cid})
    assert canceled["id"] == placed["id"]


def test_market_orders(ex: ccxt.bitvavo) -> None:
    plain = ex.create_order(SYMBOL, "market", "buy", 0.001)
    assert plain["status"] == "closed" and plain["filled"] == 0.001 and len(plain["trades"]) >= 1
    cid = str(uuid.uuid4())
    tagged = ex.create_order(SYMBOL, "market", "sell", 0.001, None, {"clientOrderId": cid})
    order = ex.fetch_order(None, SYMBOL, {"clientOrderId": cid})
    assert order["id"] == tagged["id"] and order["status"] == "closed" and order["filled"] == 0.001
    assert order["cost"] == pytest.approx(order["average"] * 0.001)
    assert order["fee"]["currency"] == "EUR" and order["fee"]["cost"] > 0
    by_cost = ex.create_order(SYMBOL, "market", "buy", 0.001, 60000)  # ccxt sends amountQuote=60
    assert by_cost["info"]["amountQuote"] == "60" and 0 < by_cost["cost"] <= 60


def test_client_order_id_must_be_a_uuid(sim: Simulator, ex: ccxt.bitvavo) -> None:
    with pytest.raises(ccxt.BadRequest, match="clientOrderId parameter is invalid"):
        ex.create_order(SYMBOL, "market", "buy", 0.001, None, {"clientOrderId": "my-order-1"})
    assert sim.orders("bitvavo") == []


def test_duplicate_client_order_id_refused(sim: Simulator, ex: ccxt.bitvavo) -> None:
    cid = str(uuid.uuid4())
    price = round(ex.fetch_ticker(SYMBOL)["bid"] * 0.8, 2)
    first = ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOrderId": cid})
    with pytest.raises(ccxt.ExchangeError, match='"errorCode":220') as info:
        ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOrderId": cid})
    assert type(info.value) is ccxt.ExchangeError  # ccxt has no class for 220: the generic one
    assert len(sim.orders("bitvavo")) == 1
    ex.cancel_order(first["id"], SYMBOL)
    again = ex.create_order(SYMBOL, "limit", "buy", 0.001, price, {"clientOrderId": cid})
    assert again["id"] != first["id"]  # unique among open orders only


def test_cancel_unknown_and_filled(ex: ccxt.bitvavo) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="240"):
        ex.cancel_order(str(uuid.uuid4()), SYMBOL)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(str(uuid.uuid4()), SYMBOL)
    filled = ex.create_order(SYMBOL, "market", "buy", 0.001)
    with pytest.raises(ccxt.OrderNotFound, match="233"):
        ex.cancel_order(filled["id"], SYMBOL)
    with pytest.raises(ccxt.InvalidOrder, match="orderId parameter is invalid"):
        ex.cancel_order("12345", SYMBOL)


def test_insufficient_funds_and_missing_operator_id(ex: ccxt.bitvavo) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="216"):
        ex.create_order(SYMBOL, "limit", "buy", 50, 60000)
    request = {"market": "BTC-EUR", "side": "buy", "orderType": "limit", "amount": "0.001", "price": "40000"}
    with pytest.raises(ccxt.BadSymbol, match="operatorId parameter is required"):  # ccxt maps 203 so
        ex.private_post_order(request)


# -- errors -----------------------------------------------------------------------------------------
def test_bad_signature_is_authentication_error(sim: Simulator, ex: ccxt.bitvavo) -> None:
    wrong = sim.attach(ccxt.bitvavo({"apiKey": ex.apiKey, "secret": "f" * 128, "enableRateLimit": False}))
    with pytest.raises(ccxt.AuthenticationError, match="309"):
        wrong.fetch_balance()
    stranger = sim.attach(ccxt.bitvavo({"apiKey": "a" * 64, "secret": "b" * 128}), credentials=False)
    with pytest.raises(ccxt.AuthenticationError, match="305"):
        stranger.private_get_balance()


def test_bad_symbol(sim: Simulator, ex: ccxt.bitvavo) -> None:
    # Bitvavo answers 205 "market parameter is invalid.", which ccxt raises as BadRequest
    with pytest.raises(ccxt.BadRequest, match="market parameter is invalid"):
        ex.public_get_market_book({"market": "DOGE-EUR"})
    before = len(sim.ground_truth())
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_order_book("DOGE/EUR")  # unified path: ccxt refuses unknown symbols itself
    assert len(sim.ground_truth()) == before


def test_skewed_timestamp(sim: Simulator, ex: ccxt.bitvavo) -> None:
    sim.clock_offset_ms = 11_000  # outside ccxt's 10 s Bitvavo-Access-Window
    with pytest.raises(ccxt.AuthenticationError, match='"errorCode":304'):
        ex.fetch_balance()
    sim.clock_offset_ms = 5_000
    assert ex.fetch_balance()["EUR"]["total"] == 100000.0


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("rate_limit", ccxt.RateLimitExceeded, 103),
        ("maintenance", ccxt.ExchangeNotAvailable, 107),
        ("clock_skew", ccxt.AuthenticationError, 304),
    ],
)
def test_semantic_faults(
    sim: Simulator, ex: ccxt.bitvavo, kind: str, error: type[Exception], code: int
) -> None:
    sim.set_profile({"faults": [{"kind": "exchange_error", "error": kind, "endpoints": ["order_book"]}]})
    with pytest.raises(error, match=f'"errorCode":{code}'):
        ex.fetch_order_book(SYMBOL)
    assert ex.fetch_ticker(SYMBOL)["last"] > 0  # other endpoints untouched


def test_throttle_faults_and_headers(sim: Simulator, ex: ccxt.bitvavo) -> None:
    ex.fetch_ticker(SYMBOL)
    headers = _headers(ex)
    assert headers["bitvavo-ratelimit-limit"] == "1000"
    assert 0 < int(headers["bitvavo-ratelimit-remaining"]) < 1000
    assert sim.now_ms() < int(headers["bitvavo-ratelimit-resetat"]) <= sim.now_ms() + 60_000
    sim.set_profile({"faults": [{"kind": "rate_limit_429", "endpoints": ["ticker"], "retry_after": 4}]})
    with pytest.raises(ccxt.RateLimitExceeded, match='"errorCode":103'):
        ex.fetch_ticker(SYMBOL)
    headers = _headers(ex)
    assert headers["bitvavo-ratelimit-remaining"] == "0"
    assert int(headers["bitvavo-ratelimit-allowat"]) - sim.now_ms() > 2_000
    sim.set_profile({"faults": [{"kind": "ban_418", "endpoints": ["ticker"], "retry_after": 60}]})
    with pytest.raises(ccxt.RateLimitExceeded, match='"errorCode":105'):
        ex.fetch_ticker(SYMBOL)


def test_enforced_weight_budget(sim: Simulator, ex: ccxt.bitvavo) -> None:
    sim.set_profile({"enforce_rate_limits": True})
    served = 0
    with pytest.raises(ccxt.RateLimitExceeded, match='"errorCode":103'):
        for _ in range(100):
            ex.public_get_ticker_24h()  # all markets: weight 25 of 1000 per minute
            served += 1
    assert served == (1000 - 2) // 25  # load_markets spent 1 (assets) + 1 (markets)


def test_unknown_path(ex: ccxt.bitvavo) -> None:
    with pytest.raises(ccxt.BadRequest, match='"errorCode":110'):
        ex.fetch2("nothing/here", ["public"], "GET", {})


# -- async ------------------------------------------------------------------------------------------
async def test_async_support_flow(sim: Simulator) -> None:
    ex = sim.attach(accxt.bitvavo({"enableRateLimit": False}))
    try:
        await ex.load_markets()
        ticker = await ex.fetch_ticker(SYMBOL)
        assert ticker["bid"] < ticker["ask"]
        rows = await ex.fetch_ohlcv(SYMBOL, "1h", limit=3)
        assert len(rows) == 3 and all(r[0] % 3_600_000 == 0 for r in rows)
        cid = str(uuid.uuid4())
        placed = await ex.create_order(
            SYMBOL, "limit", "sell", 0.001, round(ticker["ask"] * 1.5, 2), {"clientOrderId": cid}
        )
        order = await ex.fetch_order(None, SYMBOL, {"clientOrderId": cid})
        assert order["id"] == placed["id"] and order["status"] == "open"
        assert (await ex.fetch_balance())["BTC"]["used"] == pytest.approx(0.001)
        await ex.cancel_order(placed["id"], SYMBOL)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order(placed["id"], SYMBOL)
        sim.set_profile(
            {"faults": [{"kind": "exchange_error", "error": "rate_limit", "endpoints": ["balance"]}]}
        )
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_balance()
    finally:
        await ex.close()
