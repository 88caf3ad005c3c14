"""The exchange profiles at work against the simulator, per exchange: client order ids, clock skew,
bans and rate-limit budgets read from the answers' headers, careful cancels."""

from __future__ import annotations

import time
from typing import Any

import ccxt
import pytest

from hardened import HardenedClient, RateLimitBackoff
from hardened.adapters import load_profile
from hardened.sim import Simulator

EXCHANGES = ("binance", "kucoin", "bitvavo")
SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}
QUIET = {"cache_ttl": 0.0, "stale_if_error": 0.0, "initial_delay": 0.01, "jitter": 0.0}


pytestmark = pytest.mark.usefixtures("calm")  # `sim` and `calm` come from conftest.py


def client(sim: Simulator, exchange_id: str, **settings: Any) -> HardenedClient:
    ex = HardenedClient(
        sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False})), **{**QUIET, **settings}
    )
    ex.load_markets()
    return ex


def requests_since(sim: Simulator, exchange_id: str, endpoint: str, since: float) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.ground_truth()
        if r["exchange"] == exchange_id and r["endpoint"] == endpoint and r["ts"] > since
    ]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_every_order_carries_a_client_order_id_in_the_exchange_format(
    sim: Simulator, exchange_id: str
) -> None:
    ex = client(sim, exchange_id)
    symbol = SYMBOL[exchange_id]
    price = float(ex.price_to_precision(symbol, ex.fetch_ticker(symbol)["bid"] * 0.5))
    order = ex.create_order(symbol, "limit", "buy", 0.01, price)
    held = [o for o in sim.orders(exchange_id) if o.id == str(order["id"])]
    assert len(held) == 1
    cid = held[0].client_order_id
    assert cid and order["clientOrderId"] == cid
    assert load_profile(exchange_id).client_order_id.pattern.fullmatch(cid)
    ex.cancel_order(order["id"], symbol)


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_bad_caller_client_order_id_is_refused_before_sending(sim: Simulator, exchange_id: str) -> None:
    ex = client(sim, exchange_id)
    sim.clear_ground_truth()
    with pytest.raises(ccxt.InvalidOrder, match="client"):
        ex.create_order(
            SYMBOL[exchange_id], "limit", "buy", 0.01, 1000.0, {"clientOrderId": "bad id with spaces!" * 3}
        )
    assert not [r for r in sim.ground_truth() if r["endpoint"] == "create_order"]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_clock_skew_is_fixed_the_way_the_exchange_needs(sim: Simulator, exchange_id: str) -> None:
    sim.clock_offset_ms = 20_000  # the exchange's clock runs 20 s ahead of ours
    raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
    with pytest.raises(ccxt.BaseError):  # raw ccxt fails (InvalidNonce, AuthenticationError on Bitvavo)
        raw.load_markets()  # KuCoin signs a request while loading markets
        raw.fetch_balance()
    ex = client(sim, exchange_id)
    assert ex.fetch_balance()["total"]
    clock = load_profile(exchange_id).clock
    if clock.resync == "widen_window":
        assert ex.options[clock.window_option] == clock.max_window_ms
    else:
        assert abs(ex.options["timeDifference"] + 20_000) < 5_000


def _skewed_after_markets(sim: Simulator, exchange_id: str, offset_ms: int) -> HardenedClient:
    """A client whose markets are loaded, then the exchange's clock steps ``offset_ms`` away."""
    ex = client(sim, exchange_id)
    ex.fetch_ticker(SYMBOL[exchange_id])  # whatever else the first call needs, before the skew
    sim.clock_offset_ms = offset_ms
    return ex


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_an_order_refused_for_its_timestamp_is_resynced_and_placed_once(
    sim: Simulator, exchange_id: str
) -> None:
    # Orders are never retried by the pipeline: without the plan's own resync every order failed
    # (InvalidNonce) until some other call happened to resync the clock.
    symbol = SYMBOL[exchange_id]
    ex = _skewed_after_markets(sim, exchange_id, -30_000)
    before = len(sim.orders(exchange_id))
    order = ex.create_order(symbol, "limit", "buy", 0.01, 1000.0)
    placed = sim.orders(exchange_id)[before:]
    assert [o.id for o in placed] == [str(order["id"])]  # placed, and exactly once
    assert order["clientOrderId"] == placed[0].client_order_id
    assert ex.create_order(symbol, "limit", "buy", 0.01, 1000.0)["id"]  # the clock stays fixed
    assert len(sim.orders(exchange_id)) == before + 2


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_cancel_refused_for_its_timestamp_is_resynced_and_done(sim: Simulator, exchange_id: str) -> None:
    symbol = SYMBOL[exchange_id]
    ex = client(sim, exchange_id)
    order = ex.create_order(symbol, "limit", "buy", 0.01, 1000.0)
    sim.clock_offset_ms = -30_000
    ex.cancel_order(order["id"], symbol)
    assert [o.status for o in sim.orders(exchange_id) if o.id == str(order["id"])] == ["canceled"]


def test_a_skew_on_an_endpoint_without_retries_resyncs_the_next_call(sim: Simulator) -> None:
    ex = client(sim, "binance", max_retries=0)
    ex.fetch_ticker("BTC/USDT")
    sim.clock_offset_ms = -30_000  # the exchange's clock now runs 30 s behind ours
    with pytest.raises(ccxt.InvalidNonce):
        ex.fetch_balance()  # max_retries=0: refused, and not retried
    assert ex.fetch_balance()["total"]  # the next call resynced first
    assert abs(ex.options["timeDifference"] - 30_000) < 5_000


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_ban_stops_the_client_until_it_ends(sim: Simulator, exchange_id: str) -> None:
    ex = client(sim, exchange_id, max_delay=5.0, max_retries=2)
    symbol = SYMBOL[exchange_id]
    sim.set_profile({"name": "ban", "faults": [{"kind": "ban_418", "retry_after": 120}]})
    with pytest.raises((ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        ex.fetch_ticker(symbol)  # the ban answer itself
    sim.set_profile("calm")  # even once the exchange answers again, the announced ban is honoured
    sent = len(sim.ground_truth())
    for call in (lambda: ex.fetch_ticker(symbol), lambda: ex.fetch_order_book(symbol), ex.fetch_balance):
        with pytest.raises(RateLimitBackoff) as info:
            call()
        assert info.value.banned and info.value.retry_in > 60
        assert isinstance(info.value, ccxt.RateLimitExceeded)
    assert len(sim.ground_truth()) == sent  # nothing was sent during the ban


def test_a_ban_end_stamped_by_the_exchanges_clock_is_read_with_its_offset(sim: Simulator) -> None:
    """Binance's 418 says "banned until <its epoch ms>": once ccxt has measured the exchange's
    clock 30 s ahead of ours, a 5 s ban holds the client 5 s, not 35."""
    ex = client(sim, "binance", max_retries=0)
    sim.clock_offset_ms = 30_000
    ex.inner.load_time_difference()
    sim.set_profile({"name": "ban", "faults": [{"kind": "ban_418", "retry_after": 5}]})
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_ticker("BTC/USDT")
    assert ex._hd.rate_limits.banned_until - time.time() == pytest.approx(5.0, abs=1.5)


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_the_client_slows_itself_before_the_exchange_says_429(exchange_id: str) -> None:
    symbol = SYMBOL[exchange_id]
    budget_headers = {h.name.lower() for h in load_profile(exchange_id).rate_limit.headers}
    with Simulator(exchange=exchange_id, seed=3) as sim:  # its own: the budget is per simulator
        hog = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False}))
        ex = client(sim, exchange_id, max_delay=0.5, max_retries=0)
        hog.load_markets()
        sim.set_profile({"name": "enforced", "enforce_rate_limits": True})
        # Another bot on the same IP and key burns the budget until the exchange refuses it, with
        # the heaviest public call (every ticker: weight 80 / 15 / 25), so it takes ~150 requests
        # and not thousands: on a loaded machine thousands outlast KuCoin's 30 s window.
        refused = False
        for _ in range(1000):
            try:
                hog.fetch_tickers()
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
                refused = True
                break
        assert refused, "the simulator never enforced its budget"
        assert budget_headers & {k.lower() for k in (hog.last_response_headers or {})}
        start = sim.ground_truth()[-1]["ts"]
        outcomes = []
        for _ in range(5):
            try:
                ex.fetch_order_book(symbol)
                outcomes.append("ok")
            except RateLimitBackoff:
                outcomes.append("held back")
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
                outcomes.append("refused")
        sent = requests_since(sim, exchange_id, "order_book", start)
    # The first call learns the spent budget from the exchange's answer (or its refusal); after
    # that the client holds itself back until the window resets instead of collecting refusals
    # that lead to a ban (KuCoin's windows are short: its calls may go through again at once).
    assert outcomes.count("refused") <= 1, outcomes
    assert "refused" not in outcomes[1:], outcomes
    assert len(sent) == 1 + outcomes[1:].count("ok")  # held-back calls sent nothing
    if exchange_id != "kucoin":
        assert outcomes[1:] == ["held back"] * 4, outcomes  # minute windows: still spent


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_cancel_whose_answer_is_lost_is_confirmed_by_lookup(sim: Simulator, exchange_id: str) -> None:
    ex = client(sim, exchange_id, order_lookup_lag_ms=0)
    symbol = SYMBOL[exchange_id]
    price = float(ex.price_to_precision(symbol, ex.fetch_ticker(symbol)["bid"] * 0.5))
    order = ex.create_order(symbol, "limit", "buy", 0.01, price)
    sim.set_profile({"name": "drop", "faults": [{"kind": "accept_then_drop", "endpoints": ["cancel_order"]}]})
    result = ex.cancel_order(order["id"], symbol)  # the cancel happened, its answer was lost
    sim.set_profile("calm")
    assert result["status"] in ("canceled", "cancelled", "closed")
    held = [o for o in sim.orders(exchange_id) if o.id == str(order["id"])]
    assert held[0].status == "canceled"


class _Sent(Exception):
    """Raised by the recording ``fetch2``: the request ccxt built is known, nothing is sent."""


_UNIFIED_CALLS: dict[str, Any] = {
    "ticker": lambda ex, symbol: ex.fetch_ticker(symbol),
    "tickers": lambda ex, symbol: ex.fetch_tickers(),
    "ohlcv": lambda ex, symbol: ex.fetch_ohlcv(symbol, "1m"),
    "order_book": lambda ex, symbol: ex.fetch_order_book(symbol),
    "trades": lambda ex, symbol: ex.fetch_trades(symbol),
    "time": lambda ex, symbol: ex.fetch_time(),
    "balance": lambda ex, symbol: ex.fetch_balance(),
    "open_orders": lambda ex, symbol: ex.fetch_open_orders(symbol),
    "closed_orders": lambda ex, symbol: ex.fetch_closed_orders(symbol),
    "orders": lambda ex, symbol: ex.fetch_orders(symbol),
    "my_trades": lambda ex, symbol: ex.fetch_my_trades(symbol),
}
_PRIVATE = frozenset({"balance", "open_orders", "closed_orders", "orders", "my_trades"})


def _weighed_calls() -> list[Any]:
    """Every (exchange, endpoint) of ``_UNIFIED_CALLS``; KuCoin's book without a limit is a known gap."""
    known_gap = pytest.mark.xfail(
        strict=True,
        reason="ccxt asks KuCoin's full book (Spot pool, weight 3) when authenticated and level2_100 "
        "(Public, 4) when not: one weight and pool per endpoint cannot say both",
    )
    return [
        pytest.param(e, endpoint, marks=known_gap)
        if (e, endpoint) == ("kucoin", "order_book")
        else (e, endpoint)
        for e in EXCHANGES
        for endpoint in sorted(_UNIFIED_CALLS)
    ]


@pytest.mark.parametrize(("exchange_id", "endpoint"), _weighed_calls())
def test_each_weight_is_that_of_the_request_ccxt_really_sends(
    sim: Simulator, exchange_id: str, endpoint: str
) -> None:
    """The profile's ``ccxt_api`` (whose cost the weight is checked against) is the API entry the
    unified method calls by default: a weight checked against another entry paces the wrong budget."""
    credentials = {"apiKey": "key", "secret": "secret", "password": "pass"} if endpoint in _PRIVATE else {}
    ex = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, **credentials}))
    ex.load_markets()
    sent: list[str] = []

    def fetch2(path: str, api: Any = "public", method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{api if isinstance(api, str) else ' '.join(api)} {method} {path}")
        raise _Sent

    ex.fetch2 = fetch2
    if not ex.has.get("fetch" + "".join(part.title() for part in endpoint.split("_")), True):
        pytest.skip(f"ccxt's {exchange_id} has no such method: nothing is sent")
    with pytest.raises(_Sent):
        _UNIFIED_CALLS[endpoint](ex, SYMBOL[exchange_id])
    recorded = load_profile(exchange_id).rate_limit.endpoints[endpoint].ccxt_api
    assert recorded is not None
    assert sent[0] == " ".join(recorded.split()[:3])
