"""The main job: `hardened demo` runs hardened clients against the simulator and stops cleanly."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("exchanges", ["", " , ,"])
def test_demo_refuses_an_empty_exchange_list(exchanges: str) -> None:
    """Not a demo of nothing that exits 0."""
    out = io.StringIO()
    args = build_parser().parse_args(
        ["--exchanges", exchanges, "--no-status", "--no-alerts", "--duration", "1"]
    )
    assert run_demo(args, Console(file=out, width=120)) == 2
    assert "names no exchange" in out.getvalue()


def test_demo_names_an_unknown_profile_in_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["--profile", "no-such-profile", "--no-status", "--no-alerts", "--duration", "1"]
    )
    assert run_demo(args, Console(file=io.StringIO(), width=120)) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardened demo: unknown fault profile 'no-such-profile'") and "lively" in err


def test_one_port_for_the_websocket_and_the_page_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    """Not "port in use, perhaps by another demo": the demo itself asked for the port twice."""
    args = build_parser().parse_args(["--status-port", "18791", "--http-port", "18791", "--no-alerts"])
    assert run_demo(args, Console(file=io.StringIO(), width=120)) == 2
    err = capsys.readouterr().err
    assert "--status-port and --http-port are both 18791" in err and "perhaps by another demo" not in err


def test_demo_ends_at_its_duration_even_with_a_longer_refresh_interval() -> None:
    """The loop waited a whole ``--interval`` before looking at the deadline: ``--duration 1
    --interval 60`` ran for a minute."""
    flags = ["--duration", "1", "--interval", "60", "--no-status", "--no-alerts"]
    args = build_parser().parse_args([*flags, "--exchanges", "binance", "--bots", "1"])
    out = io.StringIO()
    started = time.monotonic()
    assert run_demo(args, Console(file=out, width=160, force_terminal=False)) == 0
    assert time.monotonic() - started < 30  # about 1 s of demo and the start-up, not 60 s
    assert "ground truth" in out.getvalue()


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


def busy_port() -> socket.socket:
    """A listening socket on a free loopback port: what a first demo holds."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_second_demo_on_a_busy_status_port_names_the_flag_and_exits_2() -> None:
    with busy_port() as taken:
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "hardened.cli", "demo", "--duration", "1", "--bots", "1"]
        result = subprocess.run(
            [*command, "--status-port", str(port), "--http-port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "--status-port" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_busy_http_port_names_its_own_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with busy_port() as taken:
        port = taken.getsockname()[1]
        args = build_parser().parse_args(["--status-port", "0", "--http-port", str(port), "--bots", "1"])
        assert run_demo(args, Console(file=io.StringIO())) == 2
    err = capsys.readouterr().err
    assert f"port {port}" in err and "--http-port" in err


def test_the_demo_says_which_weather_it_runs() -> None:
    out = io.StringIO()
    args = build_parser().parse_args(["--duration", "1", "--interval", "1", "--no-status", "--bots", "1"])
    assert run_demo(args, Console(file=out, width=200)) == 0
    assert build_parser().get_default("profile") == "lively"
    assert "profile=lively" in out.getvalue()
    import hardened.demo

    doc = hardened.demo.__doc__ or ""
    assert "lively" in doc and "storm" not in doc.split("\n", 1)[0]


HANGING_CALLS = """
name = "hanging_calls"
description = "Every market-data and balance request hangs past the client's timeout."

[[faults]]
kind = "timeout"
endpoints = ["ticker", "ohlcv", "order_book", "trades", "balance"]
probability = 1.0
hold = 30
"""


def test_ctrl_c_stops_the_demo_within_seconds_even_with_calls_in_flight(tmp_path: Path) -> None:
    """Bots stuck in retries of hanging calls must not hold up Ctrl-C (they once took 15 s)."""
    profile = tmp_path / "hanging.toml"
    profile.write_text(HANGING_CALLS, encoding="utf-8")
    command = [sys.executable, "-m", "hardened.cli", "demo", "--profile", str(profile), "--no-status"]
    proc = subprocess.Popen(
        [*command, "--exchanges", "binance,kucoin", "--bots", "2", "--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the first summary: the bots run and Ctrl-C is handled
            if "hardened demo" in line:
                break
        time.sleep(1.0)  # every bot is now inside a call that hangs, retried with back-off
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        rest, _ = proc.communicate(timeout=5)  # the failure guard: far more than it needs
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest[-2000:]
    assert "simulator ground truth" in rest  # it stopped cleanly, with its final summary
    assert took < 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "-5"], "argument --duration: must not be negative, got -5"),
        (["--duration", "nan"], "argument --duration: must be a finite number"),
        (["--bots", "0"], "argument --bots: must be at least 1, got 0"),
        (["--bots", "-2"], "argument --bots: must be at least 1, got -2"),
        (["--bots", "two"], "argument --bots: expected a whole number, got 'two'"),
        (["--interval", "-1"], "argument --interval: must be above 0, got -1"),
        (["--interval", "0"], "argument --interval: must be above 0, got 0"),
        (["--status-port", "70000"], "argument --status-port: must be a port number 0-65535"),
        (["--http-port", "-1"], "argument --http-port: must be a port number 0-65535"),
    ],
)
def test_bad_demo_options_are_refused_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--duration -5`` ran forever, ``--bots 0`` ran nothing, ``--interval -1`` spun a core."""
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_zero_duration_and_port_zero_stay_allowed() -> None:
    args = build_parser().parse_args(
        ["--duration", "0", "--status-port", "0", "--http-port", "0", "--bots", "1"]
    )
    assert (args.duration, args.status_port, args.http_port, args.bots) == (0.0, 0, 0, 1)
