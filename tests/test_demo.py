"""The main job: `hardened demo` runs hardened clients against the simulator and stops cleanly."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from hardened.cli import main
from hardened.demo import build_parser, run_demo


def test_demo_runs_all_three_exchanges_and_prints_a_summary() -> None:
    args = build_parser().parse_args(
        ["--duration", "4", "--interval", "2", "--status-port", "0", "--http-port", "0", "--seed", "3"]
    )
    out = io.StringIO()
    code = run_demo(args, Console(file=out, width=160, force_terminal=False))
    text = out.getvalue()
    assert code == 0
    for name in ("binance_ticker", "kucoin_ohlcv", "bitvavo_order_book", "health", "ground truth"):
        assert name in text
    assert "status: ws://127.0.0.1:" in text


def test_demo_refuses_an_exchange_the_simulator_does_not_speak() -> None:
    out = io.StringIO()
    args = build_parser().parse_args(["--exchanges", "binance,nosuchex", "--no-status"])
    assert run_demo(args, Console(file=out, width=120)) == 2
    assert "nosuchex" in out.getvalue()


def test_cli_routes_and_explains() -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_cli_entry_point_runs_the_demo() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hardened.cli", "demo", "--duration", "2", "--no-status", "--bots", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "binance" in result.stdout
