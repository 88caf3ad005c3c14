"""The simulator in a child process, so its event loop does not share the benchmark's GIL."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence

__all__ = ["simulator_process"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def simulator_process(
    exchanges: Sequence[str] | str, profile: str = "calm", seed: int | None = None
) -> Iterator[str]:
    """Run ``hardened sim`` in a child process; yields its base URL once it answers."""
    if isinstance(exchanges, str):
        exchanges = [exchanges]
    port = _free_port()
    cmd = [sys.executable, "-m", "hardened.cli", "sim", "--port", str(port), "--profile", profile]
    for exchange in exchanges:
        cmd += ["--exchange", exchange]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=1):
                    break
            except OSError as exc:  # refused until it listens; an HTTP error means it is up
                if getattr(exc, "code", None):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"simulator did not start: {err[-500:]}") from exc
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
