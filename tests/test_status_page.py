"""The status page end to end in headless Chromium, driven over the DevTools protocol.

A real client (a ccxt.binance with patched methods) is served by a real status server; the page
is opened in headless Chromium and must show the live data: the breaker table, then the breaker
turning open when the client trips it, the latency chart, errors and events. A screenshot goes to
artifacts/status_page.png. The DevTools protocol is spoken with the websockets library already
in use, so no browser driver package is needed. Skipped when Chromium is not installed
(``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest
from websockets.sync.client import ClientConnection, connect

from hardened import HardenedClient
from hardened.status import start_status_server

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p is not None), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium chromium-driver)"
)


def fresh_ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
    """A clean ticker stamped now (the validation stage refuses stale ones)."""
    return {
        "symbol": "BTC/USDT",
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "timestamp": int(time.time() * 1000),
    }


def fresh_ohlcv(*_a: Any, **_k: Any) -> list[list[float]]:
    """Five clean one-minute candles ending at the current minute."""
    minute = int(time.time() // 60) * 60_000
    return [[minute - i * 60_000, 100.0, 101.0, 99.0, 100.5, 10.0] for i in range(4, -1, -1)]


class Browser:
    """Headless Chromium with a DevTools websocket: open a page, evaluate JS, take screenshots."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="hardened-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        found = threading.Event()
        self.devtools_url = ""

        def drain() -> None:  # read stderr to the end, or Chromium blocks on a full pipe
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match and not found.is_set():
                    self.devtools_url = match.group(1)
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(30):
            self.close()
            raise RuntimeError("Chromium did not announce its DevTools endpoint")
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(
            connect(self.devtools_url, max_size=None, open_timeout=10)
        )
        self.ids = itertools.count(1)
        self.session = ""

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"page never satisfied: {expression}")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if hasattr(self, "stack"):
            self.stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    b = Browser(CHROMIUM)
    yield b
    b.close()


def breaker_state(name: str) -> str:
    return f"(document.querySelector('tr[data-breaker=\"{name}\"]') || {{dataset: {{}}}}).dataset.state"


def empty_balance(*_a: Any, **_k: Any) -> dict[str, Any]:
    return {"free": {}, "used": {}, "total": {}, "info": {}}


def patched(exchange_id: str) -> Any:
    """A ccxt exchange whose ticker, OHLCV and balance answer at once with clean data."""
    ex = getattr(ccxt, exchange_id)()
    ex.fetch_ticker = fresh_ticker
    ex.fetch_ohlcv = fresh_ohlcv
    ex.fetch_balance = empty_balance
    return ex


def test_status_page_shows_live_data(browser: Browser) -> None:
    ex = ccxt.binance()
    failing = {"on": False}

    def ticker(*_a: Any, **_k: Any) -> dict[str, Any]:
        if failing["on"]:
            raise ccxt.NetworkError('binance reset <img src=x onerror="document.title=1">')
        time.sleep(0.002)
        return fresh_ticker()

    ex.fetch_ticker = ticker
    ex.fetch_ohlcv = fresh_ohlcv
    ex.fetch_balance = empty_balance
    options = {"max_retries": 0, "failure_threshold": 2, "cache_ttl": 0, "stale_if_error": 0}
    client = HardenedClient(ex, **options)
    # Two more exchanges, so the chart must show series beyond the first eight (all binance's once).
    others = [HardenedClient(patched(eid), **options) for eid in ("kucoin", "bitvavo")]
    clients = [client, *others]
    try:
        for c in clients:  # three endpoints on three clients: nine series, more than eight colours
            for _ in range(10):
                c.fetch_ticker("BTC/USDT")
                c.fetch_ohlcv("BTC/USDT", "1m")
                c.fetch_balance()
        source = {"stats_source": lambda: {c.client_name: c.stats() for c in clients}}
        with start_status_server(port=0, http_port=0, interval=0.25, **source) as server:
            browser.open(server.http_url + "/")
            browser.wait_for("document.body.dataset.ws === 'live'")
            assert browser.evaluate(breaker_state("binance_ticker")) == "closed"

            failing["on"] = True  # the page must follow the stream: the breaker opens live
            for _ in range(30):  # after two failures the open breaker refuses the rest
                with contextlib.suppress(ccxt.NetworkError):
                    client.fetch_ticker("BTC/USDT")
            assert client.breakers["binance_ticker"].state == "open"
            browser.wait_for(f"{breaker_state('binance_ticker')} === 'open'")
            browser.wait_for(
                "document.querySelector('#events li[data-kind=\"breaker_transition\"]') !== null"
            )
            browser.wait_for("document.querySelector('tr[data-error-type=\"NetworkError\"]') !== null")
            browser.wait_for("document.querySelectorAll('#charts polyline').length >= 9")
            browser.wait_for(  # the next stats message carries the health the trip cost
                "document.getElementById('health-status').textContent !== 'excellent' && "
                "Array.from(document.querySelectorAll('#health-reasons li'))"
                ".some(li => li.textContent.includes('breaker open'))"
            )
            first_line = "document.querySelectorAll('#charts polyline')[0]"
            browser.wait_for(f"{first_line}.getAttribute('points').split(' ').length >= 2")
            page = browser.evaluate(
                """({
                  health: document.getElementById('health-status').textContent,
                  score: document.getElementById('health-score').textContent,
                  endpoints: Array.from(document.querySelectorAll('#endpoints tr'))
                    .map(r => r.dataset.endpoint),
                  errors: document.getElementById('recent-errors').textContent,
                  injected: document.querySelectorAll('#recent-errors img, #events img').length,
                  title: document.title,
                  series: Array.from(document.querySelectorAll('#charts polyline'))
                    .map(p => p.dataset.series),
                  charts: Array.from(document.querySelectorAll('#charts .chart-block'))
                    .map(b => b.dataset.client),
                  state_text: document.querySelector('tr[data-breaker="binance_ticker"] .state')
                    .textContent,
                })"""
            )
            time.sleep(0.3)
            browser.screenshot(ARTIFACTS / "status_page.png")
    finally:
        for c in clients:
            c.close()
    name = client.client_name
    assert page["state_text"] == "open"
    assert page["health"] != "excellent"
    assert float(page["score"]) < 90
    assert f"{name}/ticker" in page["endpoints"] and f"{name}/ohlcv" in page["endpoints"]
    names = [c.client_name for c in clients]
    assert sorted(page["charts"]) == sorted(names)  # one chart per client
    for c in clients:  # every client's every endpoint with calls is a series, not just the first 8
        assert {f"{c.client_name}/ticker", f"{c.client_name}/ohlcv"} <= set(page["series"]), page["series"]
    assert f"{name}/balance" in page["series"] and f"{others[1].client_name}/balance" in page["series"]
    assert "NetworkError" in page["errors"] and "<img" in page["errors"]  # shown as text...
    assert page["injected"] == 0 and page["title"] == "hardened status"  # ...never as markup
    png = (ARTIFACTS / "status_page.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
