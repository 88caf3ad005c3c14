"""The ``hardened`` command: ``demo`` (the main job), ``sim``, ``monitor``, ``bench``, ``train``, ``report``.

Each subcommand lives in its own module and exposes ``main_argv(argv)``; this file only routes,
so ``hardened --help`` lists what is there and every subcommand's ``--help`` is its own.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import sys
from collections.abc import Sequence

__all__ = ["main", "non_negative_float", "port_number", "positive_float", "positive_int", "run"]

COMMANDS = {
    "demo": ("hardened.demo", "hardened clients against the simulator, status server on, live summary"),
    "sim": ("hardened.sim", "run the exchange simulator as a server"),
    "monitor": ("hardened.monitor", "live dashboard of a running status server"),
    "bench": ("hardened.bench", "endpoint benchmarks against raw ccxt, in the same run"),
    "train": ("hardened.train", "fit the learning gate from the record store and print its evaluation"),
    "report": ("hardened.report", "health, errors, anomalies and learning progress from the record store"),
    "alerts": ("hardened.alerts.cli", "show the alert configuration, send a test alert to every channel"),
}


# --- argument types: argparse reports their message as "argument --bots: must be at least 1, got 0"


def _parsed(text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count that must be at least 1 (``--bots``)."""
    value = int(_parsed(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """Seconds that must be above 0 (``--interval``: 0 would spin)."""
    value = _parsed(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """Seconds that may be 0 (``--duration 0``: until Ctrl-C) but not negative."""
    value = _parsed(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (0: the system picks a free one)."""
    value = int(_parsed(text, int))
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0 picks a free one), got {value}")
    return value


def _usage() -> str:
    lines = ["usage: hardened COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "run 'hardened COMMAND --help' for a command's options"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Route ``argv`` to a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"hardened: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main_argv(rest) or 0)
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The ``hardened`` console script: run the command and exit with its code.

    The command has closed what it opened by then; freezing the garbage collector spares the
    interpreter a last collection of ccxt's large object graph at exit (about a second of the
    time Ctrl-C takes to end ``hardened demo``).
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
