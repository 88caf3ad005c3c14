"""``hardened bench``: raw ccxt, ccxt's own retries, a tenacity loop and hardened, side by side.

Parts of a run (``--parts``, default ``success,micro,concurrency``; ``faults`` joins them with
``--profile`` or ``--all``):
- success: the success path of each endpoint, every contender interleaved call by call against
  the simulator in its own process; p50/p95/p99, calls/s, the ratio to raw ccxt with a bootstrap
  interval (target: hardened at most 1.02x).
- micro: a cache hit against a raw call (target: 50x faster) and a call refused by an open breaker.
- concurrency: 1, 10 and 100 callers through one async client, raw and hardened.
- faults: a simulator fault profile (``--profile NAME``; ``--all`` runs transient,
  ratelimit_storm, outage60 and baddata): success rate, goodput, requests sent, time to the first
  fresh answer after an outage, wrong answers that reached the caller.

``--live`` runs the success path against the exchange's real public API instead (paced to its
published rate; never run by the tests). ``--json`` prints the figures as JSON; ``--plot PATH``
saves the latency distributions as a PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ccxt
import psutil
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hardened.benchmark.concurrency import LEVELS, run_concurrency
from hardened.benchmark.contenders import CONTENDERS, ENDPOINTS, EXCHANGES
from hardened.benchmark.micro import run_micro
from hardened.benchmark.report import print_report, to_json
from hardened.benchmark.scenarios import SCENARIOS, run_scenario
from hardened.benchmark.simproc import simulator_process
from hardened.benchmark.success import run_success
from hardened.cli import non_negative_float, positive_int
from hardened.sim import ProfileError, load_profile
from hardened.telemetry.logging import configure_logging

__all__ = ["build_parser", "main_argv", "run"]

PARTS = ("success", "micro", "concurrency", "faults")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of ``hardened bench``."""
    parser = parser or argparse.ArgumentParser(
        prog="hardened bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exchange", default="binance", choices=EXCHANGES)
    parser.add_argument("--endpoint", default="fetch_ticker", choices=sorted(ENDPOINTS))
    parser.add_argument(
        "--calls", type=positive_int, default=2000, help="success-path calls per contender (2000)"
    )
    parser.add_argument(
        "--profile",
        help="fault profile(s) for the faults part: built-in names or .toml/.json files, comma-separated "
        f"(built in for the benchmark: {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--all", action="store_true", help="every exchange and endpoint, every fault scenario"
    )
    parser.add_argument("--live", action="store_true", help="the real public API instead of the simulator")
    parser.add_argument("--parts", default=None, help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument(
        "--fault-calls", type=positive_int, default=400, help="calls per contender, faults part (400)"
    )
    parser.add_argument(
        "--interval", type=non_negative_float, default=0.05, help="seconds between a bot's calls (0.05)"
    )
    parser.add_argument(
        "--concurrency-calls", type=positive_int, default=1000, help="calls per contender and level (1000)"
    )
    parser.add_argument(
        "--micro-calls", type=positive_int, default=1000, help="calls for cache hit and fail-fast"
    )
    parser.add_argument(
        "--rtt-ms",
        type=non_negative_float,
        default=0.0,
        help="success part only: the simulator answers this many ms later, a network round trip "
        "(0: loopback, where the 1.02x target applies)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed for the faults part")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    parser.add_argument("--plot", metavar="PATH", help="save the latency distributions as a PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="let the clients' log lines through")
    return parser


def _parts(args: argparse.Namespace) -> list[str]:
    if args.parts:
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown part(s) {', '.join(unknown)}; use {', '.join(PARTS)}")
    else:
        parts = ["success", "micro", "concurrency"]
        if args.all or (args.profile and args.profile != "calm"):
            parts.append("faults")
    if args.live:  # a live run sends only the paced success path; no faults, no load test
        refused = sorted(set(parts) - {"success"}) if args.parts else []
        if refused:  # asked for by name: say so rather than run nothing and exit 0
            raise ValueError(f"--live runs the success part only, not {', '.join(refused)}")
        parts = [p for p in parts if p == "success"]
    return parts


def _scenario_names(args: argparse.Namespace) -> list[str]:
    """The fault profiles the faults part runs: ``--profile``'s, else every scenario or transient."""
    if args.profile:
        return [p.strip() for p in args.profile.split(",") if p.strip()]
    return list(SCENARIOS) if args.all else ["transient"]


def _round_trip_profile(rtt_ms: float, stack: contextlib.ExitStack) -> str:
    """A simulator profile file that delays every answer by ``rtt_ms`` (removed after the run)."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="hardened-bench-"))
    path = Path(folder) / "round_trip.json"
    rule = {"kind": "latency", "latency": {"distribution": "fixed", "seconds": rtt_ms / 1000.0}}
    path.write_text(json.dumps({"name": f"round_trip_{rtt_ms:g}ms", "faults": [rule]}))
    return str(path)


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "cpus": psutil.cpu_count(logical=True),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """Yields ``start(description, total) -> advance(n)``: one bar per part, on standard error."""
    if not enabled:
        yield lambda description, total: lambda n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:

        def start(description: str, total: int | None) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield start


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parts ``args`` ask for; returns every figure (with the samples, for the plot)."""
    parts = _parts(args)
    exchanges = list(EXCHANGES) if args.all else [args.exchange]
    endpoints = sorted(ENDPOINTS) if args.all else [args.endpoint]
    scenarios = _scenario_names(args)
    results: dict[str, Any] = {
        "machine": machine(),
        "target": "live" if args.live else "simulator",
        "rtt_ms": args.rtt_ms,
        "parts": parts,
        "contenders": list(CONTENDERS),
    }
    with _progress(not args.no_progress) as start, contextlib.ExitStack() as stack:
        for exchange in exchanges:
            needs_server = not args.live and any(p in parts for p in ("success", "micro", "concurrency"))
            profile = _round_trip_profile(args.rtt_ms, stack) if args.rtt_ms else "calm"
            server = simulator_process(exchange, profile) if needs_server else contextlib.nullcontext(None)
            with server as base_url:
                if "success" in parts:
                    total = args.calls * len(CONTENDERS) * len(endpoints)
                    advance = start(f"{exchange} success path", total)
                    results.setdefault("success", {})[exchange] = run_success(
                        exchange, endpoints, args.calls, base_url, advance=advance
                    )
                if "micro" in parts:
                    start(f"{exchange} cache hit and fail-fast", None)
                    results.setdefault("micro", {})[exchange] = run_micro(
                        exchange, base_url, args.micro_calls
                    )
                if "concurrency" in parts:
                    endpoint = endpoints[0] if not args.all else "fetch_ticker"
                    total = args.concurrency_calls * 3 * len(LEVELS)
                    advance = start(f"{exchange} concurrency 1/10/100", total)
                    results.setdefault("concurrency", {})[exchange] = run_concurrency(
                        exchange, base_url, endpoint, calls=args.concurrency_calls, advance=advance
                    )
            if "faults" in parts:
                for profile in scenarios:
                    advance = start(f"{exchange} under {profile}", None)
                    results.setdefault("scenarios", []).append(
                        run_scenario(
                            profile,
                            exchange,
                            endpoints[0] if not args.all else "fetch_ticker",
                            args.fault_calls,
                            interval=args.interval,
                            seed=args.seed,
                            advance=advance,
                        )
                    )
    return results


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hardened bench``: 0 when the run finished (targets missed are reported, not
    turned into an exit code), 1 when ``--live`` cannot reach the exchange or the plot could not be
    saved (the figures are printed all the same), 2 on bad options."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # simulated calls never reach the learning store of the user's real ones (a model trained on
    # them would skip real calls): memory only, unless the environment names a store
    os.environ.setdefault("HARDENED_LEARNING_STORE", ":memory:")
    try:
        _parts(args)
    except ValueError as exc:
        parser.error(str(exc))
    for name in ("calls", "fault_calls", "concurrency_calls", "micro_calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for profile in _scenario_names(args) if "faults" in _parts(args) else []:
        try:  # now, not after the other parts have run for minutes
            load_profile(profile)
        except ProfileError as exc:
            parser.error(f"--profile: {exc}")
    if not 0 <= args.rtt_ms <= 10_000:
        parser.error(f"--rtt-ms must be between 0 and 10000, got {args.rtt_ms}")
    if args.rtt_ms and (args.live or _parts(args) != ["success"]):
        parser.error("--rtt-ms measures the success path at a distance: use it with --parts success only")
    if args.plot:
        try:  # now, not after a run of minutes whose figures the failure would lose
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'hardened[bench]'")
    saved = structlog.get_config()
    configure_logging("INFO" if args.verbose else "CRITICAL")  # fault runs log every retry otherwise
    started = time.monotonic()
    try:
        results = run(args)
    except ccxt.NetworkError as exc:
        if not args.live:  # against the simulator this is a bug worth its traceback
            raise
        # no network (or the exchange is down): say so in one line, not a page of traceback
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        print(
            f"hardened bench: --live could not reach the exchange's public API "
            f"({type(exc).__name__}: {reason}); check the network connection",
            file=sys.stderr,
        )
        return 1
    finally:
        structlog.configure(**saved)  # a caller in the same process (a test, a bot) keeps its logging
    results["seconds"] = round(time.monotonic() - started, 1)
    code = 0
    if args.plot:
        from hardened.benchmark.plot import save_plot

        if "success" in results:
            try:
                results["plot"] = str(save_plot(results, args.plot))
            except (OSError, RuntimeError, ValueError) as exc:  # the figures are still printed below
                print(f"hardened bench: could not save the plot to {args.plot}: {exc}", file=sys.stderr)
                code = 1
        else:
            print("hardened bench: no success-path samples to plot; --plot ignored", file=sys.stderr)
    if args.json:
        print(json.dumps(to_json(results), indent=2))
    else:
        print_report(results)
        if "plot" in results:
            print(f"latency distributions saved to {results['plot']}")
    return code
