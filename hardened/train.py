"""``hardened train``: fit the learning gate's model from the record store, and show how it does.

Reads the recorded calls (``--store``, default the configuration's ``learning_store``), replays
them on held-out time (the first ``--split`` of the time trains, the rest is scored) to compare
the learned gate with no gate, a consecutive-failure breaker and the SRE client-side throttle,
prints the table and a ``gate_threshold`` chosen on the most recent quarter of the time
(``ErrorLearner.tune_threshold``), then fits the model on every recorded call and saves it
beside the store, where clients with ``gate_enabled`` load it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from hardened.learning import ErrorLearner, model_path_for
from hardened.learning.evaluate import evaluate_rows, format_table

__all__ = ["build_parser", "main_argv"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="hardened train", description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the record store (SQLite file); default: the configuration's")
    parser.add_argument("--split", type=float, default=0.7, help="share of the time to train on (0-1)")
    parser.add_argument("--threshold", type=float, help="skip threshold (default: the configuration's)")
    parser.add_argument("--per-endpoint", action="store_true", help="one model per exchange x endpoint")
    parser.add_argument("--no-save", action="store_true", help="evaluate only; keep the saved model")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def store_path(given: str | None) -> str:
    """The store to read: ``given``, else the configuration's (environment and file apply).

    A leading ``~`` is expanded, as the record store does when clients write to it: a path from a
    configuration file or a service's environment reaches us unexpanded by any shell.
    """
    if given:
        return os.path.expanduser(given)
    from hardened.config import HardenedConfig

    configured = HardenedConfig().learning_store
    if configured is None or configured == ":memory:":
        raise SystemExit("hardened: the configured learning_store is in memory; pass --store FILE")
    return os.path.expanduser(configured)


def main_argv(argv: Sequence[str] | None = None) -> int:
    """Run ``hardened train``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not 0.0 < args.split < 1.0:
        print("hardened train: --split must be between 0 and 1", file=sys.stderr)
        return 2
    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:  # a usage error, as --split's
        print(f"hardened train: --threshold must be in (0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    from hardened.config import ConfigError, HardenedConfig

    try:  # a bad HARDENED_* variable or configuration file: its message, not a traceback
        config = HardenedConfig()
        path = store_path(args.store)
    except ConfigError as exc:
        print(f"hardened train: {exc}", file=sys.stderr)
        return 2
    if not os.path.exists(path):  # opening it would create an empty store and train on nothing
        print(
            f"hardened train: no record store at {path} (clients record to their learning_store; "
            "check --store or the configuration)",
            file=sys.stderr,
        )
        return 2
    threshold = args.threshold if args.threshold is not None else config.gate_threshold
    try:
        learner = ErrorLearner(
            path,
            threshold=threshold,
            probe_share=config.gate_probe_share,
            min_samples=config.gate_min_samples,
            model_path=None,
            per_endpoint=args.per_endpoint,
            background=False,
        )
    except ValueError as exc:
        print(f"hardened train: {exc}", file=sys.stderr)
        return 1
    try:
        rows = learner.store.rows()
        if len(rows) < config.gate_min_samples:
            print(
                f"hardened train: {len(rows)} calls recorded in {path}, the gate needs "
                f"{config.gate_min_samples} (gate_min_samples) before it may learn",
                file=sys.stderr,
            )
            return 1
        # the command's stdout is its answer (--json): what the training logs goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            try:
                results, info = evaluate_rows(rows, learner, args.split)
            except ValueError as exc:  # too few calls, or all at one time: nothing to hold out
                print(f"hardened train: cannot evaluate the calls in {path}: {exc}", file=sys.stderr)
                return 1
            # a threshold for gate_threshold, chosen on the most recent quarter of the time
            choice = learner.tune_threshold(0.25, 0.01)
            # a threshold is suggested only when one met the budget: the highest candidate, which
            # tune_threshold falls back on, was printed as "skipped at most 1 %" when it skipped more
            suggested = choice["threshold"] if choice is not None and choice["within_budget"] else None
            unmet = choice if choice is not None and not choice["within_budget"] else None
            saved: str | None = None
            if not args.no_save:
                learner.model_path = model_path_for(path)
                learner.train(force=True)
                saved = str(learner.model_path)
        out: dict[str, Any] = {
            "store": path,
            "results": results,
            **info,
            "threshold_suggested": suggested,
            "threshold_candidates": choice["candidates"] if choice is not None else None,
            "model_saved": saved,
        }
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            print(f"record store {path}: {len(rows)} calls; trained on {info['train_rows']}, ", end="")
            print(f"scored on the {info['test_rows']} most recent (held-out time)\n")
            print(format_table(results))
            if suggested is not None:
                print(
                    f"\nsuggested gate_threshold: {suggested} (the lowest that skipped at most 1 % of the "
                    "good calls of the most recent quarter of the time, by a model fitted before it)"
                )
            elif unmet is not None:
                last = unmet["candidates"][-1]
                share = (last["good_skipped_share"] or 0.0) * 100.0
                print(
                    "\nno gate_threshold suggested: every candidate skipped more than 1 % of the good calls "
                    f"of the most recent quarter of the time ({share:.1f} % at {last['threshold']}); "
                    "keep gate_enabled off until more is recorded"
                )
            print(f"\nmodel saved: {saved}" if saved else "\nmodel not saved (--no-save)")
        return 0
    finally:
        learner.close()


if __name__ == "__main__":
    sys.exit(main_argv())
