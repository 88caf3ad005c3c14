"""Construction fails early and clearly: wrong client kind, unknown endpoints, bad delays, bools, env."""

from __future__ import annotations

from collections.abc import Callable

import ccxt
import ccxt.async_support as accxt
import pytest
import structlog.testing

from hardened import AsyncHardenedClient, ConfigError, HardenedClient, HardenedConfig
from hardened.alerts.config import AlertConfig


def test_sync_client_refuses_an_async_exchange_and_says_what_to_use() -> None:
    with pytest.raises(TypeError) as caught:
        HardenedClient(accxt.binance())
    message = str(caught.value)
    assert "HardenedClient" in message and "AsyncHardenedClient" in message
    assert "ccxt.async_support.binance" in message and "ccxt.binance" in message


async def test_async_client_refuses_a_sync_exchange_and_says_what_to_use() -> None:
    with pytest.raises(TypeError) as caught:
        AsyncHardenedClient(ccxt.binance())
    message = str(caught.value)
    assert "AsyncHardenedClient" in message and "HardenedClient(" in message
    assert "ccxt.binance" in message and "ccxt.async_support.binance" in message


@pytest.mark.parametrize(
    ("given", "meant"), [("fetch_ohlcv", "ohlcv"), ("fetchOrderBook", "order_book"), ("tiker", "ticker")]
)
def test_an_unknown_endpoint_name_is_refused_with_a_suggestion(given: str, meant: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HardenedConfig(endpoints={given: {"max_retries": 5}})
    message = str(caught.value)
    assert f"'{given}'" in message and f"did you mean '{meant}'" in message
    assert "balance" in message and "create_order" in message  # the known names are listed


def test_known_endpoint_names_are_accepted() -> None:
    config = HardenedConfig(endpoints={"ohlcv": {"max_retries": 5}, "markets": {}, "l2_order_book": {}})
    assert config.for_endpoint("ohlcv").max_retries == 5


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"initial_delay": 5.0, "max_delay": 1.0}, "initial_delay"),
        ({"endpoints": {"ohlcv": {"initial_delay": 40.0}}}, "endpoints.ohlcv"),  # above the client's 30
        ({"initial_delay": 2.0, "endpoints": {"ticker": {"max_delay": 1.0}}}, "endpoints.ticker"),
    ],
)
def test_initial_delay_above_max_delay_is_refused_also_per_endpoint(settings: dict, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HardenedConfig(**settings)
    assert named in str(caught.value) and "max_delay" in str(caught.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_retries": True},
        {"failure_threshold": False},
        {"initial_delay": True},
        {"endpoints": {"ohlcv": {"max_retries": True}}},
    ],
)
def test_bools_do_not_pass_as_numbers(settings: dict) -> None:
    with pytest.raises(ConfigError, match="bool"):
        HardenedConfig(**settings)


def test_numbers_from_the_environment_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENED_MAX_RETRIES", "7")
    monkeypatch.setenv("HARDENED_INITIAL_DELAY", "0.25")
    config = HardenedConfig()
    assert (config.max_retries, config.initial_delay) == (7, 0.25)


def test_bad_json_in_an_environment_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENED_ENDPOINTS", "{bad")
    with pytest.raises(ConfigError) as caught:
        HardenedConfig()
    assert "HARDENED_ENDPOINTS" in str(caught.value) and "JSON" in str(caught.value)


SECRET = "SECRETvalue99"


@pytest.mark.parametrize(
    ("make", "named", "meant"),
    [
        (lambda: HardenedConfig(status_token="S3CRET7"), "status_token", "at least 8"),
        (lambda: HardenedConfig(redis_uri=f"redis://:{SECRET}@127.0.0.1:6379/0"), "redis_uri", "redis_url"),
        (lambda: HardenedConfig(status_tokn=SECRET), "status_tokn", "status_token"),
        (lambda: HardenedConfig(endpoints={"ohlcv": {"max_retriez": SECRET}}), "max_retriez", "max_retries"),
        (
            lambda: AlertConfig(email_config={"smtp_server": "127.0.0.1", "pasword": SECRET}),
            "email_config.pasword",
            "password",
        ),
        (
            lambda: AlertConfig(webhook_config={"url": f"https://hooks.example/T0/B0/{SECRET}"}),
            "webhook_config.url",
            "urls",
        ),
        (
            lambda: AlertConfig(telegram_config={"token": f"123456:{SECRET}", "chat_ids": ["1"]}),
            "telegram_config.token",
            "bot_token",
        ),
        # a bare value where a section belongs may be any setting, a credential included
        (lambda: HardenedConfig(endpoints=f"redis://:{SECRET}@127.0.0.1"), "endpoints", "dictionary"),
        (
            lambda: HardenedConfig(endpoints={"ticker": f"redis://:{SECRET}@127.0.0.1"}),
            "endpoints.ticker",
            "dictionary",
        ),
    ],
)
def test_a_configuration_error_never_shows_a_secret_or_an_unknown_keys_value(
    make: Callable[[], object], named: str, meant: str
) -> None:
    """A too-short token, or a secret under a misspelt key: the error names the field and what is
    wrong (the setting probably meant), never the value."""
    with pytest.raises(ConfigError) as caught:
        make()
    message = str(caught.value)
    assert SECRET not in message and "S3CRET7" not in message
    assert named in message and meant in message


def test_ordinary_values_are_still_shown() -> None:
    with pytest.raises(ConfigError, match=r"max_retries = 50: .*allowed 0 to 20"):
        HardenedConfig(max_retries=50)


@pytest.mark.parametrize(
    "settings",
    [
        {"gate_threshold": True},
        {"gate_probe_share": True},
        {"gate_min_samples": True},
        {"learning_max_rows": True},
        {"learning_retention": True},
    ],
)
def test_gate_and_learning_numbers_refuse_bools_too(settings: dict) -> None:
    """``gate_threshold=True`` passed as 1.0 (a plain float field): refused as the others are."""
    with pytest.raises(ConfigError, match="bool"):
        HardenedConfig(**settings)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"cache_ttl": float("nan")}, "cache_ttl"),
        ({"call_deadline": float("inf")}, "call_deadline"),
        ({"gate_threshold": float("nan")}, "gate_threshold"),
    ],
)
def test_nan_and_infinity_are_refused_as_not_finite(settings: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field} = .*finite number"):
        HardenedConfig(**settings)
    with pytest.raises(ConfigError, match=r"alert_cooldown = nan: .*finite number"):
        AlertConfig(alert_cooldown=float("nan"))


def test_the_allowed_range_of_a_field_that_must_be_above_zero_says_so() -> None:
    with pytest.raises(ConfigError, match=r"max_delay = 0: .*\(allowed above 0, up to 600;"):
        HardenedConfig(max_delay=0)
    with pytest.raises(ConfigError, match=r"\(allowed 0 to 60;"):
        HardenedConfig(initial_delay=-1)


@pytest.mark.parametrize("store", ["", "   "])
def test_an_empty_learning_store_is_refused_naming_the_field(store: str) -> None:
    """It passed, then failed on first use naming the current directory."""
    with pytest.raises(ConfigError, match=r"learning_store = .*SQLite file.*':memory:'.*None"):
        HardenedConfig(learning_store=store)
    assert HardenedConfig(learning_store=":memory:").learning_store == ":memory:"
    assert HardenedConfig(learning_store=None).learning_store is None


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unknown environment name is said once per process: start from none said."""
    import hardened.config

    monkeypatch.setattr(hardened.config, "_warned_environment", set(), raising=False)


def _unknown_names(logs: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["variable"], e["meant"]) for e in logs if e["event"] == "unknown_environment_variable"]


@pytest.mark.usefixtures("fresh_warnings")
def test_a_misspelt_environment_setting_is_warned_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HARDENED_MAX_RETRYS=10`` was ignored without a word; the warning names the one meant,
    never the value (it may be a secret)."""
    monkeypatch.setenv("HARDENED_MAX_RETRYS", "SECRET10")
    monkeypatch.setenv("HARDENED_MAX_RETRIES", "5")
    monkeypatch.setenv("HARDENED_ENDPOINTS__OHLCV__MAX_RETRIES", "4")
    monkeypatch.setenv("HARDENED_SIM_URL", "http://127.0.0.1:9000")
    with structlog.testing.capture_logs() as logs:
        config = HardenedConfig()
        HardenedConfig()
    assert config.max_retries == 5 and config.for_endpoint("ohlcv").max_retries == 4
    assert _unknown_names(logs) == [("HARDENED_MAX_RETRYS", "HARDENED_MAX_RETRIES")]
    assert "SECRET10" not in repr(logs)


@pytest.mark.usefixtures("fresh_warnings")
def test_a_misspelt_alert_environment_setting_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://hooks.example/T/B/SECRETtoken")
    monkeypatch.setenv("TELEGRAM_ALERT_CHATS", "42")
    monkeypatch.setenv("ALERT_COOLDOWN", "60")
    with structlog.testing.capture_logs() as logs:
        assert AlertConfig().alert_cooldown == 60
    assert sorted(_unknown_names(logs)) == [
        ("ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URLS"),
        ("TELEGRAM_ALERT_CHATS", "TELEGRAM_ALERT_CHAT_IDS"),
    ]
    assert "SECRETtoken" not in repr(logs)


@pytest.mark.parametrize(
    ("environment", "missing"),
    [
        ({"TELEGRAM_ALERT_BOT_TOKEN": "1:SECRETtoken"}, "telegram_config.chat_ids"),
        ({"TELEGRAM_ALERT_CHAT_IDS": "42"}, "telegram_config.bot_token"),
        ({"ALERT_SMTP_SERVER": "127.0.0.1"}, "email_config.to_emails"),
        ({"ALERT_EMAIL_TO": "ops@example.com"}, "email_config.smtp_server"),
        (
            {"ALERT_EMAIL_PASS": "SECRETpw"},
            "email_config.smtp_server .* and email_config.to_emails .* are not set",
        ),
    ],
)
def test_a_half_configured_channel_is_an_error(
    environment: dict[str, str], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without a chat (or a server without recipients) was left out silently."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"half configured: {missing}") as caught:
        AlertConfig()
    assert "SECRET" not in str(caught.value)
