"""The ``hardened`` command: ``demo`` (the main job), ``sim``, ``monitor``, ``bench``, ``train``, ``report``.

Each subcommand lives in its own module and exposes ``main_argv(argv)``; this file only routes,
so ``hardened --help`` lists what is there and every subcommand's ``--help`` is its own.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "run"]

COMMANDS = {
    "demo": ("hardened.demo", "hardened clients against the simulator, status server on, live summary"),
    "sim": ("hardened.sim", "run the exchange simulator as a server"),
    "monitor": ("hardened.monitor", "live dashboard of a running status server"),
    "bench": ("hardened.bench", "endpoint benchmarks against raw ccxt, in the same run"),
    "train": ("hardened.train", "fit the learning gate from the record store and print its evaluation"),
    "report": ("hardened.report", "health, errors, anomalies and learning progress from the record store"),
    "alerts": ("hardened.alerts.cli", "show the alert configuration, send a test alert to every channel"),
}


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
