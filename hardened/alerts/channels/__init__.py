"""Alert channels: structured log, webhook (JSON or Slack), e-mail (SMTP) and Telegram.

``build_channels(config)`` makes one channel per target: one per webhook URL and one per Telegram
chat, so a target that fails is retried alone and never makes another receive an alert twice.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from hardened.alerts.channels.base import Channel, DeliveryError, render_html, render_text
from hardened.alerts.channels.email import EmailChannel
from hardened.alerts.channels.log import LogChannel
from hardened.alerts.channels.telegram import TelegramChannel
from hardened.alerts.channels.webhook import WebhookChannel, slack_payload

if TYPE_CHECKING:
    from hardened.alerts.config import AlertConfig

__all__ = [
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "LogChannel",
    "TelegramChannel",
    "WebhookChannel",
    "build_channels",
    "render_html",
    "render_text",
    "slack_payload",
]


def _numbered(kind: str, index: int, total: int) -> str:
    return kind if total == 1 else f"{kind}_{index + 1}"


def build_channels(config: AlertConfig) -> list[Channel]:
    """The channels ``config`` asks for, one per target."""
    channels: list[Channel] = []
    kinds = config.channel_kinds()
    if "log" in kinds:
        channels.append(LogChannel())
    if "webhook" in kinds:
        hooks = config.webhook_config
        channels += [
            WebhookChannel(
                url.get_secret_value(),
                format=hooks.format,
                timeout=config.timeout,
                name=_numbered("webhook", i, len(hooks.urls)),
            )
            for i, url in enumerate(hooks.urls)
        ]
    if "email" in kinds:
        mail = config.email_config
        context = ssl.create_default_context(cafile=mail.ca_file) if mail.ca_file else None
        channels.append(
            EmailChannel(
                mail.smtp_server or "",
                mail.smtp_port,
                mail.from_email or mail.username or "",
                mail.to_emails,
                username=mail.username,
                password=mail.password.get_secret_value() if mail.password else None,
                security=mail.security,
                ssl_context=context,
                timeout=config.timeout,
                subject_prefix=mail.subject_prefix,
            )
        )
    if "telegram" in kinds:
        tg = config.telegram_config
        token = tg.bot_token.get_secret_value() if tg.bot_token else ""
        channels += [
            TelegramChannel(
                token,
                chat,
                base_url=tg.base_url,
                timeout=config.timeout,
                name=_numbered("telegram", i, len(tg.chat_ids)),
            )
            for i, chat in enumerate(tg.chat_ids)
        ]
    return channels
