"""The e-mail channel: stdlib ``smtplib`` with STARTTLS (or implicit TLS) and login; text + HTML parts.

Blocking, in its sender thread, with a timeout. One message per alert to every recipient.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from hardened.alerts.alert import Alert
from hardened.alerts.channels import deadline as _deadline
from hardened.alerts.channels.base import Channel, DeliveryError, render_html, render_text

__all__ = ["EmailChannel"]

Security = Literal["starttls", "ssl", "none"]
# Line breaks and other control characters: never in a header (the mail could not be built, or in a
# laxer library a second header could be injected), so a subject has them as spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _watched(smtp: smtplib.SMTP, sock: socket.socket) -> socket.socket:
    """Hand ``smtp`` to the thread's ``Deadline`` as soon as it has a socket (smtplib's timeout
    bounds each read, so a server trickling its replies could hold the sender's thread)."""
    smtp.sock = sock  # smtplib assigns it on return: set now, so the deadline never misses it
    deadline = _deadline.current()
    if deadline is not None:
        deadline.watch(smtp)
    return sock


class _SMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _watched(self, super()._get_socket(host, port, timeout))


class _SMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _watched(self, super()._get_socket(host, port, timeout))


class EmailChannel(Channel):
    """Mails each alert (subject = its title) with a plain-text and an HTML alternative.

    Args:
        security: ``starttls`` (port 587: upgrade, then log in), ``ssl`` (port 465: TLS from the
            start) or ``none`` (no encryption; login is then refused unless the server allows it).
        ssl_context: how to verify the server (default: the system's CAs, hostname checked).
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int,
        from_addr: str,
        to_addrs: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        security: Security = "starttls",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        subject_prefix: str = "[hardened]",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not host:
            raise ValueError(f"{self.name} needs an SMTP server")
        if not to_addrs:
            raise ValueError(f"{self.name} needs at least one recipient")
        for what, value in (("from address", from_addr), ("subject prefix", subject_prefix)):
            if _CONTROL.search(value):
                raise ValueError(f"{self.name} {what} must not contain line breaks or control characters")
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"{self.name} security must be starttls, ssl or none, got {security!r}")
        self.host = host
        self.port = port
        self.from_addr = from_addr
        self.to_addrs = tuple(to_addrs)
        self.username = username
        self._password = password
        self.security = security
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self.subject_prefix = subject_prefix

    def message(self, alert: Alert) -> EmailMessage:
        """The mail for ``alert``: multipart/alternative, text first, HTML second."""
        msg = EmailMessage()
        msg["Subject"] = _CONTROL.sub(" ", f"{self.subject_prefix} {alert.title}").strip()
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = formatdate(alert.ts, localtime=False)
        msg["Message-ID"] = make_msgid(domain="hardened.alerts")
        msg.set_content(render_text(alert))
        msg.add_alternative(render_html(alert), subtype="html")
        return msg

    def send(self, alert: Alert) -> None:
        try:
            msg = self.message(alert)
        except ValueError as exc:  # the same alert would fail the same way: no retry
            raise DeliveryError(f"{self.name}: cannot build the mail: {exc}", retryable=False) from None
        deadline = _deadline.Deadline(self.timeout)  # the timeout bounds the whole session
        try:
            with deadline:
                self._session(msg)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            if deadline.expired:
                raise DeliveryError(
                    f"{self.name}: no complete session within {self.timeout:g} s", retryable=True
                ) from None
            raise _failure(exc, self.name) from None

    def _session(self, msg: EmailMessage) -> None:
        """Connect, secure, log in and send ``msg``: one SMTP session."""
        if self.security == "ssl":
            smtp: smtplib.SMTP = _SMTPSSL(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            smtp = _SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=self.ssl_context)
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(msg)

    def secrets(self) -> tuple[str, ...]:
        return (self._password,) if self._password else ()

    def __repr__(self) -> str:
        return f"<EmailChannel {self.name} {self.host}:{self.port} to={len(self.to_addrs)}>"


def _failure(exc: Exception, name: str) -> DeliveryError:
    """The ``DeliveryError`` for a session that raised ``exc``: refusals are final, the rest retried."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(f"{name}: login refused ({exc.smtp_code})", retryable=False)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"{name}: server does not support {exc}", retryable=False)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return DeliveryError(f"{name}: every recipient refused", retryable=False)
    return DeliveryError(f"{name}: {type(exc).__name__}: {exc}", retryable=True)
