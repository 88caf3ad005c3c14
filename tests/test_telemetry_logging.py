"""configure_logging: redaction in the processor chain, level filtering, JSON and console output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import ccxt
import pytest
import structlog

from hardened.telemetry.logging import configure_logging
from hardened.telemetry.redact import redact_event


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_are_redacted_and_filtered() -> None:
    stream = io.StringIO()
    processors = configure_logging("INFO", json=True, stream=stream)
    assert redact_event in processors
    log = structlog.get_logger("hardened")
    log.debug("hidden", detail="x")
    log.warning(
        "call_failed",
        exchange="binance",
        secret="MYSECRET",
        message="GET /api/v3/order?symbol=BTCUSDT&signature=abcdef0123 failed",
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "call_failed" and line["level"] == "warning" and line["exchange"] == "binance"
    assert line["secret"] == "***"
    assert line["message"].endswith("signature=*** failed")
    assert "MYSECRET" not in stream.getvalue() and "abcdef0123" not in stream.getvalue()
    assert line["timestamp"].endswith("Z")


def test_console_output_and_debug_level() -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    structlog.get_logger().debug("breaker_half_open", breaker="binance_ohlcv", apiKey="KEY123456")
    text = stream.getvalue()
    assert "breaker_half_open" in text and "binance_ohlcv" in text
    assert "KEY123456" not in text


def test_reconfiguring_reaches_existing_loggers() -> None:
    log = structlog.get_logger("hardened")
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first)
    log.info("one")
    configure_logging("ERROR", stream=second)
    log.info("two")
    log.error("three")
    assert "one" in first.getvalue()
    assert "two" not in second.getvalue() and "three" in second.getvalue()


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (structlog's defaults untouched) and return its output."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_without_configure_logging_the_defaults_redact_too() -> None:
    """A bot that never sets structlog up (or sets only its output) still gets secrets masked."""
    text = _run(
        "import sys, structlog, hardened\n"
        "structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stdout))\n"
        "structlog.get_logger('hardened').warning('call_failed', apiKey='AKdefault99', "
        "message='GET /api/v3/account?signature=5eedfeed42', exchange='binance')\n"
    )
    assert "call_failed" in text and "exchange=binance" in text
    assert "AKdefault99" not in text and "5eedfeed42" not in text and "signature=***" in text


def test_a_logging_set_up_of_the_users_own_is_left_alone() -> None:
    from hardened.telemetry.logging import redact_by_default

    mine = [structlog.processors.KeyValueRenderer()]
    structlog.configure(processors=mine)
    assert redact_by_default() is False
    assert structlog.get_config()["processors"] == mine


def test_importing_hardened_leaves_structlog_unconfigured_for_the_users_configure_once() -> None:
    """The default redaction must not mark structlog configured: a bot's own ``configure_once()``
    made after ``import hardened`` would be ignored (structlog only warns)."""
    text = _run(
        "import sys, warnings, structlog, hardened\n"
        "warnings.simplefilter('error')\n"
        "assert not structlog.is_configured()\n"
        "structlog.configure_once(processors=[structlog.processors.KeyValueRenderer()],\n"
        "    logger_factory=structlog.PrintLoggerFactory(file=sys.stdout))\n"
        "structlog.get_logger().warning('mine', exchange='binance')\n"
    )
    assert text.strip() == "exchange='binance' event='mine'"


def test_default_redaction_is_added_once_and_keeps_the_renderer_last() -> None:
    from hardened.telemetry.logging import redact_by_default

    structlog.reset_defaults()
    assert redact_by_default() is True and redact_by_default() is True
    processors = structlog.get_config()["processors"]
    assert processors.count(redact_event) == 1 and processors[-2] is redact_event
    assert not structlog.is_configured()


SIGNED_URL_ERROR = (
    "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=5ea1ed0badc0ffee 401"
)


@pytest.mark.parametrize("json_lines", [True, False])
def test_a_logged_traceback_is_redacted_too(json_lines: bool) -> None:
    """``log.exception`` (or ``exc_info=``) renders the traceback after every other processor: the
    redaction must see it as text, or a ccxt error's signed URL reaches the log line."""
    stream = io.StringIO()
    configure_logging("INFO", json=json_lines, stream=stream)
    log = structlog.get_logger("bot")
    try:
        raise ccxt.AuthenticationError(SIGNED_URL_ERROR)
    except ccxt.BaseError as exc:
        log.exception("order_failed")
        log.error("order_failed_again", exc_info=exc)
    text = stream.getvalue()
    assert "5ea1ed0badc0ffee" not in text
    assert text.count("Traceback") == 2 and text.count("signature=***") == 2


def test_a_logged_traceback_is_redacted_with_structlogs_defaults() -> None:
    text = _run(
        "import sys, ccxt, structlog, hardened\n"
        "structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stdout))\n"
        "try:\n"
        f"    raise ccxt.AuthenticationError({SIGNED_URL_ERROR!r})\n"
        "except ccxt.BaseError:\n"
        "    structlog.get_logger().exception('order_failed')\n"
    )
    assert "order_failed" in text and "Traceback" in text and "signature=***" in text
    assert "5ea1ed0badc0ffee" not in text
