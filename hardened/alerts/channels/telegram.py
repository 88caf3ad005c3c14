"""The Telegram channel: Bot API ``sendMessage`` to one chat, base URL configurable.

The bot token is part of the URL path (``{base_url}/bot<token>/sendMessage``), so the URL is never
logged or put into an error; Telegram's ``{"ok": false, "parameters": {"retry_after": n}}`` answer
to flooding is honoured by the sender.
"""

from __future__ import annotations

import html
import json

from hardened.alerts.alert import Alert
from hardened.alerts.channels.base import LEVEL_MARK, Channel, DeliveryError, cut_escaped
from hardened.alerts.channels.http import check_sendable, check_url, post_json

__all__ = ["TelegramChannel"]

TELEGRAM_API = "https://api.telegram.org"
_LIMIT = 4096  # Telegram's longest message text


class TelegramChannel(Channel):
    """Sends each alert as an HTML-formatted message to ``chat_id``."""

    kind = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        base_url: str = TELEGRAM_API,
        timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not token:
            raise ValueError(f"{self.name} needs a bot token")
        if not str(chat_id):
            raise ValueError(f"{self.name} needs a chat id")
        check_url(base_url, f"{self.name} base_url")
        check_sendable(token, f"{self.name} bot token")  # it goes into the URL's path
        self._token = token
        self.chat_id = str(chat_id)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def text(self, alert: Alert) -> str:
        """The message: bold title, the message escaped for Telegram's HTML mode, cut to Telegram's
        limit without splitting an entity or the title's tag."""
        head = f"{LEVEL_MARK[alert.level]} <b>{cut_escaped(html.escape(alert.title), 512)}</b>\n"
        return head + cut_escaped(html.escape(alert.message), _LIMIT - len(head))

    def send(self, alert: Alert) -> None:
        url = f"{self.base_url}/bot{self._token}/sendMessage"
        payload = {
            "chat_id": self.chat_id,
            "text": self.text(alert),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        _, body = post_json(url, payload, self.timeout, self.name)
        try:
            answer = json.loads(body)
        except ValueError:
            raise DeliveryError(f"{self.name}: answer is not JSON", retryable=True) from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            description = answer.get("description") if isinstance(answer, dict) else None
            raise DeliveryError(f"{self.name}: refused: {description}", retryable=False)

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def __repr__(self) -> str:
        return f"<TelegramChannel {self.name} chat={self.chat_id}>"
