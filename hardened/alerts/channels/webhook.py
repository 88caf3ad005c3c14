"""The webhook channel: a JSON POST of the alert, or a Slack-compatible payload.

Generic format: ``{"alert": {level, type, key, message, exchange, endpoint, ts, details},
"source": "hardened"}``. Slack format (``format="slack"``, Slack incoming webhooks and the many
tools that accept their shape): ``{"text": ..., "blocks": [...], "attachments": [{"color": ...}]}``.
"""

from __future__ import annotations

from typing import Any, Literal

from hardened.alerts.alert import Alert, Level
from hardened.alerts.channels.base import LEVEL_MARK, Channel, cut_escaped
from hardened.alerts.channels.http import check_url, post_json

__all__ = ["WebhookChannel", "slack_payload"]

WebhookFormat = Literal["json", "slack"]
_COLOR = {Level.INFO: "#439FE0", Level.WARNING: "#DAA038", Level.ERROR: "#D00000", Level.CRITICAL: "#7D0000"}


def _escape(text: str) -> str:
    """Slack's control characters as entities: ``<!channel>`` in an alert must not notify a
    channel, nor ``<url|text>`` become a link (api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack's incoming-webhook shape: fallback ``text``, ``blocks`` to show, a coloured attachment.

    Every text from the alert is escaped for Slack; a text object is never empty (Block Kit
    refuses one) nor longer than its 3000 characters.
    """
    headline = f"{LEVEL_MARK[alert.level]} {alert.title}"
    message = _escape(alert.message) or "-"
    fields = [
        {"type": "mrkdwn", "text": cut_escaped(f"*{name}*\n{_escape(value)}", 2000)}
        for name, value in (
            ("level", alert.level.name),
            ("type", str(alert.type)),
            ("exchange", alert.exchange or "-"),
            ("endpoint", alert.endpoint or "-"),
        )
    ]
    return {
        "text": cut_escaped(f"{_escape(headline)}: {message}", 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": cut_escaped(message, 3000)},
                "fields": fields,
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": cut_escaped(f"key `{_escape(alert.key)}` - hardened", 3000)}
                ],
            },
        ],
        "attachments": [{"color": _COLOR[alert.level], "fallback": alert.title, "ts": int(alert.ts)}],
    }


class WebhookChannel(Channel):
    """POSTs each alert to one URL (one channel per URL, so one failing target never resends to another)."""

    kind = "webhook"

    def __init__(
        self, url: str, *, format: WebhookFormat = "json", timeout: float = 10.0, name: str | None = None
    ) -> None:
        super().__init__(name)
        self._url = check_url(url, f"{self.name} url")
        if format not in ("json", "slack"):
            raise ValueError(f"{self.name} format must be 'json' or 'slack', got {format!r}")
        self.format = format
        self.timeout = timeout

    def payload(self, alert: Alert) -> dict[str, Any]:
        """What is POSTed for ``alert``."""
        if self.format == "slack":
            return slack_payload(alert)
        return {"source": "hardened", "alert": alert.to_dict()}

    def send(self, alert: Alert) -> None:
        post_json(self._url, self.payload(alert), self.timeout, self.name)

    def secrets(self) -> tuple[str, ...]:
        return (self._url,)

    def __repr__(self) -> str:  # the URL is often the secret (Slack, Discord): never shown
        return f"<WebhookChannel {self.name} format={self.format}>"
