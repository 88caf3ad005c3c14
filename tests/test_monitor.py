"""``hardened monitor``: --once prints the dashboard, --export writes the snapshot, errors exit 2."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest
from rich.console import Console

from hardened import HardenedClient
from hardened import monitor as monitor_module
from hardened.monitor import DashboardState, main_argv, render
from hardened.status import StatusServerHandle, start_status_server


def fresh_ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
    """A clean ticker stamped now (the validation stage refuses stale ones)."""
    return {
        "symbol": "BTC/USDT",
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "timestamp": int(time.time() * 1000),
    }


@pytest.fixture
def client() -> Iterator[HardenedClient]:
    ex = ccxt.binance()
    ex.fetch_ticker = fresh_ticker

    def down(*_a: Any, **_k: Any) -> Any:
        raise ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")

    ex.fetch_order_book = down
    c = HardenedClient(ex, max_retries=0, failure_threshold=2, cache_ttl=0, stale_if_error=0)
    for _ in range(5):
        c.fetch_ticker("BTC/USDT")
    for _ in range(3):
        with pytest.raises(ccxt.NetworkError):
            c.fetch_order_book("BTC/USDT")
    yield c
    c.close()


@pytest.fixture
def server(client: HardenedClient) -> Iterator[StatusServerHandle]:
    with start_status_server(
        port=0, http_port=None, stats_source=lambda: {client.client_name: client.stats()}
    ) as h:
        yield h


def test_once_prints_the_dashboard(
    server: StatusServerHandle, client: HardenedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_argv(["--url", server.url, "--once"]) == 0
    out = capsys.readouterr().out
    assert "HARDENED MONITOR" in out
    assert "binance_order_book" in out and "OPEN" in out
    assert "binance_ticker" in out and "CLOSED" in out
    assert "ExchangeNotAvailable" in out  # error types from the tracker
    assert "breaker open" in out  # health reasons
    status = client.health()["status"]  # an open breaker on 3 of 8 calls costs points, not all
    assert status != "excellent" and status.upper() in out


def test_export_writes_the_snapshot(
    server: StatusServerHandle, client: HardenedClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "snapshot.json"
    assert main_argv(["--url", server.url, "--export", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # --export alone writes and exits without the printout
    assert str(target) in captured.err
    data = json.loads(target.read_text())
    assert data["type"] == "snapshot" and data["version"] == 1
    view = data["clients"][client.client_name]
    assert view["breakers"]["binance_order_book"]["state"] == "open"
    assert view["endpoints"]["ticker"]["calls"] == 5
    assert "exported_at" in data
    assert main_argv(["--url", server.url, "--once", "--export", str(target)]) == 0
    assert "binance_order_book" in capsys.readouterr().out


def test_token_is_sent_and_a_refusal_exits_2(
    client: HardenedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    source = {"stats_source": lambda: {client.client_name: client.stats()}}
    with start_status_server(port=0, http_port=None, token="tok-123", **source) as h:
        assert main_argv(["--url", h.url, "--once"]) == 2
        assert "refused the token" in capsys.readouterr().err
        assert main_argv(["--url", h.url, "--once", "--token", "tok-123"]) == 0
        assert "binance_order_book" in capsys.readouterr().out


def test_export_to_a_place_that_cannot_be_written_is_one_line_and_exit_1(
    server: StatusServerHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory (or a missing parent under a read-only tree) ended in a traceback."""
    assert main_argv(["--url", server.url, "--export", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hardened monitor: cannot write {tmp_path}:") and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_unreachable_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_argv(["--url", "ws://127.0.0.1:9", "--once", "--timeout", "2"]) == 2
    assert "cannot read ws://127.0.0.1:9" in capsys.readouterr().err


def test_bad_interval_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_argv(["--interval", "0"]) == 2


@pytest.mark.parametrize(
    "flags",
    [
        ["--timeout", "nan"],
        ["--timeout", "-1"],
        ["--timeout", "0"],
        ["--interval", "nan"],
        ["--interval", "inf"],
    ],
)
def test_a_timeout_or_interval_that_is_not_a_positive_number_exits_2_naming_it(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before connecting: ``--timeout nan`` crashed in the socket layer, ``-1`` read as
    "timed out", and a nan interval never redraws."""
    assert main_argv(["--url", "ws://127.0.0.1:9", "--once", *flags]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} must be a positive number" in err and "cannot read" not in err


def test_live_mode_follows_the_stream_until_interrupted(
    server: StatusServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames: list[DashboardState] = []
    real_render = monitor_module.render

    def counting_render(state: DashboardState, url: str = "", status: str = "live") -> Any:
        if state.snapshot is not None:
            frames.append(state)
            if len(frames) >= 3:
                raise KeyboardInterrupt
        return real_render(state, url, status)

    monkeypatch.setattr(monitor_module, "render", counting_render)
    monkeypatch.setattr(monitor_module, "_console", lambda: Console(file=io.StringIO(), width=120))
    assert main_argv(["--url", server.url, "--interval", "0.05"]) == 0
    assert "binance_order_book" in {
        name for client in frames[-1].clients.values() for name in client.get("breakers", {})
    }


def test_live_mode_retries_when_the_server_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(monitor_module.time, "sleep", fake_sleep)
    monkeypatch.setattr(monitor_module, "_console", lambda: Console(file=io.StringIO(), width=120))
    assert main_argv(["--url", "ws://127.0.0.1:9", "--timeout", "1"]) == 0
    assert sleeps == [1.0, 2.0, 4.0]  # back-off between attempts


def test_state_follows_events_and_renders_without_data() -> None:
    state = DashboardState()
    Console(file=io.StringIO()).print(render(state, "ws://x"))  # empty state renders
    assert not state.apply({"type": "snapshot", "version": 2})
    assert not state.apply({"type": "nonsense", "version": 1})
    assert state.apply({"type": "pong", "version": 1})
    snapshot = {
        "type": "snapshot",
        "version": 1,
        "clients": {"binance": {"breakers": {"binance_ohlcv": {"state": "closed", "endpoint": "ohlcv"}}}},
        "events": [],
    }
    assert state.apply(snapshot)
    event = {
        "kind": "breaker_transition",
        "client": "binance",
        "breaker": "binance_ohlcv",
        "old": "closed",
        "new": "open",
    }
    assert state.apply({"type": "event", "version": 1, "event": {**event, "ts": 1.0}})
    assert state.clients["binance"]["breakers"]["binance_ohlcv"]["state"] == "open"
    assert state.export()["events"][-1]["new"] == "open"
