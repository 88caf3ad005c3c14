"""``hardened report``: health, errors, anomalies and learning progress from the record store.

Per exchange x endpoint over the last ``--hours``: calls, failure share, the error classes seen,
latency p50/p95 and a health status (the telemetry's levels, on the success share); then the
anomalies IsolationForest finds in each endpoint's latency and error-rate series, and how far
the learning gate has come (calls recorded, model trained, on what, when).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hardened.learning import ErrorLearner, GateModel, ModelVersionError, model_path_for
from hardened.telemetry.health import level_of
from hardened.train import store_path

__all__ = ["build_parser", "build_report", "main_argv"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="hardened report", description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the record store (SQLite file); default: the configuration's")
    parser.add_argument("--hours", type=float, default=24.0, help="how far back to look")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def build_report(learner: ErrorLearner, hours: float, model_path: Path | None) -> dict[str, Any]:
    """The report as a dict: endpoints, anomalies, learning progress."""
    since = learner.clock() - hours * 3600.0
    rows = learner.store.query(
        "SELECT exchange, endpoint, had_error, error, latency FROM calls WHERE ts >= ? ORDER BY id", (since,)
    )
    endpoints: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[float]] = {}
    for exchange, endpoint, failed, error, latency in rows:
        name = f"{exchange}:{endpoint}"
        entry = endpoints.setdefault(name, {"calls": 0, "failures": 0, "errors": {}})
        entry["calls"] += 1
        if failed:
            entry["failures"] += 1
        if error:
            entry["errors"][error] = entry["errors"].get(error, 0) + 1
        if latency is not None:
            latencies.setdefault(name, []).append(float(latency))
    for name, entry in endpoints.items():
        share = entry["failures"] / entry["calls"]
        entry["failure_share"] = round(share, 4)
        ordered = sorted(latencies.get(name, []))
        entry["latency_ms"] = {
            "p50": round(ordered[len(ordered) // 2] * 1000, 1) if ordered else None,
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 1)
            if ordered
            else None,
        }
        entry["health"] = level_of(100.0 * (1.0 - share))
    model: dict[str, Any] | None = None
    if model_path is not None and model_path.exists():
        try:
            schema = GateModel.load(model_path).schema
            model = {k: schema.get(k) for k in ("samples", "failures", "trained_at", "hardened_version")}
            model["path"] = str(model_path)
        except ModelVersionError as exc:
            model = {"path": str(model_path), "refused": str(exc)}
    stored = learner.store.count()
    return {
        "hours": hours,
        "calls": len(rows),
        "endpoints": endpoints,
        "anomalies": learner.get_anomaly_report(hours),
        "learning": {
            "calls_recorded": stored,
            "min_samples": learner.min_samples,
            "learning_progress": round(min(1.0, stored / learner.min_samples), 4),
            "model": model,
        },
    }


def _print(report: dict[str, Any], store: str) -> None:
    print(f"record store {store}: {report['calls']} calls in the last {report['hours']:g} h\n")
    print(f"{'endpoint':<28} {'calls':>7} {'failed':>7} {'p50 ms':>8} {'p95 ms':>8}  health     errors")
    for name, e in sorted(report["endpoints"].items()):
        errors = ", ".join(f"{k} {v}" for k, v in sorted(e["errors"].items(), key=lambda kv: -kv[1])[:3])
        p50, p95 = e["latency_ms"]["p50"] or "-", e["latency_ms"]["p95"] or "-"
        print(
            f"{name:<28} {e['calls']:>7} {e['failure_share'] * 100:>6.1f}% "
            f"{p50:>8} {p95:>8}  {e['health']:<10} {errors}"
        )
    anomalies = report["anomalies"]
    print(
        f"\nanomalies: {anomalies['anomalies_detected']} ({anomalies['endpoints_judged']} endpoints judged)"
    )
    for a in anomalies["anomalies"][-10:]:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(a["ts"]))
        print(f"  {when} UTC  {a['message']} (score {a['score']})")
    learning = report["learning"]
    print(
        f"\nlearning: {learning['calls_recorded']} calls recorded, "
        f"progress {learning['learning_progress'] * 100:.0f} % of {learning['min_samples']}"
    )
    model = learning["model"]
    if model is None:
        print("  no model trained yet: run 'hardened train'")
    elif "refused" in model:
        print(f"  model refused: {model['refused']}")
    else:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(model["trained_at"]))
        print(f"  model trained {when} UTC on {model['samples']} calls ({model['failures']} failed)")


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Run ``hardened report``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not 0.0 < args.hours < math.inf:  # inf would print Infinity: not JSON
        print(f"hardened report: --hours must be a positive finite number, got {args.hours}", file=sys.stderr)
        return 2
    path = store_path(args.store)
    if not Path(path).expanduser().exists():
        print(f"hardened report: no record store at {path} (nothing recorded yet?)", file=sys.stderr)
        return 1
    try:
        learner = ErrorLearner(path, background=False)
    except ValueError as exc:
        print(f"hardened report: {exc}", file=sys.stderr)
        return 1
    try:
        report = build_report(learner, args.hours, model_path_for(path))
    finally:
        learner.close()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report, path)
    return 0


if __name__ == "__main__":
    sys.exit(main_argv())
