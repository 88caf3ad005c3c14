"""Tables of a benchmark run (rich), and the JSON document without the raw samples."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_report", "to_json"]

OVERHEAD_TARGET = 1.02
CACHE_TARGET = 50.0


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` without the per-call samples (kept for the plot only)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "samples_s"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    stripped = strip(results)
    assert isinstance(stripped, dict)
    return stripped


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(fig: dict[str, Any]) -> str:
    if "ratio" not in fig:
        return "1 (baseline)"
    return f"{fig['ratio']:.3f} [{fig['ratio_low']:.3f}-{fig['ratio_high']:.3f}]"


def success_table(exchange: str, endpoint: str, result: dict[str, Any], rtt_ms: float = 0.0) -> Table:
    """p50/p95/p99, throughput and the ratio to raw ccxt of each contender on one endpoint."""
    distance = f", {rtt_ms:g} ms simulated round trip" if rtt_ms else ""
    table = Table(
        title=f"{exchange} {endpoint}: success path, {result['calls']} calls each, interleaved{distance}"
    )
    columns = ("contender", "p50 us", "p95 us", "p99 us", "calls/s", "ratio to raw (95 % CI)", "added us")
    for column in (*columns, "CPU us", "added CPU us"):
        table.add_column(column, justify="left" if column == "contender" else "right")
    for name, fig in result["contenders"].items():
        added = "-" if "added_us" not in fig else f"{fig['added_us']:+.0f}"
        added_cpu = "-" if "added_cpu_us" not in fig else f"{fig['added_cpu_us']:+.0f}"
        per_s = "-" if fig["per_s"] is None else f"{fig['per_s']:.0f}"
        table.add_row(
            name,
            _us(fig["p50_us"]),
            _us(fig["p95_us"]),
            _us(fig["p99_us"]),
            per_s,
            _ratio(fig),
            added,
            _us(fig.get("cpu_us")),
            added_cpu,
        )
    table.caption = (
        "CPU: the calling thread's CPU time per call (median); added: median of the paired differences"
    )
    return table


def scenario_table(result: dict[str, Any]) -> Table:
    """Success rate, goodput, requests sent, recovery and wrong answers under one fault profile."""
    windows = ", ".join(f"{a:g}-{b:g} s" for a, b in result["windows_s"]) or "none"
    table = Table(
        title=(
            f"{result['exchange']} {result['endpoint']} under '{result['profile']}' (windows: {windows}; "
            f"a call every {result['interval_s'] * 1000:g} ms, ccxt timeout {result['timeout_ms']} ms)"
        )
    )
    columns = (
        "contender",
        "calls",
        "right",
        "success",
        "goodput/s",
        "stale",
        "failed",
        "sent",
        "recovery",
        "wrong",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "contender" else "right")
    for name, fig in result["contenders"].items():
        ttfs = fig["first_fresh_after_outage_s"]
        recovery = "-" if not result["windows_s"] else ("never" if ttfs is None else f"{ttfs:.1f} s")
        table.add_row(
            name,
            str(fig["calls"]),
            str(fig["right"]),
            f"{fig['success_rate']:.1%}",
            f"{fig['goodput_per_s']:.1f}",
            str(fig["stale"]),
            str(fig["failed"]),
            f"{fig['requests_sent']} ({fig['requests_per_call']:.2f}/call)",
            recovery,
            str(fig["wrong"]) + (f" (+{fig['untraced']} untraced)" if fig["untraced"] else ""),
        )
    table.caption = (
        "right: answers the simulator did not corrupt; stale: of those, served from hardened's cache; "
        "sent: requests that reached the exchange; recovery: from the end of the last window to the "
        "first fresh answer; wrong: corrupted answers that reached the caller (simulator ground truth)"
    )
    return table


def concurrency_table(result: dict[str, Any]) -> Table:
    """Throughput and latency per concurrency level through one async client."""
    table = Table(title=f"{result['exchange']} {result['endpoint']}: concurrent callers, one async client")
    for column in ("callers", "contender", "calls/s", "p50 us", "p99 us", "requests sent"):
        table.add_column(column, justify="left" if column in ("callers", "contender") else "right")
    for level, row in result["levels"].items():
        for name, fig in row.items():
            table.add_row(
                level,
                name,
                f"{fig['throughput_per_s']:.0f}",
                _us(fig["p50_us"]),
                _us(fig["p99_us"]),
                str(fig["requests_sent"]),
            )
    return table


def micro_table(exchange: str, result: dict[str, Any]) -> Table:
    """Cache hit and open-breaker refusal, against their targets."""
    table = Table(title=f"{exchange} fetch_ticker: cache hit and fail-fast")
    for column in ("figure", "p50 us", "p99 us", "target", "met"):
        table.add_column(column, justify="left" if column in ("figure", "target") else "right")
    speedup = result["cache_speedup"]
    table.add_row("raw ccxt call", _us(result["raw"]["p50_us"]), _us(result["raw"]["p99_us"]), "", "")
    table.add_row(
        f"cache hit ({speedup:.0f}x faster)",
        f"{result['cache_hit']['p50_us']:.1f}",
        f"{result['cache_hit']['p99_us']:.1f}",
        f">= {CACHE_TARGET:.0f}x",
        "yes" if speedup >= CACHE_TARGET else "NO",
    )
    refused = result["open_breaker"]
    table.add_row(
        "refused by an open breaker",
        f"{refused['p50_us']:.1f}",
        f"{refused['p99_us']:.1f}",
        "p50 < 100 us",
        "yes" if refused["p50_us"] is not None and refused["p50_us"] < 100 else "NO",
    )
    return table


def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    """Every table of a run, then a line per target."""
    console = console or Console()
    for exchange, endpoints in results.get("success", {}).items():
        for endpoint, result in endpoints.items():
            console.print(success_table(exchange, endpoint, result, results.get("rtt_ms") or 0.0))
    for exchange, result in results.get("micro", {}).items():
        console.print(micro_table(exchange, result))
    for result in results.get("scenarios", []):
        console.print(scenario_table(result))
    for result in results.get("concurrency", {}).values():
        console.print(concurrency_table(result))
    for line in target_lines(results):
        console.print(line)


def target_lines(results: dict[str, Any]) -> list[str]:
    """One line per target the run measured: the figure and whether it is met."""
    lines = []
    for exchange, endpoints in results.get("success", {}).items():
        for endpoint, result in endpoints.items():
            fig = result["contenders"].get("hardened")
            if fig is None or "ratio" not in fig:
                continue
            if results.get("rtt_ms"):  # the target is for loopback; at a distance it is context
                lines.append(
                    f"{exchange} {endpoint}: hardened / raw median = {fig['ratio']:.3f} "
                    f"(95 % CI {fig['ratio_low']:.3f}-{fig['ratio_high']:.3f}) "
                    f"at a {results['rtt_ms']:g} ms round trip "
                    f"(the {OVERHEAD_TARGET} target is judged on loopback)"
                )
                continue
            met = "met" if fig["ratio"] <= OVERHEAD_TARGET else "NOT met"
            lines.append(
                f"{exchange} {endpoint}: hardened / raw median = {fig['ratio']:.3f} "
                f"(95 % CI {fig['ratio_low']:.3f}-{fig['ratio_high']:.3f}); "
                f"target <= {OVERHEAD_TARGET}: {met}"
            )
    for result in results.get("scenarios", []):
        fig = result["contenders"].get("hardened")
        if fig is not None and result["profile"] == "baddata":
            met = "met" if fig["wrong"] == 0 else "NOT met"
            lines.append(
                f"{result['exchange']} baddata: wrong answers reaching the caller through hardened = "
                f"{fig['wrong']} of {fig['calls']}; target 0: {met}"
            )
    return lines
