"""Alert decisions with a fake clock: rules, cooldowns, per-level rate limits, summaries, escalation.

Nothing here sleeps or touches the network: the dispatcher runs unthreaded and the test calls
``step()`` after moving the clock; channels record what they are given.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hardened.alerts import Alert, AlertConfig, AlertDispatcher, AlertType, Level
from hardened.alerts.channels import Channel, DeliveryError
from hardened.alerts.escalation import EscalationPolicy, EscalationRule, PendingEscalations
from hardened.alerts.rules import AlertRules, ErrorRateRule
from hardened.alerts.throttle import RateLimit, Throttle, Verdict
from hardened.telemetry.events import EventBus


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder(Channel):
    """A channel of any kind that keeps what it is sent (and can be told to fail or block)."""

    def __init__(self, kind: str, name: str | None = None, fail: bool = False) -> None:
        self.kind = kind
        super().__init__(name)
        self.got: list[Alert] = []
        self.fail = fail
        self.gate: threading.Event | None = None

    def send(self, alert: Alert) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise DeliveryError(f"{self.name}: HTTP 500")
        self.got.append(alert)


def opened(breaker: str = "binance_ticker") -> dict[str, Any]:
    exchange, endpoint = breaker.split("_", 1)
    return {
        "kind": "breaker_transition",
        "exchange": exchange,
        "endpoint": endpoint,
        "breaker": breaker,
        "old": "closed",
        "new": "open",
    }


def closed(breaker: str = "binance_ticker") -> dict[str, Any]:
    return {**opened(breaker), "old": "half_open", "new": "closed"}


def make(
    clock: Clock, kinds: tuple[str, ...] = ("log", "telegram"), **settings: Any
) -> tuple[AlertDispatcher, dict[str, Recorder], EventBus]:
    channels = {kind: Recorder(kind) for kind in kinds}
    bus = EventBus()
    settings.setdefault("health_interval", 0)
    dispatcher = AlertDispatcher(
        AlertConfig(**settings),
        channels=list(channels.values()),
        clock=clock,
        event_bus=bus,
        threaded=False,
        sleep=lambda _s: None,
    )
    return dispatcher.start(), channels, bus


UNLIMITED = {"critical": None, "error": None, "warning": None}


def test_configured_rate_limits_keep_the_defaults_of_levels_left_out() -> None:
    config = AlertConfig(rate_limits={"error": {"count": 3, "window_s": 60}, "warning": None})
    assert config.rate_limit_rules() == {Level.CRITICAL: RateLimit(5, 300.0), Level.ERROR: RateLimit(3, 60.0)}
    assert AlertConfig().rate_limit_rules() == {
        Level.CRITICAL: RateLimit(5, 300.0),
        Level.ERROR: RateLimit(10, 900.0),
        Level.WARNING: RateLimit(20, 3600.0),
    }


# -- the throttle ---------------------------------------------------------------------------------------


def test_a_thousand_breaker_opens_are_one_delivery_and_one_summary() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(clock, kinds=("log",))
    published: list[dict[str, Any]] = []
    bus.subscribe(lambda e: published.append(e) if e["kind"] == "alert" else None)
    for _ in range(1000):
        bus.publish(**opened())
        dispatcher.flush()  # the dispatcher thread keeps up: each event is decided at its time
        clock.advance(0.1)  # 100 s in all: inside the 300 s cooldown
    log = channels["log"].got
    assert [a.type for a in log] == [AlertType.BREAKER_OPENED]
    assert dispatcher.counters["suppressed"] == 999
    assert channels["log"].got[0].key == "breaker_opened:binance_ticker"

    clock.advance(199.0)  # 299 s after the first: still inside the cooldown window
    dispatcher.flush()
    assert len(log) == 1
    clock.advance(2.0)  # 301 s: the window has ended, one summary of the 999 held back
    dispatcher.flush()
    assert [a.type for a in log] == [AlertType.BREAKER_OPENED, AlertType.SUPPRESSED_SUMMARY]
    summary = log[1]
    assert summary.details["suppressed"] == 999
    assert summary.details["groups"][0]["key"] == "breaker_opened:binance_ticker"
    assert summary.level is Level.ERROR
    assert "999 x breaker_opened" in summary.message
    clock.advance(1000.0)
    dispatcher.flush()
    assert len(log) == 2  # nothing else held back: no second summary
    assert [e["type"] for e in published] == ["breaker_opened", "suppressed_summary"]
    stats = dispatcher.stats()
    assert stats["channels"]["log"]["sent"] == 2
    assert stats["channels"]["log"]["suppressed"] == 999


@pytest.mark.parametrize(
    ("level", "count", "window"),
    [(Level.CRITICAL, 5, 300.0), (Level.ERROR, 10, 900.0), (Level.WARNING, 20, 3600.0)],
)
def test_per_level_rate_limits_are_the_seed_plans(level: Level, count: int, window: float) -> None:
    throttle = Throttle(cooldown_s=300.0)  # default limits
    t0 = 1000.0

    def alert(i: int, at: float) -> Alert:
        return Alert(level, AlertType.CUSTOM, f"key-{i}", "x", ts=at)

    verdicts = [throttle.admit(alert(i, t0 + i), t0 + i) for i in range(count + 1)]
    assert verdicts[:count] == [Verdict.SEND] * count
    assert verdicts[count] is Verdict.RATE_LIMITED
    # The first one leaves the window exactly ``window`` seconds after it was sent.
    assert throttle.admit(alert(100, t0 + window - 0.001), t0 + window - 0.001) is Verdict.RATE_LIMITED
    assert throttle.admit(alert(101, t0 + window), t0 + window) is Verdict.SEND
    assert throttle.admit(alert(102, t0 + window), t0 + window) is Verdict.RATE_LIMITED


def test_info_is_not_rate_limited_and_levels_are_counted_apart() -> None:
    throttle = Throttle(cooldown_s=0.0, rate_limits={Level.CRITICAL: RateLimit(1, 60.0)})
    assert throttle.admit(Alert(Level.CRITICAL, "custom", "a", "x"), 0.0) is Verdict.SEND
    assert throttle.admit(Alert(Level.CRITICAL, "custom", "b", "x"), 1.0) is Verdict.RATE_LIMITED
    assert all(
        throttle.admit(Alert(Level.INFO, "custom", f"i{i}", "x"), 1.0) is Verdict.SEND for i in range(50)
    )
    summary = throttle.due_summary(60.0)
    assert summary is not None and summary.details["suppressed"] == 1
    assert summary.details["groups"][0]["reasons"] == {"rate_limited": 1}


def test_cooldown_is_per_key() -> None:
    throttle = Throttle(cooldown_s=300.0, rate_limits={})
    assert throttle.admit(Alert(Level.ERROR, "t", "a", "x"), 0.0) is Verdict.SEND
    assert throttle.admit(Alert(Level.ERROR, "t", "b", "x"), 1.0) is Verdict.SEND
    assert throttle.admit(Alert(Level.ERROR, "t", "a", "x"), 299.0) is Verdict.COOLDOWN
    assert throttle.admit(Alert(Level.ERROR, "t", "a", "x"), 300.0) is Verdict.SEND


# -- escalation -----------------------------------------------------------------------------------------


def test_error_goes_to_the_log_at_once_and_to_telegram_only_if_still_firing() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(clock)  # default rules: telegram for ERROR after 120 s
    bus.publish(**opened("binance_ticker"))
    dispatcher.flush()
    assert len(channels["log"].got) == 1 and channels["telegram"].got == []
    clock.advance(119.0)
    dispatcher.flush()
    assert channels["telegram"].got == []
    clock.advance(1.0)
    dispatcher.flush()
    assert [a.key for a in channels["telegram"].got] == ["breaker_opened:binance_ticker"]

    # A breaker that closes within the delay never reaches Telegram.
    bus.publish(**opened("kucoin_ohlcv"))
    dispatcher.flush()
    clock.advance(60.0)
    bus.publish(**closed("kucoin_ohlcv"))
    dispatcher.flush()
    clock.advance(600.0)
    dispatcher.flush()
    assert [a.key for a in channels["telegram"].got] == ["breaker_opened:binance_ticker"]
    assert [a.type for a in channels["log"].got] == [
        AlertType.BREAKER_OPENED,
        AlertType.BREAKER_OPENED,
        AlertType.BREAKER_CLOSED,
    ]
    assert dispatcher.counters["cancelled"] == 1
    assert dispatcher.stats()["channels"]["telegram"]["cancelled"] == 1


def test_a_wall_clock_stepped_back_delays_no_escalation_cooldown_or_summary() -> None:
    """Decisions run on a monotonic clock: NTP stepping the wall clock back an hour right after a
    breaker opened used to hold its Telegram escalation, and every cooldown, for that hour too.
    An alert's ts still says the wall-clock time."""
    import time

    default = AlertDispatcher(AlertConfig(health_interval=0), channels=[], threaded=False)
    assert default.clock is time.monotonic and default.wall_clock is time.time
    mono, wall = Clock(5_000.0), Clock()
    channels = {kind: Recorder(kind) for kind in ("log", "telegram")}
    bus = EventBus()
    dispatcher = AlertDispatcher(
        AlertConfig(health_interval=0),
        channels=list(channels.values()),
        clock=mono,
        wall_clock=wall,
        event_bus=bus,
        threaded=False,
    ).start()
    opened_at = wall.now
    bus.publish(**opened("binance_ticker"))
    dispatcher.flush()
    mono.advance(60)
    wall.advance(60 - 3600)  # NTP steps the wall clock back an hour
    dispatcher.flush()
    mono.advance(60)
    wall.advance(60)
    dispatcher.flush()  # 120 s after the breaker opened, by any clock that counts seconds
    assert [a.key for a in channels["telegram"].got] == ["breaker_opened:binance_ticker"]
    assert channels["telegram"].got[0].ts == opened_at  # when it fired, by the wall clock
    # the cooldown ends 300 s after the first alert, and the repeat held inside it is summarised
    bus.publish(**opened("binance_ticker"))
    dispatcher.flush()
    mono.advance(181)
    wall.advance(181)
    dispatcher.flush()
    summary = channels["log"].got[-1]
    assert summary.type == AlertType.SUPPRESSED_SUMMARY and summary.ts == wall.now
    bus.publish(**opened("binance_ticker"))
    dispatcher.flush()
    assert [a.type for a in channels["log"].got].count(AlertType.BREAKER_OPENED) == 2


def test_a_flapping_breaker_that_stays_open_still_reaches_telegram_once() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(clock)
    for event, wait in ((opened(), 10), (closed(), 10), (opened(), 0)):  # open, closed, open again
        bus.publish(**event)
        dispatcher.flush()
        clock.advance(wait)
    # the second open is within the cooldown: not logged again, but Telegram still hears once its
    # 120 s delay has passed with the breaker open
    assert [a.type for a in channels["log"].got] == [AlertType.BREAKER_OPENED, AlertType.BREAKER_CLOSED]
    clock.advance(119)
    dispatcher.flush()
    assert channels["telegram"].got == []
    clock.advance(1)
    dispatcher.flush()
    assert [a.key for a in channels["telegram"].got] == ["breaker_opened:binance_ticker"]
    # it flaps again: Telegram had this key 30 s ago, inside the cooldown: no second message
    for event in (closed(), opened()):
        clock.advance(15)
        bus.publish(**event)
        dispatcher.flush()
    clock.advance(600)
    dispatcher.flush()
    assert len(channels["telegram"].got) == 1


def test_critical_goes_to_telegram_at_once() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(clock)
    bus.publish(
        "order_state_unknown",
        exchange="binance",
        endpoint="create_order",
        operation="create_order",
        client_order_id="x-abc123",
        symbol="BTC/USDT",
        reason="5 lookups did not settle it",
    )
    dispatcher.flush()
    assert [a.level for a in channels["telegram"].got] == [Level.CRITICAL]
    assert "x-abc123" in channels["telegram"].got[0].message


def test_escalation_rules_take_the_shortest_matching_delay() -> None:
    policy = EscalationPolicy(
        [EscalationRule("telegram", Level.ERROR, 120.0), EscalationRule("telegram", Level.CRITICAL, 0.0)]
    )
    crit = Alert(Level.CRITICAL, "t", "k", "m")
    err = Alert(Level.ERROR, "t", "k", "m")
    warn = Alert(Level.WARNING, "t", "k", "m")
    assert policy.plan(crit, ["telegram", "log"]) == {"telegram": 0.0}
    assert policy.plan(err, ["telegram"]) == {"telegram": 120.0}
    assert policy.plan(warn, ["telegram"]) == {}
    assert policy.plan(crit, ["log"]) == {}
    pending = PendingEscalations()
    assert pending.add(err, "telegram", 120.0) and not pending.add(err, "telegram", 130.0)
    assert pending.due(119.0) == [] and pending.due(120.0) == [(err, "telegram")]


def test_stop_counts_escalations_that_will_never_go_out() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(clock)
    bus.publish(**opened())
    dispatcher.flush()
    assert len(dispatcher.pending) == 1  # telegram, in 120 s
    dispatcher.stop()
    assert dispatcher.stats()["channels"]["telegram"]["dropped"] == 1 and channels["telegram"].got == []


def test_configured_escalation_and_channels() -> None:
    clock = Clock()
    dispatcher, channels, bus = make(
        clock,
        kinds=("log", "webhook"),
        escalation=[
            {"channel": "log", "min_level": "info"},
            {"channel": "webhook", "min_level": "error", "delay_s": 30},
        ],
    )
    bus.publish(
        "quality_failed", exchange="binance", endpoint="ohlcv", score=20.0, policy="raise", report="r"
    )
    bus.publish(**opened())
    dispatcher.flush()
    assert {a.type for a in channels["log"].got} == {AlertType.DATA_QUALITY, AlertType.BREAKER_OPENED}
    clock.advance(30)
    dispatcher.flush()
    assert [a.type for a in channels["webhook"].got] == [AlertType.BREAKER_OPENED]  # warning never goes


# -- rules -------------------------------------------------------------------------------------------


def failed(i: int = 0, endpoint: str = "ticker", error: str = "NetworkError") -> dict[str, Any]:
    return {
        "kind": "call_failed",
        "exchange": "binance",
        "endpoint": endpoint,
        "error": error,
        "message": f"m{i}",
    }


def test_error_rate_per_minute_fires_once_and_recovers() -> None:
    rules = AlertRules(ErrorRateRule(per_minute=5, count=10, window_s=300))
    fired = [a for i in range(4) for a in rules.on_event(failed(i), 100.0 + i)]
    assert fired == []
    fired = rules.on_event(failed(5), 104.0)
    assert [a.type for a in fired] == [AlertType.ERROR_RATE] and fired[0].details["per_minute"] == 5
    assert rules.on_event(failed(6), 105.0) == []  # firing: not again per failure
    assert rules.on_event(failed(6, endpoint="ohlcv"), 105.0) == []  # another endpoint counts apart
    assert rules.tick(150.0) == []  # still 6 in the last minute
    recovered = rules.tick(170.0)
    assert [a.type for a in recovered] == [AlertType.ERROR_RATE_RECOVERED]
    assert recovered[0].resolves == ("error_rate:binance:ticker",)


def test_error_rate_count_in_window() -> None:
    rules = AlertRules(ErrorRateRule(per_minute=100, count=10, window_s=300))
    fired = []
    for i in range(10):
        fired += rules.on_event(failed(i), 1000.0 + 25.0 * i)  # 10 failures in 225 s: ~2.7 a minute
    assert [a.details["in_window"] for a in fired] == [10]


def test_refusals_do_not_count_as_errors() -> None:
    rules = AlertRules(ErrorRateRule(per_minute=1, count=1, window_s=60))
    assert rules.on_event(failed(error="CircuitOpenError"), 1.0) == []
    assert rules.on_event(failed(error="RateLimitBackoff"), 1.0) == []
    assert len(rules.on_event(failed(error="RequestTimeout"), 1.0)) == 1


def test_every_alert_type_from_its_event() -> None:
    rules = AlertRules()
    events = [
        (
            {
                "kind": "rate_limit_ban",
                "exchange": "binance",
                "endpoint": "ticker",
                "banned": True,
                "retry_in": 120.0,
                "status": 418,
            },
            AlertType.RATE_LIMIT_BAN,
            Level.ERROR,
        ),
        (
            {
                "kind": "rate_limit_ban",
                "exchange": "binance",
                "endpoint": "create_order",
                "banned": False,
                "retry_in": 3600.0,
            },
            AlertType.RATE_LIMIT_BAN,
            Level.WARNING,
        ),
        (
            {
                "kind": "anomaly_detected",
                "exchange": "kucoin",
                "endpoint": "ticker",
                "metric": "latency_ms",
                "score": 4.2,
                "message": "latency 10x its baseline",
            },
            AlertType.ANOMALY,
            Level.WARNING,
        ),
        (
            {
                "kind": "quality_failed",
                "exchange": "kucoin",
                "endpoint": "ohlcv",
                "score": 12.0,
                "policy": "raise",
                "report": "high < low",
            },
            AlertType.DATA_QUALITY,
            Level.WARNING,
        ),
        (opened(), AlertType.BREAKER_OPENED, Level.ERROR),
        (closed(), AlertType.BREAKER_CLOSED, Level.INFO),
    ]
    for event, kind, level in events:
        (alert,) = rules.on_event(event, 1.0)
        assert (alert.type, alert.level) == (kind, level), event
    assert rules.on_event({**opened(), "old": "open", "new": "half_open"}, 1.0) == []
    assert rules.on_event({"kind": "stale_served"}, 1.0) == []
    assert "418" in rules.on_event(events[0][0], 1.0)[0].message


def test_health_below_a_level_is_read_on_the_dispatchers_schedule() -> None:
    clock = Clock()
    readings = iter(
        [
            {"clients": {"binance": {"score": 95.0, "status": "excellent", "reasons": []}}},
            {"clients": {"binance": {"score": 55.0, "status": "poor", "reasons": ["ticker: breaker open"]}}},
            {"clients": {"binance": {"score": 30.0, "status": "critical", "reasons": ["all down"]}}},
            {"clients": {"binance": {"score": 62.0, "status": "fair", "reasons": []}}},  # hysteresis band
            {"clients": {"binance": {"score": 80.0, "status": "good", "reasons": []}}},
        ]
    )
    calls = []

    def health() -> dict[str, Any]:
        calls.append(clock())
        return next(readings)

    channels = {"log": Recorder("log")}
    dispatcher = AlertDispatcher(
        AlertConfig(health_interval=30),
        channels=list(channels.values()),
        clock=clock,
        event_bus=EventBus(),
        health_source=health,
        threaded=False,
    ).start()
    for _ in range(5):
        clock.advance(10)
        dispatcher.flush()
        clock.advance(20)
        dispatcher.flush()
    assert len(calls) == 5  # once per 30 s, however often the dispatcher steps
    got = [(a.type, a.level) for a in channels["log"].got]
    assert got == [
        (AlertType.HEALTH_LOW, Level.WARNING),
        (AlertType.HEALTH_LOW, Level.ERROR),
        (AlertType.HEALTH_RECOVERED, Level.INFO),
    ]
    assert "ticker: breaker open" in channels["log"].got[0].message


# -- never blocking the publisher -------------------------------------------------------------------------


def until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (threads at work); False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_the_inbox_is_bounded_and_counts_what_it_refuses() -> None:
    dispatcher, _, bus = make(Clock(), kinds=("log",), inbox_size=50)
    for i in range(500):
        bus.publish(**opened(f"binance_e{i}"))
    bus.publish("stale_served", exchange="binance", endpoint="ticker")  # not read by any rule: ignored
    stats = dispatcher.stats()
    assert (stats["inbox"], stats["inbox_dropped"]) == (50, 450)
    dispatcher.flush()
    assert dispatcher.stats()["events"] == 50


def test_a_stuck_channel_never_blocks_the_publisher_and_drops_are_counted() -> None:
    stuck = Recorder("log", name="stuck")
    stuck.gate = threading.Event()  # send() blocks until the test opens the gate
    healthy = Recorder("webhook")
    bus = EventBus()
    dispatcher = AlertDispatcher(
        AlertConfig(alert_cooldown=0, rate_limits=UNLIMITED, queue_size=5, health_interval=0),
        channels=[stuck, healthy],
        event_bus=bus,
        sleep=lambda _s: None,
    ).start()
    try:
        for i in range(500):  # the publisher's thread: returns at once every time, stuck or not
            bus.publish(**opened(f"binance_e{i}"))
        assert until(lambda: dispatcher.stats()["inbox"] == 0 and not dispatcher._stepping)
        assert until(lambda: healthy.got and dispatcher.stats()["channels"]["webhook"]["queued"] == 0)
        stats = dispatcher.stats()
        fired = stats["fired"]
        assert fired + stats["inbox_dropped"] == 500
        stuck_stats, healthy_stats = stats["channels"]["stuck"], stats["channels"]["webhook"]
        # one alert is held inside the stuck send(), at most five wait in its queue, the rest dropped
        assert until(lambda: dispatcher.senders[0].busy)
        stuck_stats = dispatcher.stats()["channels"]["stuck"]
        assert stuck_stats["sent"] == 0 and stuck_stats["queued"] <= 5
        assert stuck_stats["dropped"] + stuck_stats["queued"] + 1 == fired
        assert stuck_stats["dropped"] >= fired - 6 > 0
        # the other channel delivered everything it could queue
        assert healthy_stats["sent"] + healthy_stats["dropped"] == fired and healthy_stats["sent"] > 0
        assert len(healthy.got) == healthy_stats["sent"]
    finally:
        stuck.gate.set()
        dispatcher.stop()
    assert until(lambda: stuck.got)  # once unblocked, it delivers what it held


def test_failing_channel_is_retried_counted_and_others_still_deliver() -> None:
    clock = Clock()
    bad = Recorder("webhook", name="webhook_bad", fail=True)
    good = Recorder("webhook", name="webhook_good")
    log = Recorder("log")
    dispatcher = AlertDispatcher(
        AlertConfig(delivery_attempts=3, health_interval=0),
        channels=[bad, good, log],
        clock=clock,
        event_bus=EventBus(),
        threaded=False,
        sleep=lambda _s: None,
    ).start()
    dispatcher.fire(Alert(Level.WARNING, AlertType.CUSTOM, "custom:1", "disk almost full"))
    dispatcher.flush()
    channels = dispatcher.stats()["channels"]
    assert channels["webhook_bad"] | {"last_error": None} == channels["webhook_bad"] | {
        "sent": 0,
        "failed": 1,
        "retries": 2,
        "last_error": None,
    }
    assert "HTTP 500" in channels["webhook_bad"]["last_error"]
    assert channels["webhook_good"]["sent"] == 1 and channels["log"]["sent"] == 1
    assert [a.message for a in good.got] == ["disk almost full"]


def test_the_readme_alerts_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    import structlog

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Alerts", 1)[1]
    snippet = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert snippet is not None
    with structlog.testing.capture_logs() as logs:
        exec(compile(snippet.group(1), "README.md", "exec"), {})
    assert "'sent': 1" in capsys.readouterr().out
    assert [e["message"] for e in logs if e["event"] == "alert"] == ["disk /var is 91% full"]


def test_held_counts_what_waits_for_a_summary() -> None:
    throttle = Throttle(cooldown_s=10.0, rate_limits={}, max_groups=2)
    for i in range(4):
        for _ in range(3):
            throttle.admit(Alert(Level.WARNING, "t", f"k{i}", "x"), 0.0)
    assert throttle.held == 8  # 2 repeats of 4 keys; two keys fit in groups, two only in the overflow
    summary = throttle.due_summary(10.0)
    assert summary is not None and summary.details["suppressed"] == 8
    assert len(summary.details["groups"]) == 2 and throttle.held == 0


def test_a_configured_secret_is_masked_in_an_alerts_details_key_and_names_too() -> None:
    """Only the message was masked: a bot token quoted in a custom alert's details (or key, or
    exchange) went out in the webhook payload, the mail body and the status stream's alert event."""
    import json

    from hardened.alerts.channels import render_html, render_text, slack_payload

    token = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    recorder = Recorder("webhook")
    bus = EventBus()
    events: list[dict[str, Any]] = []
    bus.subscribe(events.append)
    config = AlertConfig(
        health_interval=0,
        alert_channels=["telegram"],
        telegram_config={"bot_token": token, "chat_ids": ["1"]},
    )
    dispatcher = AlertDispatcher(config, channels=[recorder], event_bus=bus, threaded=False).start()
    error = f"HTTP 409 from https://api.telegram.org/bot{token}/getUpdates"
    dispatcher.fire(
        Alert(
            Level.WARNING,
            "custom",
            f"poller:{token}",
            "my own Telegram poller failed",
            exchange=f"bot{token}",
            details={"error": error, "attempts": 3, "nested": {"last": [error]}},
        )
    )
    dispatcher.flush()
    (alert,) = recorder.got
    assert alert.details["attempts"] == 3 and "HTTP 409" in alert.details["error"]
    shown = [alert.to_dict(), render_text(alert), render_html(alert), slack_payload(alert)]
    shown += [e for e in events if e["kind"] == "alert"] + dispatcher.recent()
    assert token not in json.dumps(shown, default=str)


def test_an_alert_fired_on_a_stopped_dispatcher_is_counted_and_logged() -> None:
    """A reference kept from start_alerts() after stop_alerts(): fire() put the alert in an inbox
    nobody reads, without a count or a word."""
    import structlog

    recorder = Recorder("log")
    dispatcher = AlertDispatcher(
        AlertConfig(health_interval=0), channels=[recorder], event_bus=EventBus(), threaded=False
    ).start()
    dispatcher.stop()
    with structlog.testing.capture_logs() as logs:
        dispatcher.fire(Alert(Level.CRITICAL, "custom", "late", "order state unknown"))
    stats = dispatcher.stats()
    assert (stats["inbox"], stats["inbox_dropped"], recorder.got) == (0, 1, [])
    assert [(e["event"], e["alert_key"]) for e in logs] == [("alert_dropped", "late")]


def test_an_empty_channel_list_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hardened.config import ConfigError

    with pytest.raises(ConfigError, match="alert_channels"):
        AlertConfig(alert_channels=[])
    monkeypatch.setenv("ALERT_CHANNELS", ",")
    with pytest.raises(ConfigError, match="alert_channels"):
        AlertConfig()


def test_start_alerts_with_a_channel_of_your_own() -> None:
    import hardened

    hardened.stop_alerts()
    mine = Recorder("log", name="pager")
    dispatcher = hardened.start_alerts(channels=[mine], health_interval=0)
    try:
        dispatcher.fire(Alert(Level.CRITICAL, AlertType.CUSTOM, "custom:pager", "wake up"))
        assert dispatcher.wait_idle(10)
    finally:
        hardened.stop_alerts()
    assert [a.message for a in mine.got] == ["wake up"]
    assert dispatcher.stats()["channels"]["pager"]["sent"] == 1


def test_an_alert_level_given_by_name_is_parsed_and_delivered() -> None:
    """``Alert("critical", ...)`` used to pass, then fail on the dispatcher's thread: lost unseen."""
    dispatcher, channels, _ = make(Clock(), kinds=("log",))
    alert = Alert("critical", "custom", "disk:/var", "disk /var is 99% full")  # type: ignore[arg-type]
    assert alert.level is Level.CRITICAL
    dispatcher.fire(alert)
    dispatcher.flush()
    assert [a.key for a in channels["log"].got] == ["disk:/var"]
    assert dispatcher.stats()["errors"] == 0


@pytest.mark.parametrize(
    ("fields", "error", "named"),
    [
        ({"level": "critcal"}, ValueError, "unknown alert level 'critcal'"),
        ({"level": 35}, ValueError, "unknown alert level 35"),
        ({"level": True}, TypeError, "alert level"),
        ({"level": None}, TypeError, "alert level"),
        ({"type": None}, TypeError, "type"),
        ({"key": ""}, TypeError, "key"),
        ({"message": 42}, TypeError, "message"),
        ({"exchange": 1}, TypeError, "exchange"),
        ({"ts": float("nan")}, ValueError, "ts"),
        ({"ts": "now"}, TypeError, "ts"),
        ({"details": "x=1"}, TypeError, "details"),
        ({"resolves": "breaker_opened:binance_ticker"}, TypeError, "resolves"),
    ],
)
def test_a_bad_alert_field_fails_when_the_alert_is_made(
    fields: dict[str, Any], error: type[Exception], named: str
) -> None:
    given = {"level": Level.WARNING, "type": "custom", "key": "k", "message": "m", **fields}
    with pytest.raises(error, match=named):
        Alert(**given)


def test_fire_takes_only_an_alert() -> None:
    dispatcher, _, _ = make(Clock(), kinds=("log",))
    with pytest.raises(TypeError, match="fire"):
        dispatcher.fire({"level": "error", "message": "m"})  # type: ignore[arg-type]
