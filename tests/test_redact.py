"""The redaction patterns: every form a credential is printed in is masked, ordinary words are not."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from hardened.telemetry.logging import configure_logging
from hardened.telemetry.redact import redact_text
from hardened.telemetry.tracker import ErrorTracker

SECRETS = ("AKSECRET1", "SIGSECRET2", "PPSECRET3", "TOKSECRET4")


@pytest.mark.parametrize(
    "text",
    [
        "apiKey=AKSECRET1 signature=SIGSECRET2",
        '{"apiKey": "AKSECRET1", "signature": "SIGSECRET2"}',  # a JSON body, json.dumps
        "{'X-MBX-APIKEY': 'AKSECRET1', 'KC-API-SIGN': 'SIGSECRET2'}",  # the repr of a headers dict
        "{'KC-API-PASSPHRASE': 'PPSECRET3'}",
        "Authorization: Bearer TOKSECRET4",
        "headers={'Authorization': 'Bearer TOKSECRET4'}",
        "Authorization: Basic TOKSECRET4",
        "sent with Bearer TOKSECRET4xyz",
        "POST https://api.telegram.org/bot123456:TOKSECRET4/sendMessage failed",
    ],
)
def test_every_printed_form_of_a_credential_is_masked(text: str) -> None:
    masked = redact_text(text)
    assert not any(secret in masked for secret in SECRETS), masked
    assert "***" in masked


@pytest.mark.parametrize(
    "text",
    [
        "signal strength ok; design review passed; author: bob",
        "the bearer of bad news",
        "keyboard: fine, token bucket refilled, cache_key=abc alert_key=x",
        "hash signatures=3; authority granted",
        '{"symbol": "BTC/USDT", "side": "buy", "key": "binance:ticker"}',
    ],
)
def test_ordinary_words_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "key", ["KC-API-SIGN", "apiSign", "ACCESS-SIGN", "Authorization", "X-MBX-APIKEY", "ALERT_EMAIL_PASS"]
)
def test_secret_keys(key: str) -> None:
    from hardened.telemetry.redact import is_secret_key

    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["signal", "design", "passed", "author", "alert_key", "cache_key", "symbol"])
def test_ordinary_keys(key: str) -> None:
    from hardened.telemetry.redact import is_secret_key

    assert not is_secret_key(key)


def test_the_tracker_masks_signing_and_authorization_headers_kept_as_context() -> None:
    t = ErrorTracker()
    headers = {
        "KC-API-KEY": "AKSECRET1",
        "KC-API-SIGN": "SIGSECRET2",
        "KC-API-PASSPHRASE": "PPSECRET3",
        "Authorization": "Bearer TOKSECRET4",
        "Accept": "application/json",
    }
    t.record("AuthenticationError", "balance", {"headers": headers}, message=repr(headers))
    text = json.dumps(t.recent(1)[0])
    assert not any(secret in text for secret in SECRETS), text
    assert t.recent(1)[0]["context"]["headers"]["Accept"] == "application/json"


def test_a_log_field_holding_a_dict_or_an_exception_is_masked_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    try:
        structlog.get_logger("hardened").warning(
            "request_failed",
            headers={"KC-API-SIGN": "SIGSECRET2", "Accept": "json"},
            error=ValueError("GET /api/v3/account?signature=SIGSECRET2"),
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(stream.getvalue())
    assert "SIGSECRET2" not in stream.getvalue()
    assert line["headers"] == {"KC-API-SIGN": "***", "Accept": "json"}
