"""The exchange-neutral simulator core: seeded market data, the ledger, the server and its CLI."""

from __future__ import annotations

import gc
import threading
import time
import urllib.error
import urllib.request
import warnings
from decimal import Decimal
from itertools import pairwise
from typing import Any

import ccxt
import pytest

from hardened.sim import Dialect, Route, SimRequest, SimResponse, Simulator, VenueError, register_dialect
from hardened.sim.server import build_parser, main_argv
from hardened.sim.venue import DEFAULT_SYMBOLS, Venue
from hardened.sim.walk import LISTING_MS

NOW = 1_763_000_000_000  # a fixed instant (2025-11-13) so these tests do not depend on the clock
TIMEFRAMES = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
}


@pytest.fixture(scope="module")
def venue() -> Venue:
    return Venue("binance", seed=7)


def test_default_symbols_per_exchange() -> None:
    assert list(Venue("binance").markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
    assert list(Venue("kucoin").markets) == list(DEFAULT_SYMBOLS["kucoin"])
    assert list(Venue("bitvavo").markets) == ["BTC/EUR", "ETH/EUR", "SOL/EUR", "XRP/EUR"]
    with pytest.raises(VenueError) as err:
        Venue("binance").market("DOGE/USDT")
    assert err.value.kind == "unknown_symbol"


def test_same_seed_same_market_data() -> None:
    a, b, c = Venue("binance", seed=3), Venue("binance", seed=3), Venue("binance", seed=4)
    assert a.ticker("BTC/USDT", NOW) == b.ticker("BTC/USDT", NOW)
    assert a.candles("ETH/USDT", "5m", NOW, limit=50) == b.candles("ETH/USDT", "5m", NOW, limit=50)
    assert a.order_book("SOL/USDT", NOW, 20) == b.order_book("SOL/USDT", NOW, 20)
    assert a.trades("XRP/USDT", NOW, limit=30) == b.trades("XRP/USDT", NOW, limit=30)
    assert a.ticker("BTC/USDT", NOW).last != c.ticker("BTC/USDT", NOW).last
    # the order of queries does not matter: each day of the path has its own seed
    later_first = Venue("binance", seed=3)
    later_first.candles("ETH/USDT", "1d", NOW, limit=300)
    assert later_first.candles("ETH/USDT", "5m", NOW, limit=50) == a.candles("ETH/USDT", "5m", NOW, limit=50)


@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
def test_candles_are_aligned_contiguous_and_sane(venue: Venue, timeframe: str) -> None:
    step = TIMEFRAMES[timeframe]
    candles = venue.candles("BTC/USDT", timeframe, NOW, limit=30)
    assert len(candles) == 30
    assert all(c.ts % step == 0 for c in candles)
    assert [b.ts - a.ts for a, b in pairwise(candles)] == [step] * 29
    assert candles[-1].ts <= NOW < candles[-1].ts + step
    for c in candles:
        assert 0 < c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.close_ts == c.ts + step - 1 and c.volume >= 0
    for a, b in pairwise(candles):
        assert b.open == a.close  # one continuous path


def test_weeks_and_months_follow_the_calendar(venue: Venue) -> None:
    weeks = venue.candles("BTC/USDT", "1w", NOW, limit=5)
    assert all(time.gmtime(c.ts / 1000).tm_wday == 0 for c in weeks)
    months = venue.candles("BTC/USDT", "1M", NOW, limit=14)
    assert all(time.gmtime(c.ts / 1000).tm_mday == 1 for c in months)
    assert len({time.gmtime(c.ts / 1000).tm_mon for c in months}) == 12


def test_candles_honour_since_until_and_limit(venue: Venue) -> None:
    hour = 3_600_000
    start = NOW // hour * hour - 10 * hour
    assert [c.ts for c in venue.candles("BTC/USDT", "1h", NOW, since_ms=start, limit=3)] == [
        start,
        start + hour,
        start + 2 * hour,
    ]
    assert venue.candles("BTC/USDT", "1h", NOW, since_ms=start + 1, limit=1)[0].ts == start + hour
    until = venue.candles("BTC/USDT", "1h", NOW, until_ms=start + 1, limit=4)
    assert [c.ts for c in until] == [start - 3 * hour, start - 2 * hour, start - hour, start]
    assert venue.candles("BTC/USDT", "1h", NOW, since_ms=NOW + hour) == []  # no future candles
    first = venue.candles("BTC/USDT", "1d", NOW, since_ms=0, limit=2)
    assert first[0].ts == LISTING_MS  # nothing before the listing


def test_higher_timeframes_aggregate_lower_ones(venue: Venue) -> None:
    day = venue.candles("SOL/USDT", "1d", NOW, limit=2)[0]
    hours = venue.candles("SOL/USDT", "1h", NOW, since_ms=day.ts, limit=24)
    assert hours[0].open == day.open and hours[-1].close == day.close
    assert max(h.high for h in hours) == day.high and min(h.low for h in hours) == day.low
    assert sum(h.volume for h in hours) == pytest.approx(day.volume, rel=1e-6)


def test_tickers_books_and_trades_are_consistent(venue: Venue) -> None:
    for symbol in venue.markets:
        for offset in range(0, 3_600_000, 97_000):
            now = NOW + offset
            t = venue.ticker(symbol, now)
            assert t.bid < t.ask and t.bid <= t.last <= t.ask and t.low <= t.last <= t.high
            book = venue.order_book(symbol, now, 10)
            assert book.bids[0][0] == t.bid and book.asks[0][0] == t.ask
    deep = venue.order_book("BTC/USDT", NOW, 200)
    assert deep.bids[:5] == venue.order_book("BTC/USDT", NOW, 5).bids  # depth does not reshuffle levels
    assert all(a[0] > b[0] for a, b in pairwise(deep.bids))
    assert all(a[0] < b[0] for a, b in pairwise(deep.asks))
    trades = venue.trades("BTC/USDT", NOW, limit=100)
    assert len(trades) == 100 and trades[-1].ts <= NOW
    assert [t.ts for t in trades] == sorted(t.ts for t in trades)
    assert len({t.id for t in trades}) == 100
    since = venue.trades("BTC/USDT", NOW, since_ms=NOW - 60_000, limit=5)
    assert len(since) == 5 and all(t.ts >= NOW - 60_000 for t in since)
    from_id = venue.trades("BTC/USDT", NOW, from_id=trades[10].id, limit=3)
    assert [t.id for t in from_id] == [t.id for t in trades[10:13]]


def _fresh(scope: str = "open") -> Venue:
    v = Venue("binance", seed=1, client_order_id_scope=scope)  # type: ignore[arg-type]
    v.add_account("k", "s")
    return v


@pytest.mark.parametrize("start", [{"since_ms": 0}, {"since_ms": LISTING_MS - 86_400_000}, {"from_id": 0}])
def test_no_trades_before_the_listing(venue: Venue, start: dict[str, int]) -> None:
    """fetch_trades(since=0) answered trades from 1970, years before the first candle (the listing)."""
    trades = venue.trades("BTC/USDT", NOW, limit=5, **start)
    assert len(trades) == 5 and trades[0].ts >= LISTING_MS
    assert venue.candles("BTC/USDT", "1d", NOW, since_ms=0, limit=1)[0].ts == LISTING_MS


def test_limit_order_rests_then_fills_when_the_market_crosses() -> None:
    v = _fresh()
    bid, _ask, _ = v._quote("BTC/USDT", NOW)
    price = Decimal(str(round(bid * 0.998, 2)))
    order = v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.1", price=price)
    assert order.status == "open" and v.balances("k", NOW)["USDT"].locked == price * Decimal("0.1")
    later = next(
        t
        for t in range(NOW, NOW + 30 * 86_400_000, 60_000)
        if v.candles("BTC/USDT", "1m", t, limit=1)[0].low < float(price)
    )
    filled = v.get_order("k", later + 60_000, order_id=order.id)
    assert filled.status == "closed" and filled.fills[0].maker and filled.fills[0].price == price
    balances = v.balances("k", later + 60_000)
    assert balances["USDT"].locked == 0
    assert balances["USDT"].free == Decimal("100000") - price * Decimal("0.1")
    assert balances["BTC"].free == Decimal("2") + Decimal("0.1") - Decimal("0.0001")


def test_ledger_refusals() -> None:
    v = _fresh()
    with pytest.raises(VenueError, match="insufficient_funds"):
        v.create_order("k", "BTC/USDT", "buy", "market", NOW, amount="50")
    with pytest.raises(VenueError, match="invalid_quantity"):
        v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.000001", price="100")
    with pytest.raises(VenueError, match="invalid_price"):
        v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.01", price="100.001")
    with pytest.raises(VenueError, match="min_notional"):
        v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.00001", price="100")
    with pytest.raises(VenueError, match="missing_parameter"):
        v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.01")
    with pytest.raises(VenueError, match="order_not_found"):
        v.get_order("k", NOW, order_id="nope")
    _bid, ask, _ = v._quote("BTC/USDT", NOW)
    with pytest.raises(VenueError, match="post_only_would_take"):
        v.create_order("k", "BTC/USDT", "buy", "limit", NOW, amount="0.01", price=str(ask), post_only=True)
    filled = v.create_order("k", "BTC/USDT", "buy", "market", NOW, amount="0.01")
    with pytest.raises(VenueError, match="order_not_open"):
        v.cancel_order("k", NOW, order_id=filled.id)
    assert [o.id for o in v.orders("k")] == [filled.id]  # refused orders leave no trace


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-inf", "sNaN"])
def test_a_non_finite_amount_or_price_is_refused_as_an_invalid_order(amount: str) -> None:
    """NaN parsed as a Decimal and then raised InvalidOperation in a comparison: a 500 from the
    simulator (ExchangeNotAvailable, which clients retry) instead of the exchange's refusal."""
    v = _fresh()
    with pytest.raises(VenueError, match="invalid_order"):
        v.create_order("k", "ETH/USDT", "buy", "limit", NOW, amount=amount, price="100")
    with pytest.raises(VenueError, match="invalid_order"):
        v.create_order("k", "ETH/USDT", "buy", "limit", NOW, amount="1", price=amount)
    assert v.orders("k") == []


def test_a_nan_quantity_gets_each_exchanges_parameter_error_over_http() -> None:
    with Simulator(exchanges=["binance", "kucoin", "bitvavo"]) as sim:
        binance = sim.attach(ccxt.binance({"enableRateLimit": False}))
        binance.load_markets()
        order = {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "100"}
        with pytest.raises(ccxt.BadRequest, match="-1100"):
            binance.privatePostOrder({**order, "quantity": "NaN"})
        kucoin = sim.attach(ccxt.kucoin({"enableRateLimit": False}))
        with pytest.raises(ccxt.BadRequest, match="400100"):
            kucoin.privatePostOrders(
                {
                    "clientOid": "nan-1",
                    "symbol": "ETH-USDT",
                    "side": "buy",
                    "type": "limit",
                    "size": "NaN",
                    "price": "1",
                }
            )
        bitvavo = sim.attach(ccxt.bitvavo({"enableRateLimit": False}))
        with pytest.raises(ccxt.InvalidOrder, match="amount parameter is invalid"):
            bitvavo.privatePostOrder(
                {
                    "market": "ETH-EUR",
                    "side": "buy",
                    "orderType": "limit",
                    "amount": "NaN",
                    "price": "1",
                    "operatorId": 1,
                }
            )
        assert not [r for r in sim.ground_truth() if r["status"] == 500]


@pytest.mark.parametrize(("scope", "reuse_after_cancel"), [("open", True), ("all", False)])
def test_client_order_id_scope(scope: str, reuse_after_cancel: bool) -> None:
    v = _fresh(scope)
    first = v.create_order(
        "k", "ETH/USDT", "buy", "limit", NOW, amount="1", price="100", client_order_id="c1"
    )
    with pytest.raises(VenueError, match="duplicate_client_order_id"):
        v.create_order("k", "ETH/USDT", "buy", "limit", NOW, amount="1", price="100", client_order_id="c1")
    v.cancel_order("k", NOW, client_order_id="c1")
    if reuse_after_cancel:
        again = v.create_order(
            "k", "ETH/USDT", "buy", "limit", NOW, amount="1", price="100", client_order_id="c1"
        )
        assert v.get_order("k", NOW, client_order_id="c1").id == again.id != first.id
    else:
        with pytest.raises(VenueError, match="duplicate_client_order_id"):
            v.create_order(
                "k", "ETH/USDT", "buy", "limit", NOW, amount="1", price="100", client_order_id="c1"
            )


def test_ledger_is_thread_safe() -> None:
    v = _fresh()
    errors: list[BaseException] = []

    def trade(n: int) -> None:
        try:
            for i in range(25):
                v.create_order(
                    "k", "XRP/USDT", "buy", "market", NOW, amount="10", client_order_id=f"t{n}-{i}"
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=trade, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    orders = v.orders("k")
    assert len(orders) == 200 and len({o.id for o in orders}) == 200
    spent = sum((o.cost for o in orders), Decimal(0))
    balances = v.balances("k", NOW)
    assert balances["USDT"].free == Decimal("100000") - spent
    assert balances["XRP"].free == Decimal("50000") + sum((o.filled - o.fee for o in orders), Decimal(0))


# -- the server -----------------------------------------------------------------------------------
@register_dialect
class EchoDialect(Dialect):
    """A minimal second exchange, to check that one server hosts several."""

    exchange_id = "echo"

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/ticker/{market}", "ticker", self.ticker),
            Route("GET", "/v1/boom", "time", self.boom),
        ]

    def api_urls(self, base: str) -> dict[str, str]:
        return {"public": base + "/v1"}

    def ticker(self, req: SimRequest) -> Any:
        symbol = req.path_params["market"].replace("-", "/")
        t = req.apply_bad_data(self.venue.ticker(symbol, req.now_ms))
        return {"symbol": symbol, "last": t.last}

    def boom(self, req: SimRequest) -> Any:
        raise RuntimeError("a dialect bug")

    def venue_error(self, error: VenueError, req: SimRequest) -> SimResponse:
        return SimResponse(404, {"error": error.kind})


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_one_server_hosts_several_exchanges() -> None:
    with Simulator(exchanges=["binance", "echo"], seed=2) as sim:
        assert sim.exchanges == ["binance", "echo"]
        status, body = _get(f"{sim.exchange_url('echo')}/v1/ticker/BTC-USDT")
        assert status == 200 and b'"symbol":"BTC/USDT"' in body
        assert _get(f"{sim.exchange_url('echo')}/v1/ticker/DOGE-USDT")[0] == 404
        assert _get(f"{sim.exchange_url('binance')}/api/v3/time")[0] == 200
        status, body = _get(f"{sim.exchange_url('echo')}/v1/boom")  # a dialect bug is a plain 500
        assert status == 500 and b"a dialect bug" in body
        assert sim.ground_truth()[-1]["fault_kind"] is None
        assert _get(f"{sim.url}/nowhere/api")[0] == 404
        assert _get(f"{sim.exchange_url('binance')}/fapi/v1/ticker")[0] == 404
        assert sim.ground_truth()[-1]["endpoint"] == "unknown"
        ex = sim.attach(ccxt.binance())
        assert ex.fetch_time() > 0
        with pytest.raises(ValueError, match="several exchanges"):
            sim.venue()
        assert sim.venue("echo").exchange == "echo"
        with pytest.raises(ValueError, match="not served"):
            sim.attach(ccxt.kraken())


def test_lifecycle_and_clock() -> None:
    sim = Simulator(exchange="binance", clock_offset_ms=-5_000)
    with pytest.raises(RuntimeError):
        _ = sim.url
    sim.start()
    try:
        assert sim.start() is sim and sim.running
        assert sim.url.startswith("http://127.0.0.1:") and sim.port > 0
        assert sim.now_ms() == pytest.approx(time.time() * 1000 - 5_000, abs=1_000)
        assert sim.attach(ccxt.binance()).fetch_time() == pytest.approx(time.time() * 1000 - 5_000, abs=2_000)
    finally:
        sim.stop()
    assert not sim.running
    sim.stop()  # idempotent
    with pytest.raises(ValueError, match="no dialect"):
        Simulator(exchanges=["no-such-exchange"])


def test_a_port_already_taken_fails_to_start_without_leaking_the_event_loop() -> None:
    """The failed start left its event loop (and the aiohttp runner) open: fds and a ResourceWarning."""
    with Simulator(exchange="binance") as busy:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(5):
                sim = Simulator(exchange="binance", port=busy.port)
                with pytest.raises(OSError):
                    sim.start()
                assert not sim.running
                del sim
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": {"binance": ["DOGE/USDT"]}}, r"cannot simulate 'DOGE/USDT'.*BTC, ETH, SOL, XRP"),
        ({"symbols": {"binance": ["BTCUSDT"]}}, r"'BTCUSDT' is not a unified symbol like 'BTC/USDT'"),
        ({"symbols": {"binance": "BTC/USDT"}}, r"list of unified symbols.*not the string 'BTC/USDT'"),
        ({"symbols": {"binance": []}}, r"symbols for 'binance': list at least one market"),
        ({"symbols": {"kucoin": ["BTC/USDT"]}}, r"symbols given for 'kucoin', not served.*serving: binance"),
        ({"profile": 123}, r"fault profile is a built-in name, a file path, a dict or a Profile, not int"),
        ({"port": 70000}, r"port must be a whole number from 0 to 65535.*70000"),
        ({"port": "http"}, r"port must be a whole number, not 'http'"),
        ({"seed": "x"}, r"seed must be a whole number, not 'x'"),
        ({"ground_truth_size": -1}, r"ground_truth_size must be a whole number >= 0, not -1"),
    ],
)
def test_bad_simulator_arguments_fail_naming_the_argument(kwargs: dict[str, Any], message: str) -> None:
    """These failed with KeyError 'DOGE', 'not enough values to unpack', a TypeError from Path or an
    OverflowError at start(), none of which said which argument was wrong."""
    with pytest.raises(ValueError, match=message):
        Simulator(exchange="binance", **kwargs)


def test_good_simulator_arguments_still_accepted() -> None:
    sim = Simulator(exchange="binance", symbols={"binance": ["ETH/EUR"]}, port="0", seed=3)
    assert list(sim.venue().markets) == ["ETH/EUR"] and sim.port == 0 and sim.seed == 3


def test_cli_arguments() -> None:
    args = build_parser().parse_args(["--exchange", "binance,kucoin", "--port", "9100", "--profile", "storm"])
    assert (args.exchanges, args.port, args.profile, args.seed) == (["binance,kucoin"], 9100, "storm", None)
    assert main_argv(["--profile", "no-such-profile", "--port", "0"]) == 2


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_bad_port_is_refused_naming_the_option(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--port 99999`` ended in an OverflowError traceback."""
    with pytest.raises(SystemExit) as caught:
        main_argv(["--port", port])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "argument --port:" in error and "Traceback" not in error
