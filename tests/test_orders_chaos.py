"""Orders placed exactly once under chaos: zero duplicates, zero lost, on every exchange.

200 orders per exchange by default, which meets every fault kind of the profile dozens of times
(the test checks that each one was injected) in ~20 s an exchange; for a soak, set
``HARDENED_CHAOS_ORDERS=1000`` (or more): the same assertions, scaled, over ~2 minutes an exchange
(``HARDENED_CHAOS_ORDERS=1000 .venv/bin/python -m pytest tests/test_orders_chaos.py -o timeout=1200``).

The simulator's chaos profile drops connections after accepting orders, times out,
resets, answers 5xx and rate-limits order endpoints. A bot places orders from several threads,
half with its own client order id and half without, and cancels some of them. Afterwards the
simulator's own ledger is the judge: every client order id appears at most once, every order
the exchange holds is one the bot was told about (returned, or named by ``OrderStateUnknown``),
and every order returned to the bot exists.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from typing import Any

import ccxt
import pytest

from hardened import CircuitOpenError, HardenedClient, OrderStateUnknown
from hardened.orders import new_client_order_id
from hardened.sim import Simulator

ORDERS = int(os.environ.get("HARDENED_CHAOS_ORDERS", "200"))
THREADS = 3  # more threads only fight the in-process simulator for the GIL, and time out more
# The simulator's chaos_orders profile without its latency rule: the faults that make an order's
# fate unknown are all here, and the test runs in seconds rather than minutes.
CHAOS = {
    "name": "chaos_orders_fast",
    "faults": [
        {"kind": "accept_then_drop", "endpoints": ["create_order"], "probability": 0.15},
        {"kind": "timeout", "endpoints": ["create_order"], "probability": 0.05, "hold": 5},
        {"kind": "reset", "endpoints": ["create_order", "cancel_order"], "probability": 0.05},
        {
            "kind": "http_5xx",
            "endpoints": ["create_order", "cancel_order", "fetch_order"],
            "probability": 0.08,
            "status": [500, 502, 503, 504],
        },
        {"kind": "exchange_error", "endpoints": ["create_order"], "error": "rate_limit", "probability": 0.04},
    ],
}
SYMBOL = {"binance": "BTC/USDT", "kucoin": "BTC/USDT", "bitvavo": "BTC/EUR"}

# Refusals: the exchange said no, so nothing was placed; the bot may try that order again.
REFUSED = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.OnMaintenance, CircuitOpenError)


class Ledger:
    """What the bot was told, kept thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.returned: dict[str, str] = {}  # client order id -> exchange order id
        self.unknown: set[str] = set()
        self.refused = 0
        self.cancel_done = 0
        self.cancel_unknown = 0

    def add(self, field: str, value: Any = None) -> None:
        with self.lock:
            if field == "returned":
                cid, oid = value
                assert cid not in self.returned, f"client order id {cid} returned twice"
                self.returned[cid] = oid
            elif field == "unknown":
                self.unknown.add(value)
            else:
                setattr(self, field, getattr(self, field) + 1)


def place_one(
    ex: HardenedClient, symbol: str, price: float, amount: float, own_id: str | None, ledger: Ledger
) -> Any:
    """How a careful bot places one order: refusals are tried again, lost answers are the library's job."""
    params = {"clientOrderId": own_id} if own_id else {}
    for _ in range(20):
        try:
            order = ex.create_order(symbol, "limit", "buy", amount, price, params)
        except OrderStateUnknown as unknown:
            ledger.add("unknown", unknown.client_order_id)
            return None
        except REFUSED:
            ledger.add("refused")
            continue
        ledger.add("returned", (order["clientOrderId"], str(order["id"])))
        return order
    raise AssertionError("an order was refused 20 times in a row")


def cancel_one(ex: HardenedClient, order: Any, symbol: str, ledger: Ledger) -> None:
    for _ in range(20):
        try:
            ex.cancel_order(order["id"], symbol)
        except OrderStateUnknown:
            ledger.add("cancel_unknown")
            return
        except REFUSED:
            continue
        ledger.add("cancel_done")
        return
    raise AssertionError("a cancel was refused 20 times in a row")


@pytest.mark.parametrize("exchange_id", ["binance", "kucoin", "bitvavo"])
def test_orders_under_chaos_are_placed_exactly_once(exchange_id: str) -> None:
    with Simulator(exchange=exchange_id, seed=2024) as sim:
        raw = sim.attach(getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 200}))
        ex = HardenedClient(
            raw,
            failure_threshold=10_000,  # the breaker is not under test here: keep every order flowing
            failure_rate_threshold=1.0,
            minimum_calls=100_000,
            rate_limit_pacing=False,  # the simulator enforces no budget; 1,000 orders at 100/10 s is slow
            rate_limit_delay=0.0,
            order_lookup_lag_ms=50,
            initial_delay=0.01,
            jitter=0.0,
        )
        sim.set_profile("calm")
        ex.load_markets()
        symbol = SYMBOL[exchange_id]
        market = ex.market(symbol)
        price = float(ex.price_to_precision(symbol, ex.fetch_ticker(symbol)["bid"] * 0.5))
        min_cost = (market["limits"]["cost"] or {}).get("min") or 5.0
        amount = float(
            ex.amount_to_precision(
                symbol, max(min_cost * 1.2 / price, market["limits"]["amount"]["min"] or 0)
            )
        )
        sim.set_profile(CHAOS)
        ledger = Ledger()
        plan = list(range(ORDERS))
        plan_lock = threading.Lock()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while True:
                with plan_lock:
                    if not plan:
                        return
                    n = plan.pop()
                own_id = new_client_order_id(exchange_id) if n % 2 == 0 else None
                order = place_one(ex, symbol, price, amount, own_id, ledger)
                if order is not None and rng.random() < 0.15:
                    cancel_one(ex, order, symbol, ledger)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        assert not any(t.is_alive() for t in threads)
        sim.set_profile("calm")

        book = sim.orders(exchange_id, raw.apiKey)
        truth = sim.ground_truth_counts()["by_endpoint"][f"{exchange_id}:create_order"]
        ex.close()

    ids = Counter(o.client_order_id for o in book)
    duplicates = {cid: n for cid, n in ids.items() if n > 1}
    assert not duplicates, f"orders placed twice: {duplicates}"
    held = set(ids)
    told = set(ledger.returned) | ledger.unknown
    assert held <= told, f"orders the bot was never told about: {sorted(held - told)[:5]}"
    assert set(ledger.returned) <= held, "an order returned to the bot does not exist"
    by_cid = {o.client_order_id: o.id for o in book}
    assert all(by_cid[cid] == oid for cid, oid in ledger.returned.items())
    assert len(ledger.returned) + len(ledger.unknown & held) == len(book)
    # the storm really happened: every kind of fault was injected, answers were lost and recovered
    injected = truth["faults"]
    assert all(injected.get(rule["kind"], 0) > 0 for rule in CHAOS["faults"]), injected
    assert injected.get("accept_then_drop", 0) >= 0.05 * ORDERS
    assert len(ledger.returned) >= 0.97 * ORDERS  # few fates stay unknown, and those are reconciled above
    assert ledger.cancel_done + ledger.cancel_unknown > 0
