"""What every channel is: a name, a kind, and a blocking ``send(alert)`` run in its sender thread.

``send`` raises ``DeliveryError`` when the alert did not get through; ``retryable`` tells the sender
whether trying again can help (a 5xx, a timeout, Telegram's 429 with ``retry_after``) or not (a
401, a refused login). Messages a channel writes into errors never carry credentials or target
URLs (a Telegram bot token sits in the URL path; a Slack webhook URL is itself the secret).
"""

from __future__ import annotations

import html
from abc import ABC, abstractmethod
from datetime import UTC, datetime

from hardened.alerts.alert import Alert, Level

__all__ = ["Channel", "DeliveryError", "cut_escaped", "render_html", "render_text"]

# Emoji per level, as in the seed documents' alert levels.
LEVEL_MARK = {
    Level.INFO: "\u2139\ufe0f",
    Level.WARNING: "\u26a0\ufe0f",
    Level.ERROR: "\u274c",
    Level.CRITICAL: "\U0001f6a8",
}


class DeliveryError(Exception):
    """The channel could not deliver; ``retryable`` and ``retry_after`` guide the sender."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(ABC):
    """One delivery target (one webhook URL, one Telegram chat, one mail to all recipients)."""

    kind: str = "channel"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert``, blocking; raise ``DeliveryError`` on failure."""

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line or an error (tokens, passwords, URLs)."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook: most channels hold no connection
        """Release what the channel holds (nothing by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def cut_escaped(text: str, limit: int) -> str:
    """``text`` (entity-escaped) in at most ``limit`` characters, an ellipsis marking a cut that
    never splits an entity such as ``&amp;`` (a broken one shows as garbage, or is refused)."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    amp = cut.rfind("&", max(0, len(cut) - 9))  # the longest entity we write: &#x27; / &quot;
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "\u2026"


def _when(alert: Alert) -> str:
    return datetime.fromtimestamp(alert.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_text(alert: Alert) -> str:
    """Plain text: title, message, where and when, details."""
    lines = [alert.title, "", alert.message, "", f"time: {_when(alert)}", f"key: {alert.key}"]
    lines += [f"{name}: {value}" for name, value in alert.details.items() if name != "groups"]
    return "\n".join(lines)


def render_html(alert: Alert) -> str:
    """A small self-contained HTML body (no external resources), every value escaped."""
    rows = [("level", alert.level.name), ("type", str(alert.type)), ("time", _when(alert))]
    rows += [("exchange", alert.exchange or "-"), ("endpoint", alert.endpoint or "-"), ("key", alert.key)]
    rows += [(n, str(v)) for n, v in alert.details.items() if n != "groups"]
    cells = "".join(
        f"<tr><th align='left'>{html.escape(n)}</th><td>{html.escape(v)}</td></tr>" for n, v in rows
    )
    message = html.escape(alert.message).replace("\n", "<br>")
    return (
        "<html><body>"
        f"<h2>{LEVEL_MARK[alert.level]} {html.escape(alert.title)}</h2>"
        f"<p>{message}</p><table>{cells}</table>"
        "<p><small>sent by hardened alerts</small></p></body></html>"
    )
