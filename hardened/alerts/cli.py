"""``hardened alerts``: check the alert configuration, and send a test alert through every channel.

    hardened alerts show                 # channels, cooldown, rate limits, escalation (secrets masked)
    hardened alerts send                 # one test alert to every configured channel, at once
    hardened alerts send --level critical --message "pager test"

``send`` ignores escalation delays and cooldowns (it is a test of the targets, not of the rules),
prints each channel's result and exits 1 if any channel failed, so it fits a deploy check.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hardened.alerts.alert import Alert, AlertType, Level
from hardened.alerts.channels import build_channels
from hardened.alerts.config import AlertConfig
from hardened.alerts.sender import ChannelSender
from hardened.config import ConfigError

__all__ = ["build_parser", "main_argv"]


def build_parser() -> argparse.ArgumentParser:
    """The ``hardened alerts`` options."""
    parser = argparse.ArgumentParser(prog="hardened alerts", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", help="a TOML or JSON file (default: ALERT_CONFIG_FILE, then the environment)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="print the effective configuration, secrets masked")
    send = sub.add_parser("send", help="send one test alert through every configured channel")
    send.add_argument("--level", default="warning", choices=[level.name.lower() for level in Level])
    send.add_argument("--message", default="test alert from `hardened alerts send`: this channel works")
    return parser


def _show(config: AlertConfig) -> None:
    print(f"channels:   {', '.join(config.channel_kinds())}")
    for channel in build_channels(config):
        print(f"  {channel!r}")
    print(f"cooldown:   {config.alert_cooldown:g} s per alert key")
    limits = ", ".join(
        f"{lvl.name.lower()} {lim.count} per {lim.window_s:g} s"
        for lvl, lim in config.rate_limit_rules().items()
    )
    print(f"rate limits: {limits or 'none'}")
    print("escalation:")
    for rule in config.escalation_rules():
        when = "at once" if rule.delay_s == 0 else f"after {rule.delay_s:g} s if still firing"
        print(f"  {rule.min_level.name:<8} and worse -> {rule.channel:<8} {when}")


def _send(config: AlertConfig, level: str, message: str) -> int:
    alert = Alert(Level.parse(level), AlertType.CUSTOM, "custom:hardened-alerts-send", message)
    secrets = config.secrets()
    failures = 0
    for channel in build_channels(config):
        sender = ChannelSender(
            channel,
            attempts=config.delivery_attempts,
            initial_delay=config.retry_initial_delay,
            max_delay=config.retry_max_delay,
            secrets=secrets,
        )
        if sender.deliver(alert):
            print(f"{channel.name:<12} sent")
        else:
            failures += 1
            print(f"{channel.name:<12} FAILED after {sender.retries + 1} tries: {sender.last_error}")
    return 1 if failures else 0


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``hardened alerts``."""
    args = build_parser().parse_args(argv)
    try:
        config = AlertConfig.from_file(args.config) if args.config else AlertConfig()
    except ConfigError as exc:
        print(f"hardened alerts: {exc}")
        return 2
    if args.command == "show":
        _show(config)
        return 0
    return _send(config, args.level, args.message)
