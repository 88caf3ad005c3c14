"""structlog set-up for hardened and the bots around it: redaction first, then the renderer.

``configure_logging()`` installs one processor list (contextvars, level, timestamp, redaction of
secrets, exception formatting, then a console or JSON renderer) and a filtering bound logger, so
that a ``log.debug(...)`` below the level is a no-op that formats nothing.

Without it (a bot that never sets structlog up), importing hardened adds the redaction to
structlog's default processors, before the renderer: a secret is masked there too. A set-up of
the user's own, made before or after, is left as it is.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from hardened.telemetry.redact import redact_event

__all__ = ["configure_logging", "redact_by_default"]


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return number


def configure_logging(
    level: str | int = "INFO", json: bool = False, *, stream: TextIO | None = None
) -> list[Any]:
    """Configure structlog: ``level`` filters, ``json=True`` renders one JSON object per line.

    Lines go to ``stream`` (standard error by default, so a command's own output stays clean).
    Returns the processor list, in order, for inspection.
    """
    number = _level_number(level)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_event,
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        # Not cached: a later configure_logging() call must reach loggers created at import time.
        cache_logger_on_first_use=False,
    )
    return processors


def redact_by_default() -> bool:
    """Put ``redact_event`` before the renderer of structlog's defaults, unless structlog has been
    configured already (by the user: theirs stays untouched). Returns whether it did.

    The default processor list is changed in place rather than through ``structlog.configure``,
    which would mark structlog as configured: a bot's own ``configure_once()`` (or a check of
    ``is_configured()``) made after importing hardened would then be ignored, with only a warning.
    """
    if structlog.is_configured():
        return False
    processors = structlog.get_config()["processors"]  # structlog's live default list
    if redact_event in processors:
        return True
    if isinstance(processors, list):
        processors.insert(max(len(processors) - 1, 0), redact_event)
        if redact_event in structlog.get_config()["processors"]:
            return True
    # a structlog that hands out a copy: configure after all (redaction matters more)
    chain = [p for p in processors if p is not redact_event]
    chain.insert(max(len(chain) - 1, 0), redact_event)
    structlog.configure(processors=chain)
    return True


redact_by_default()
