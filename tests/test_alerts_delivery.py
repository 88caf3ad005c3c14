"""Alerts delivered to real servers on 127.0.0.1: SMTP with STARTTLS and login (aiosmtpd), a webhook
receiver and a Telegram-shaped Bot API (http.server), plus targets that fail, to show that retries
are counted, failures are visible, and every other channel still delivers.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import hardened
from hardened.alerts import AlertConfig, AlertDispatcher
from hardened.telemetry.events import EventBus

TOKEN = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PASSWORD = "s3cret-app-pass-42"
USER = "alerts@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- SMTP: aiosmtpd with STARTTLS required before AUTH ------------------------------------------------


class Mailbox:
    """aiosmtpd handler: keeps each message with who logged in to send it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "content": envelope.original_content or envelope.content,
                "login": session.auth_data,
                "tls": session.ssl is not None,
            }
        )
        return "250 Message accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def smtp(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mailbox, int, str]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_ctx,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        yield mailbox, controller.port, str(ca_file)
    finally:
        controller.stop()


# -- HTTP: webhook receiver and a Telegram-shaped Bot API ----------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers per path (see ``Handler``)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.flood_left = 1  # Telegram answers the first sendMessage with 429 retry_after
        self.lock = threading.Lock()

    def posts(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for path, body in self.received if path.startswith(prefix)]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the path holds the bot token
        return

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # what urllib would turn a redirected POST into
        with self.server.lock:
            self.server.received.append((f"GET {self.path}", {}))
        self._answer(200, {"ok": True})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append((self.path, body))
        if self.path.startswith("/moved/"):  # /moved/302: a redirect to the good receiver
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Location", "/hook")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path in ("/hook", "/slack"):
            self._answer(200, {"ok": True})
        elif self.path == "/fail":
            self._answer(500, {"error": "receiver is down"})
        elif self.path.startswith("/status/"):  # /status/522: that answer once, then 200
            with self.server.lock:
                first = sum(1 for path, _ in self.server.received if path == self.path) == 1
            self._answer(int(self.path.rsplit("/", 1)[1]) if first else 200, {"ok": not first})
        elif self.path == f"/bot{TOKEN}/sendMessage":
            if body.get("chat_id") == "333":
                self._answer(
                    400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
                )
                return
            with self.server.lock:
                flood = self.server.flood_left > 0
                self.server.flood_left -= 1
            if flood:
                self._answer(
                    429,
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": "Too Many Requests: retry after 0",
                        "parameters": {"retry_after": 0},
                    },
                )
                return
            self._answer(200, {"ok": True, "result": {"message_id": 1, "chat": {"id": body["chat_id"]}}})
        else:
            self._answer(404, {"ok": False, "description": "Not Found"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alert_env(
    monkeypatch: pytest.MonkeyPatch, smtp: tuple[Mailbox, int, str], receiver: Receiver
) -> dict[str, str]:
    """The seed documents' environment variables, pointed at the local servers."""
    _, smtp_port, _ = smtp
    base = f"http://127.0.0.1:{receiver.server_address[1]}"
    env = {
        "ALERT_SMTP_SERVER": "127.0.0.1",
        "ALERT_SMTP_PORT": str(smtp_port),
        "ALERT_EMAIL_USER": USER,
        "ALERT_EMAIL_PASS": PASSWORD,
        "ALERT_EMAIL_FROM": USER,
        "ALERT_EMAIL_TO": "ops1@example.com, ops2@example.com",
        "TELEGRAM_ALERT_BOT_TOKEN": TOKEN,
        "TELEGRAM_ALERT_CHAT_IDS": "111,222,333",
        "TELEGRAM_ALERT_BASE_URL": base,
        # a good receiver, one that answers 500, one on a closed port
        "ALERT_WEBHOOK_URLS": f"{base}/hook,{base}/fail,http://127.0.0.1:{free_port()}/closed",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def everything_at_once(**settings: Any) -> AlertConfig:
    kinds = ("log", "webhook", "email", "telegram")
    return AlertConfig(
        escalation=[{"channel": k, "min_level": "info"} for k in kinds],
        retry_initial_delay=0.01,
        retry_max_delay=0.05,
        delivery_attempts=3,
        timeout=5,
        health_interval=0,
        **settings,
    )


def test_one_alert_reaches_every_channel_and_failures_are_counted(
    alert_env: dict[str, str], smtp: tuple[Mailbox, int, str], receiver: Receiver
) -> None:
    mailbox, _, ca_file = smtp
    mailbox.messages.clear()
    config = everything_at_once(email_config={"ca_file": ca_file})
    assert config.channel_kinds() == ("log", "webhook", "email", "telegram")
    bus = EventBus()
    alerts: list[dict[str, Any]] = []
    bus.subscribe(lambda e: alerts.append(e) if e["kind"] == "alert" else None)
    with structlog.testing.capture_logs() as logs, AlertDispatcher(config, event_bus=bus) as dispatcher:
        bus.publish(
            "breaker_transition",
            client="binance",
            exchange="binance",
            endpoint="ticker",
            breaker="binance_ticker",
            old="closed",
            new="open",
        )
        assert dispatcher.wait_idle(30)
        stats = dispatcher.stats()

    channels = stats["channels"]
    assert set(channels) == {
        "log",
        "webhook_1",
        "webhook_2",
        "webhook_3",
        "email",
        "telegram_1",
        "telegram_2",
        "telegram_3",
    }
    # delivered
    for name in ("log", "webhook_1", "email", "telegram_1", "telegram_2"):
        assert (channels[name]["sent"], channels[name]["failed"]) == (1, 0), name
    # the 500 receiver and the closed port: tried three times each, then counted as failed
    for name in ("webhook_2", "webhook_3"):
        assert (channels[name]["sent"], channels[name]["failed"], channels[name]["retries"]) == (0, 1, 2)
    assert "HTTP 500" in channels["webhook_2"]["last_error"]
    assert "ConnectionRefused" in channels["webhook_3"]["last_error"]
    # Telegram refusing a chat is not retried; the 429 flood answer was (retry_after honoured)
    assert (channels["telegram_3"]["failed"], channels["telegram_3"]["retries"]) == (1, 0)
    assert channels["telegram_1"]["retries"] + channels["telegram_2"]["retries"] == 1

    # the webhook got the generic JSON payload
    (hook,) = receiver.posts("/hook")
    assert hook["source"] == "hardened"
    assert hook["alert"]["type"] == "breaker_opened" and hook["alert"]["level"] == "ERROR"
    assert hook["alert"]["exchange"] == "binance" and hook["alert"]["endpoint"] == "ticker"
    assert len(receiver.posts("/fail")) == 3
    # Telegram sendMessage to each chat, HTML parse mode
    sends = receiver.posts(f"/bot{TOKEN}/sendMessage")
    assert sorted({s["chat_id"] for s in sends}) == ["111", "222", "333"]
    assert all(s["parse_mode"] == "HTML" and "breaker_opened" in s["text"] for s in sends)
    # one e-mail, over STARTTLS, after login, to both recipients, with a text and an HTML part
    (mail,) = mailbox.messages
    assert mail["tls"] and mail["login"] == USER
    assert sorted(mail["to"]) == ["ops1@example.com", "ops2@example.com"]
    message = email.message_from_bytes(mail["content"], policy=email.policy.default)
    assert "breaker_opened" in message["Subject"] and message.is_multipart()
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "binance_ticker" in text.get_content() and "<table>" in html.get_content()
    # the structured log line and the bus event
    assert [e["key"] for e in logs if e["event"] == "alert"] == ["breaker_opened:binance_ticker"]
    assert [a["type"] for a in alerts] == ["breaker_opened"]
    assert {"level", "type", "key", "message", "exchange", "endpoint"} <= set(alerts[0])
    assert sum(1 for e in logs if e["event"] == "alert_delivery_failed") == 3


def test_slack_payload_shape(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{receiver.server_address[1]}"
    monkeypatch.setenv("ALERT_WEBHOOK_URLS", f"{base}/slack")
    monkeypatch.setenv("ALERT_WEBHOOK_FORMAT", "slack")
    config = AlertConfig(alert_channels=["webhook"], health_interval=0)
    with AlertDispatcher(config, event_bus=(bus := EventBus())) as dispatcher:
        bus.publish(
            "order_state_unknown",
            exchange="kucoin",
            endpoint="create_order",
            operation="create_order",
            client_order_id="hx-1f2e",
            symbol="BTC/USDT",
            reason="5 lookups did not settle it",
        )
        assert dispatcher.wait_idle(10)
    (payload,) = receiver.posts("/slack")
    assert set(payload) == {"text", "blocks", "attachments"}
    assert "order_state_unknown" in payload["text"] and "hx-1f2e" in payload["text"]
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context"]
    assert payload["attachments"][0]["color"].startswith("#")


def test_slack_text_is_escaped_never_empty_and_cut_whole() -> None:
    """Slack reads &, < and > as control characters: an alert quoting an HTML error page, or
    ``<!channel>``, went out raw (a mention of everyone, a broken message); an empty message made
    a zero-length section text, which Block Kit refuses; a cut could split an entity."""
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import slack_payload

    payload = slack_payload(Alert(Level.ERROR, "custom", "k<1>", "503: <html>busy</html> <!channel> a&b"))
    section = payload["blocks"][1]
    texts = [payload["text"], section["text"]["text"], payload["blocks"][2]["elements"][0]["text"]]
    texts += [f["text"] for f in section["fields"]]
    assert not any("<" in t or ">" in t for t in texts)
    assert "&lt;!channel&gt; a&amp;b" in section["text"]["text"] and "k&lt;1&gt;" in texts[2]
    assert slack_payload(Alert(Level.ERROR, "custom", "k", ""))["blocks"][1]["text"]["text"] != ""
    cut = slack_payload(Alert(Level.ERROR, "custom", "k", "x" + "&" * 5000))
    for text in (cut["text"], cut["blocks"][1]["text"]["text"]):
        assert len(text) <= 3000 and text.endswith("&amp;\u2026")


def test_a_long_telegram_message_is_cut_without_splitting_an_entity_or_the_title() -> None:
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import TelegramChannel

    channel = TelegramChannel("123:abc", "1")
    for pad in range(8):  # every offset of the cut against the five characters of &amp;
        text = channel.text(Alert(Level.ERROR, "custom", "k", "a" * (4060 + pad) + "&" * 20))
        assert len(text) <= 4096 and text.endswith(("&amp;\u2026", "a\u2026"))
    text = channel.text(Alert(Level.ERROR, "t" * 5000, "k", "the message"))
    assert "</b>\n" in text and text.endswith("the message") and len(text) <= 4096


def test_no_secret_reaches_a_log_line_an_event_an_error_or_a_payload(
    alert_env: dict[str, str], smtp: tuple[Mailbox, int, str], receiver: Receiver
) -> None:
    mailbox, _, ca_file = smtp
    config = everything_at_once(
        email_config={"ca_file": ca_file}, error_rate={"per_minute": 1, "count": 1, "window_s": 60}
    )
    assert TOKEN not in repr(config) and PASSWORD not in repr(config)
    assert TOKEN not in str(config.model_dump()) and PASSWORD not in str(config.model_dump())
    bus = EventBus()
    events: list[dict[str, Any]] = []
    bus.subscribe(events.append)
    with structlog.testing.capture_logs() as logs, AlertDispatcher(config, event_bus=bus) as dispatcher:
        # an error message that (somehow) carries both secrets
        bus.publish(
            "call_failed",
            exchange="binance",
            endpoint="ticker",
            error="NetworkError",
            message=f"GET {alert_env['TELEGRAM_ALERT_BASE_URL']}/bot{TOKEN}/x failed; login {PASSWORD}",
        )
        assert dispatcher.wait_idle(30)
        stats = dispatcher.stats()
    fired = [e for e in events if e["kind"] == "alert"]
    assert len(fired) == 1 and "***" in fired[0]["message"]
    everything = json.dumps(
        {
            "logs": logs,
            "events": fired,
            "stats": stats,
            "received": [body for _path, body in receiver.received],  # the path holds the token, by design
            "mail": [m["content"].decode("utf-8", "replace") for m in mailbox.messages],
            "repr": [repr(c) for c in dispatcher.channels()],
        },
        default=str,
    )
    assert stats["channels"]["telegram_3"]["failed"] == 1 and stats["channels"]["webhook_2"]["failed"] == 1
    assert TOKEN not in everything
    assert PASSWORD not in everything
    assert "/fail" not in json.dumps([*logs, stats], default=str)  # webhook URLs are secrets too


def test_an_invalid_config_names_the_field_and_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_ALERT_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_ALERT_CHAT_IDS", "1")
    monkeypatch.setenv("TELEGRAM_ALERT_BASE_URL", f"ftp://{TOKEN}@example.com")
    with pytest.raises(hardened.ConfigError) as caught:
        AlertConfig()
    assert "telegram_config.base_url" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"webhook_config": "https://hooks.example.com/services/T000/B000/SECRETHOOK42"},
        {"telegram_config": TOKEN},
        {"email_config": PASSWORD},
    ],
)
def test_a_section_given_as_a_bare_value_is_refused_without_echoing_it(settings: dict[str, Any]) -> None:
    """``"webhook_config": "https://..."`` (the URL where a table belongs) is a natural slip in a
    monitoring_config.json: the error names the section and never quotes what was given."""
    ((section, value),) = settings.items()
    with pytest.raises(hardened.ConfigError, match=section) as caught:
        AlertConfig(**settings)
    assert value not in str(caught.value) and "SECRETHOOK42" not in str(caught.value)


@pytest.mark.parametrize("bad", [" xyz", "\txyz", "\nX-Injected: 1", "\x7f"])
def test_a_webhook_url_urllib_cannot_send_is_refused_at_configuration(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http.client refuses a space or a control character, quoting the path (the webhook's token):
    such a URL fails at configuration with a message that names the field, not the URL."""
    from hardened.alerts.channels import WebhookChannel

    url = f"http://127.0.0.1:9/api/webhooks/1234/{TOKEN}{bad}"
    with pytest.raises(ValueError, match="spaces or control characters") as caught:
        WebhookChannel(url)
    assert TOKEN not in str(caught.value)
    monkeypatch.setenv("ALERT_WEBHOOK_URLS", url)
    with pytest.raises(hardened.ConfigError, match=r"webhook_config\.urls") as refused:
        AlertConfig()
    assert TOKEN not in str(refused.value)


def test_a_bot_token_urllib_cannot_send_is_refused_at_configuration() -> None:
    from hardened.alerts.channels import TelegramChannel

    with pytest.raises(hardened.ConfigError, match=r"telegram_config\.bot_token.*spaces") as caught:
        AlertConfig(telegram_config={"bot_token": f"{TOKEN} ", "chat_ids": ["1"]})
    assert TOKEN not in str(caught.value)
    with pytest.raises(ValueError, match="bot token must not contain spaces") as refused:
        TelegramChannel(f"{TOKEN}\n", "1")
    assert TOKEN not in str(refused.value)


def test_a_url_urllib_refuses_fails_once_without_quoting_it() -> None:
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import DeliveryError, WebhookChannel
    from hardened.alerts.channels.http import post_json
    from hardened.alerts.sender import ChannelSender

    url = f"http://127.0.0.1:9/api/webhooks/1234/{TOKEN} xyz"
    with pytest.raises(DeliveryError, match="invalid URL") as caught:
        post_json(url, {"text": "hi"}, 1.0, "webhook")
    assert caught.value.retryable is False and TOKEN not in str(caught.value)
    channel = WebhookChannel("http://127.0.0.1:9/api/webhooks/1234/ok")
    channel._url = url  # as if it had slipped past the check
    with structlog.testing.capture_logs() as logs:
        sender = ChannelSender(channel, attempts=3, sleep=lambda _s: None)
        assert sender.deliver(Alert(Level.WARNING, "custom", "k", "hello")) is False
    assert (sender.failed, sender.retries) == (1, 0)
    assert sender.last_error is not None and "invalid URL" in sender.last_error
    assert TOKEN not in json.dumps([logs, sender.counters()], default=str)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirected_webhook_fails_instead_of_counting_a_bodiless_get_as_sent(
    code: int, receiver: Receiver
) -> None:
    """urllib follows a 301/302/303 to a POST with a GET that has no body: the alert reached nobody
    but counted as sent. A redirect is a failure that names the fix, and is not retried."""
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import WebhookChannel
    from hardened.alerts.sender import ChannelSender

    base = f"http://127.0.0.1:{receiver.server_address[1]}"
    sender = ChannelSender(WebhookChannel(f"{base}/moved/{code}"), attempts=3, sleep=lambda _s: None)
    with structlog.testing.capture_logs():
        assert sender.deliver(Alert(Level.ERROR, "custom", "k", "breaker opened")) is False
    assert (sender.sent, sender.failed, sender.retries) == (0, 1, 0)
    assert sender.last_error is not None and f"HTTP {code} redirect not followed" in sender.last_error
    assert [path for path, _ in receiver.received] == [f"/moved/{code}"]  # no GET, no second POST


@pytest.mark.parametrize(
    ("code", "retried"), [(500, True), (507, True), (520, True), (522, True), (501, False), (404, False)]
)
def test_a_passing_5xx_is_retried_and_a_final_one_is_not(
    code: int, retried: bool, receiver: Receiver
) -> None:
    """Only 500/502/503/504 were retried: a Cloudflare 52x in front of a Discord webhook (the
    origin is down for a moment) lost the alert at the first try."""
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import WebhookChannel
    from hardened.alerts.sender import ChannelSender

    base = f"http://127.0.0.1:{receiver.server_address[1]}"
    sender = ChannelSender(WebhookChannel(f"{base}/status/{code}"), attempts=3, sleep=lambda _s: None)
    with structlog.testing.capture_logs():
        delivered = sender.deliver(Alert(Level.ERROR, "custom", "k", "m"))
    assert (delivered, sender.retries) == ((True, 1) if retried else (False, 0))


def trickling_server(answer: bytes, gap: float) -> tuple[int, threading.Event]:
    """A server on 127.0.0.1 that sends ``answer`` one byte every ``gap`` seconds to one client
    (after reading its request, if it sends one first); the event is set when it gives up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.settimeout(0.2)
        with contextlib.suppress(OSError):
            conn.recv(65_536)
        for byte in answer:
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            time.sleep(gap)
        conn.close()
        server.close()
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], done


@pytest.mark.parametrize("kind", ["webhook", "email"])
def test_a_server_trickling_its_answer_cannot_outlast_the_timeout(kind: str) -> None:
    """``timeout`` bounds the whole exchange: urllib's and smtplib's bound each read, and a server
    sending a byte every 0.2 s held the channel's thread for the whole answer (here ~12 s)."""
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import DeliveryError, EmailChannel, WebhookChannel

    if kind == "webhook":
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"x" * 20 + b"\r\n\r\nok"
        port, done = trickling_server(answer, 0.2)
        channel: Any = WebhookChannel(f"http://127.0.0.1:{port}/hook", timeout=0.5)
    else:
        port, done = trickling_server(b"220 slow.example.com ESMTP at your service, eventually\r\n", 0.2)
        channel = EmailChannel("127.0.0.1", port, USER, ["ops@example.com"], security="none", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"no complete (answer|session) within 0.5 s") as caught:
        channel.send(Alert(Level.ERROR, "custom", "k", "m"))
    assert time.monotonic() - started < 3.0
    assert caught.value.retryable
    assert done.wait(5)  # the server saw the connection go


def test_status_stream_carries_alerts_and_delivery_counters() -> None:
    from hardened.telemetry.events import bus

    hardened.stop_alerts()
    dispatcher = hardened.start_alerts(alert_channels=["log"], health_interval=0)
    try:
        assert hardened.start_alerts() is dispatcher  # idempotent
        handle = hardened.start_status_server(port=0, http_port=0)
        try:
            with structlog.testing.capture_logs():
                bus.publish(
                    "breaker_transition",
                    exchange="bitvavo",
                    endpoint="ohlcv",
                    breaker="bitvavo_ohlcv",
                    old="closed",
                    new="open",
                )
                assert dispatcher.wait_idle(10)
            deadline = time.monotonic() + 5
            snapshot: dict[str, Any] = {}
            while time.monotonic() < deadline:
                snapshot = handle.call(handle.server.snapshot)
                if snapshot["alerts"]:
                    break
                time.sleep(0.02)
            (alert,) = [a for a in snapshot["alerts"] if a.get("key") == "breaker_opened:bitvavo_ohlcv"]
            assert alert["level"] == "ERROR" and alert["type"] == "breaker_opened"
            delivery = snapshot["alert_delivery"]
            assert delivery["running"] is True and delivery["fired"] >= 1
            assert delivery["channels"]["log"]["sent"] >= 1
            stats = handle.call(handle.server.stats_message)
            assert stats["alert_delivery"]["channels"]["log"]["kind"] == "log"
            with urllib.request.urlopen(f"{handle.http_url}/metrics", timeout=10) as response:
                metrics = response.read().decode()
            assert 'hardened_alerts_total{channel="log",outcome="sent"}' in metrics
        finally:
            handle.stop()
    finally:
        hardened.stop_alerts()
    assert hardened.alerts.delivery_stats() == {"running": False}


def test_config_file_in_the_seed_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "monitoring_config.json"
    path.write_text(
        json.dumps(
            {
                "enabled": True,
                "check_interval": 60,
                "alert_channels": ["email", "telegram", "log"],
                "email_config": {
                    "smtp_server": "smtp.example.com",
                    "smtp_port": 587,
                    "username": "alerts@example.com",
                    "to_emails": ["admin@example.com"],
                    "from_email": "alerts@example.com",
                },
                "telegram_config": {"bot_token": TOKEN, "chat_ids": ["123456789", 987654321]},
                "webhook_config": {"urls": []},
                "alert_cooldown": 120,
            }
        )
    )
    monkeypatch.setenv("ALERT_EMAIL_PASS", PASSWORD)  # the environment completes the file
    config = AlertConfig.from_file(path)
    assert config.alert_cooldown == 120
    assert config.channel_kinds() == ("email", "telegram", "log")
    assert config.telegram_config.chat_ids == ["123456789", "987654321"]
    assert config.email_config.password is not None
    assert config.email_config.password.get_secret_value() == PASSWORD
    assert config.email_config.smtp_server == "smtp.example.com"
    monkeypatch.setenv("ALERT_COOLDOWN", "30")
    assert AlertConfig.from_file(path).alert_cooldown == 30  # the environment beats the file
    assert AlertConfig.from_file(path, alert_cooldown=10).alert_cooldown == 10  # arguments beat both


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"alert_cooldown": -1}, "alert_cooldown"),
        ({"rate_limits": {"error": {"count": 0, "window_s": 60}}}, "rate_limits.error.count"),
        ({"rate_limits": {"fatal": {"count": 1, "window_s": 60}}}, "rate_limits.fatal"),
        ({"escalation": [{"channel": "sms", "min_level": "error"}]}, "escalation.0.channel"),
        ({"email_config": {"smtp_port": 70000}}, "email_config.smtp_port"),
        ({"email_config": {"to_emails": ["not an address"]}}, "email_config.to_emails"),
        ({"alert_channels": ["email"]}, "email_config.smtp_server"),
        ({"webhook_config": {"urls": ["file:///etc/passwd"]}}, "webhook_config.urls"),
        ({"health_min_score": 30, "health_critical_score": 50}, "health_critical_score"),
        ({"email_config": {"ca_file": "/nonexistent/ca.pem"}}, "email_config.ca_file"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(hardened.ConfigError, match="invalid alert configuration") as caught:
        AlertConfig(**settings)
    assert field in str(caught.value)


def test_a_channel_no_escalation_rule_reaches_is_a_config_error() -> None:
    """``escalation`` replaces the default rules: a list written with the webhook in mind used to
    leave a configured Telegram without a single alert, CRITICAL included, and say nothing."""
    telegram = {"bot_token": TOKEN, "chat_ids": ["1"]}
    hook = {"urls": ["https://hooks.example.com/T000/B000/XXXX"]}
    only_webhook = [{"channel": "webhook", "min_level": "warning"}]
    with pytest.raises(hardened.ConfigError, match="no rule for the telegram channel") as caught:
        AlertConfig(telegram_config=telegram, webhook_config=hook, escalation=only_webhook)
    assert TOKEN not in str(caught.value)
    with pytest.raises(hardened.ConfigError, match="no rule for the log channel"):
        AlertConfig(alert_channels=["log", "webhook"], webhook_config=hook, escalation=only_webhook)
    # the log, only added by default, may go unused; a channel left out of alert_channels too
    assert AlertConfig(webhook_config=hook, escalation=only_webhook).channel_kinds() == ("log", "webhook")
    config = AlertConfig(
        alert_channels=["webhook"], telegram_config=telegram, webhook_config=hook, escalation=only_webhook
    )
    assert config.channel_kinds() == ("webhook",)


def test_a_client_can_start_the_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    import ccxt

    hardened.stop_alerts()
    monkeypatch.setenv("ALERT_CHANNELS", "log")
    client = hardened.HardenedClient(ccxt.binance(), alerts=True)
    try:
        dispatcher = hardened.alerts.current()
        assert dispatcher is not None and [c.kind for c in dispatcher.channels()] == ["log"]
        assert hardened.HardenedClient(ccxt.kucoin(), alerts=True) and hardened.alerts.current() is dispatcher
    finally:
        hardened.stop_alerts()
        client.close()
    assert hardened.alerts.current() is None


def test_alerts_queued_when_the_process_exits_are_still_delivered(receiver: Receiver) -> None:
    """A bot that exits without stop_alerts() (a client with alerts=True never calls it) still
    delivers what it fired last: the dispatcher's daemon threads are stopped and drained at exit."""
    import subprocess
    import sys

    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    script = f"""
import hardened
from hardened.alerts import Alert, Level
dispatcher = hardened.start_alerts(
    alert_channels=["webhook"], webhook_config={{"urls": ["{url}"]}}, health_interval=0
)
for i in range(3):
    dispatcher.fire(Alert(Level.CRITICAL, "custom", f"exit:{{i}}", f"last words {{i}}"))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(body["alert"]["key"] for body in receiver.posts("/hook")) == ["exit:0", "exit:1", "exit:2"]


def test_a_refused_login_fails_at_once_and_never_shows_the_password(smtp: tuple[Mailbox, int, str]) -> None:
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import EmailChannel
    from hardened.alerts.sender import ChannelSender

    mailbox, port, ca_file = smtp
    before = len(mailbox.messages)
    context = ssl.create_default_context(cafile=ca_file)
    wrong = "not-the-password-123"
    alert = Alert(Level.ERROR, "custom", "k", "m")
    with structlog.testing.capture_logs() as logs:
        refused = ChannelSender(
            EmailChannel(
                "127.0.0.1",
                port,
                USER,
                ["ops@example.com"],
                username=USER,
                password=wrong,
                ssl_context=context,
            ),
            attempts=3,
            sleep=lambda _s: None,
        )
        assert refused.deliver(alert) is False
        # without STARTTLS the server does not even offer AUTH: the password is never sent in clear
        clear = ChannelSender(
            EmailChannel(
                "127.0.0.1",
                port,
                USER,
                ["ops@example.com"],
                username=USER,
                password=PASSWORD,
                security="none",
            ),
            attempts=3,
            sleep=lambda _s: None,
        )
        assert clear.deliver(alert) is False
    assert (refused.failed, refused.retries) == (1, 0) and "login refused (535)" in (refused.last_error or "")
    assert (clear.failed, clear.retries) == (1, 0)
    assert len(mailbox.messages) == before
    shown = json.dumps([logs, refused.counters(), clear.counters(), repr(refused.channel)], default=str)
    assert wrong not in shown and PASSWORD not in shown


def test_a_line_break_in_an_alert_title_is_a_space_in_the_subject(smtp: tuple[Mailbox, int, str]) -> None:
    """A custom alert whose type or exchange holds a line break: the mail could not be built, was
    retried with back-off and lost. The subject keeps one line, and nothing is injected."""
    from hardened.alerts import Alert, Level
    from hardened.alerts.channels import EmailChannel
    from hardened.alerts.sender import ChannelSender

    mailbox, port, ca_file = smtp
    before = len(mailbox.messages)
    channel = EmailChannel(
        "127.0.0.1",
        port,
        USER,
        ["ops@example.com"],
        username=USER,
        password=PASSWORD,
        ssl_context=ssl.create_default_context(cafile=ca_file),
    )
    sender = ChannelSender(channel, attempts=3, sleep=lambda _s: None)
    alert = Alert(
        Level.CRITICAL, "custom\ttype", "k", "disk full", exchange="binance\r\nBcc: evil@example.com"
    )
    with structlog.testing.capture_logs():
        assert sender.deliver(alert) is True, sender.last_error
    (mail,) = mailbox.messages[before:]
    assert mail["to"] == ["ops@example.com"]
    message = email.message_from_bytes(mail["content"], policy=email.policy.default)
    assert message["Bcc"] is None
    assert message["Subject"] == "[hardened] [CRITICAL] custom type binance Bcc: evil@example.com"


def test_port_465_without_a_security_setting_speaks_tls_from_the_first_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ALERT_SMTP_PORT=465 alone (SMTPS, as Gmail and most providers document it): the default,
    STARTTLS, waited for a greeting in clear that never came, and every mail failed after the
    timeout. An explicit ``security`` is left as given."""
    monkeypatch.setenv("ALERT_SMTP_SERVER", "smtp.example.com")
    monkeypatch.setenv("ALERT_SMTP_PORT", "465")
    monkeypatch.setenv("ALERT_EMAIL_TO", "ops@example.com")
    monkeypatch.setenv("ALERT_EMAIL_FROM", USER)
    assert AlertConfig().email_config.security == "ssl"
    assert AlertConfig(email_config={"security": "starttls"}).email_config.security == "starttls"
    monkeypatch.setenv("ALERT_SMTP_PORT", "587")
    assert AlertConfig().email_config.security == "starttls"


@pytest.mark.parametrize(
    ("email_config", "field"),
    [
        ({"from_email": USER, "subject_prefix": "[bot]\nBcc: evil@example.com"}, "subject_prefix"),
        ({"from_email": f"{USER}\r\nBcc: evil@example.com"}, "from_email"),
        ({"from_email": "not-an-address"}, "from_email"),
        ({"username": "apikey"}, "from_email"),  # SendGrid's login name is no sender address
    ],
)
def test_a_sender_or_subject_prefix_that_cannot_head_a_mail_is_a_config_error(
    email_config: dict[str, Any], field: str
) -> None:
    settings = {"smtp_server": "127.0.0.1", "to_emails": ["ops@example.com"], **email_config}
    with pytest.raises(hardened.ConfigError, match=f"email_config.{field}"):
        AlertConfig(email_config=settings)
    assert (
        AlertConfig(
            email_config={"smtp_server": "h", "to_emails": ["o@x.com"], "from_email": "Bot <bot@x.com>"}
        ).email_config.from_email
        == "Bot <bot@x.com>"
    )


def test_config_in_a_toml_file_under_an_alerts_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hardened.toml"
    path.write_text(
        """
[hardened]
max_retries = 5

[alerts]
alert_channels = ["log", "webhook"]
alert_cooldown = 60
rate_limits = { error = { count = 3, window_s = 600 } }
escalation = [
  { channel = "log", min_level = "info" },
  { channel = "webhook", min_level = "error", delay_s = 90 },
]
error_rate = { per_minute = 20, count = 50, window_s = 600 }

[alerts.webhook_config]
urls = ["https://hooks.example.com/T000/B000/XXXX"]
format = "slack"
"""
    )
    monkeypatch.setenv("ALERT_CONFIG_FILE", str(path))
    config = AlertConfig()
    assert config.channel_kinds() == ("log", "webhook")
    assert config.rate_limit_rules()[hardened.alerts.Level.ERROR] == hardened.alerts.RateLimit(3, 600.0)
    assert [(r.channel, r.min_level.name, r.delay_s) for r in config.escalation_rules()] == [
        ("log", "INFO", 0.0),
        ("webhook", "ERROR", 90.0),
    ]
    assert (config.error_rate.per_minute, config.error_rate.count) == (20, 50)
    assert config.webhook_config.format == "slack"
    assert "XXXX" not in repr(config)  # a webhook URL is a secret
    assert hardened.HardenedConfig.from_file(path).max_retries == 5  # the client reads its own table


def test_a_typo_in_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "monitoring_config.json"
    path.write_text(json.dumps({"enabled": True, "check_interval": 60, "alert_cooldwn": 60}))
    with pytest.raises(hardened.ConfigError, match="alert_cooldwn"):
        AlertConfig.from_file(path)
    path.write_text("{not json")
    with pytest.raises(hardened.ConfigError, match="not valid JSON"):
        AlertConfig.from_file(path)


def test_cli_sends_a_test_alert_through_every_channel(
    alert_env: dict[str, str],
    smtp: tuple[Mailbox, int, str],
    receiver: Receiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hardened.cli import main

    mailbox, _, ca_file = smtp
    before = len(mailbox.messages)
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"retry_initial_delay": 0.01, "email_config": {"ca_file": ca_file}}))
    with structlog.testing.capture_logs():
        code = main(
            ["alerts", "--config", str(path), "send", "--level", "critical", "--message", "pager test"]
        )
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 1  # the 500 receiver, the closed port and the unknown chat fail
    assert {name for name, result in lines.items() if result == "sent"} == {
        "log",
        "webhook_1",
        "email",
        "telegram_1",
        "telegram_2",
    }
    assert lines["webhook_2"].startswith("FAILED after 4 tries") and "HTTP 500" in lines["webhook_2"]
    assert lines["telegram_3"].startswith("FAILED after 1 tries")
    assert len(mailbox.messages) == before + 1
    assert [b["alert"]["message"] for b in receiver.posts("/hook")] == ["pager test"]
    assert TOKEN not in out and PASSWORD not in out

    assert main(["alerts", "--config", str(path), "show"]) == 0
    shown = capsys.readouterr().out
    assert "telegram_3" in shown and "critical 5 per 300 s" in shown
    assert TOKEN not in shown and PASSWORD not in shown and "/fail" not in shown
