"""The events the alerts read that other code publishes: a rate-limit ban (once per ban, not once per
refused call) and an order whose state could not be learned."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from hardened import HardenedClient, OrderStateUnknown, RateLimitBackoff
from hardened.adapters import load_profile
from hardened.alerts.alert import AlertType, Level
from hardened.alerts.rules import AlertRules
from hardened.orders import OrderRecovery
from hardened.placement import Call, cancel_plan, create_plan
from hardened.sim import Simulator
from hardened.testing import capture_events


@pytest.mark.usefixtures("calm")
def test_a_ban_is_published_once_however_many_calls_it_refuses(sim: Simulator) -> None:
    ex = HardenedClient(
        sim.attach(ccxt.binance({"enableRateLimit": False})),
        cache_ttl=0.0,
        stale_if_error=0.0,
        initial_delay=0.01,
        jitter=0.0,
        max_delay=5.0,
        max_retries=2,
    )
    ex.load_markets()
    with capture_events(["rate_limit_ban"]) as events:
        sim.set_profile({"name": "ban", "faults": [{"kind": "ban_418", "retry_after": 120}]})
        with pytest.raises((ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            ex.fetch_ticker("BTC/USDT")
        sim.set_profile("calm")
        for _ in range(5):
            with pytest.raises(RateLimitBackoff):
                ex.fetch_ticker("BTC/USDT")
    assert len(events) == 1
    (event,) = events
    assert event["exchange"] == "binance" and event["endpoint"] == "ticker"
    assert event["banned"] is True and 60 < event["retry_in"] <= 121 and event["status"] == 418
    (alert,) = AlertRules().on_event(event, event["ts"])
    assert (alert.type, alert.level, alert.key) == (
        AlertType.RATE_LIMIT_BAN,
        Level.ERROR,
        "rate_limit_ban:binance",
    )


class _LostAnswers:
    """A ccxt-like exchange whose every answer is lost (timeouts): the order's fate is unknowable."""

    id = "binance"
    markets: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        def lost(*args: Any, **kwargs: Any) -> Any:
            raise ccxt.RequestTimeout(f"binance {name} timed out")

        return lost


def _drive(plan: Any) -> None:
    """Run an order plan to its end without sleeping through its waits."""
    outcome: Any = None
    while True:
        op = plan.send(outcome)
        if isinstance(op, Call):
            try:
                outcome = (op.fn(*op.args, **op.kwargs), None)
            except ccxt.BaseError as error:
                outcome = (None, error)
        else:
            outcome = None


def test_order_state_unknown_is_published_with_the_client_order_id() -> None:
    profile = load_profile("binance")
    plan = create_plan(
        _LostAnswers(),
        profile,
        OrderRecovery(profile, max_lookups=1, lag_ms=0),
        ("BTC/USDT", "limit", "buy", 0.01, 100.0),
        {},
    )
    with capture_events(["order_state_unknown"]) as events, pytest.raises(OrderStateUnknown) as caught:
        _drive(plan)
    (event,) = events
    assert event["client_order_id"] == caught.value.client_order_id
    assert event["operation"] == "create_order" and event["symbol"] == "BTC/USDT"
    (alert,) = AlertRules().on_event(event, event["ts"])
    assert alert.level is Level.CRITICAL and caught.value.client_order_id in alert.message


def test_a_cancel_whose_state_is_unknown_is_published_with_the_exchange_order_id() -> None:
    profile = load_profile("binance")
    plan = cancel_plan(
        _LostAnswers(),
        profile,
        OrderRecovery(profile, max_lookups=1, lag_ms=0),
        ("4000000007", "BTC/USDT"),
        {},
    )
    with capture_events(["order_state_unknown"]) as events, pytest.raises(OrderStateUnknown) as caught:
        _drive(plan)
    assert caught.value.order_id == "4000000007" and caught.value.client_order_id is None
    assert "client order id" not in str(caught.value)
    (event,) = events
    assert event["order_id"] == "4000000007" and event["client_order_id"] is None
    assert event["operation"] == "cancel_order"
    (alert,) = AlertRules().on_event(event, event["ts"])
    assert "4000000007" in alert.message and "client order id" not in alert.message
    assert alert.details["order_id"] == "4000000007"


@pytest.mark.usefixtures("calm")
def test_a_cancel_timing_out_reports_the_order_id_it_was_given(sim: Simulator) -> None:
    raw = sim.attach(ccxt.binance({"enableRateLimit": False, "timeout": 300}))
    ex = HardenedClient(raw, order_lookup_lag_ms=0, order_lookups=1, cache_ttl=0.0, stale_if_error=0.0)
    ex.load_markets()
    placed = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000)
    sim.set_profile(
        {
            "name": "lost",
            "faults": [{"kind": "timeout", "endpoints": ["cancel_order", "fetch_order"], "hold": 0.4}],
        }
    )
    with pytest.raises(OrderStateUnknown) as caught:
        ex.cancel_order(placed["id"], "BTC/USDT")
    sim.set_profile("calm")
    assert caught.value.order_id == str(placed["id"]) and caught.value.client_order_id is None
    assert "client order id" not in str(caught.value)
    ex.cancel_order(placed["id"], "BTC/USDT")
    ex.close()


@pytest.mark.usefixtures("calm")
def test_a_breaker_opening_in_a_real_client_reaches_a_channel(sim: Simulator) -> None:
    """End to end: the simulator fails, the client's breaker opens, the alert is delivered."""
    from hardened.alerts import AlertConfig, AlertDispatcher
    from hardened.alerts.channels import Channel

    class Keep(Channel):
        kind = "log"

        def __init__(self) -> None:
            super().__init__("keep")
            self.got: list[Any] = []

        def send(self, alert: Any) -> None:
            self.got.append(alert)

    keep = Keep()
    ex = HardenedClient(
        sim.attach(ccxt.kucoin({"enableRateLimit": False})),
        cache_ttl=0.0,
        stale_if_error=0.0,
        max_retries=0,
        failure_threshold=2,
        recovery_timeout=60.0,
    )
    ex.load_markets()
    with AlertDispatcher(AlertConfig(health_interval=0), channels=[keep]) as dispatcher:
        sim.set_profile(
            {"name": "down", "faults": [{"endpoints": ["ticker"], "kind": "http_5xx", "status": [503]}]}
        )
        for _ in range(3):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                ex.fetch_ticker("BTC/USDT")
        assert dispatcher.wait_idle(10)
    assert ex.breakers[f"{ex.id}_ticker"].state == "open"
    (alert,) = [a for a in keep.got if a.type == AlertType.BREAKER_OPENED]
    assert alert.key == "breaker_opened:kucoin_ticker" and alert.level is Level.ERROR
    ex.close()
