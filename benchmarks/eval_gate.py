"""Does the learning gate beat the simple rules? A replay of simulator schedules on held-out time.

A bot polls Binance (tickers, candles of two sizes, order books of two sizes, four markets) for
``--days`` simulated days on a simulated clock (no sleeping: two days replay in about a minute).
What goes wrong comes from the simulator's own fault engine (``hardened.sim.faults``), driven by a
schedule with:

- noise: 0.4 % of requests answer 5xx, 0.1 % reset, whatever the regime (not predictable);
- a market halted for an hour in every twelve (XRP/USDT answers 5xx), while the rest of each
  endpoint is healthy: a per-endpoint breaker cannot tell the market apart;
- a twenty-minute outage of every endpoint once in every twelve hours;
- busy hours (13:00-15:00 UTC) when large requests (candles limit 1000, book limit 5000) time out;
- rate-limit storms caused by the bot's own pace: for the first five minutes of every hour it
  backfills at six times its pace; the simulator's request-weight window (Binance-like, 1200 per
  minute) answers 429 beyond the budget and bans for two minutes after 20 refusals in a window.

Every scheduled call gets its fate from the fault engine whether or not a policy sends it (the
ground truth for skipped calls); the weight window only counts calls actually sent, so a policy
that holds back during a storm avoids the ban it would have earned. The first ``--train-share``
of the time trains the learned gate (it records, never skips); every policy is scored on the
rest. The learned gate keeps learning online during the scored time (retrained every 6 sim
hours from the calls it made, never from the ones it skipped).

Nothing is tuned on the scored time. The last quarter of the training time is a validation
slice: the gate's skip threshold is the lowest that skips at most ``--max-good-skipped`` of the
good calls there, by a model fitted on the time before it (``ErrorLearner.tune_threshold``); the
breaker gets the same chance (``BREAKER_GRID``, best goodput on that slice) and is shown beside
its textbook setting (5 in a row, 30 s).

Run: ``python benchmarks/eval_gate.py`` (options: ``--days``, ``--seed``, ``--out``). Prints the
table; writes ``benchmarks/results/gate_eval.{json,md}`` and the plot ``benchmarks/results/gate_eval.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hardened.learning import ErrorLearner
from hardened.learning.evaluate import (
    ConsecutiveBreaker,
    LearnedGate,
    NoGate,
    Score,
    SreThrottle,
    format_table,
)
from hardened.sim.dialect import WeightWindow
from hardened.sim.faults import FaultEngine, load_profile

ROOT = Path(__file__).resolve().parent.parent
EXCHANGE = "binance"
FAILING = frozenset(
    {
        "http_5xx",
        "timeout",
        "reset",
        "rate_limit_429",
        "ban_418",
        "exchange_error",
        "html_200",
        "malformed_json",
    }
)
# (endpoint, symbol, timeframe, limit, weight): the bot's round of calls
ROUND: tuple[tuple[str, str, str | None, int | None, int], ...] = (
    ("ticker", "BTC/USDT", None, None, 2),
    ("ticker", "ETH/USDT", None, None, 2),
    ("ticker", "SOL/USDT", None, None, 2),
    ("ticker", "XRP/USDT", None, None, 2),
    ("ohlcv", "BTC/USDT", "1m", 100, 2),
    ("ohlcv", "XRP/USDT", "1m", 100, 2),
    ("ohlcv", "ETH/USDT", "1h", 1000, 5),
    ("order_book", "BTC/USDT", None, 100, 5),
    ("order_book", "SOL/USDT", None, 100, 5),
    ("order_book", "ETH/USDT", None, 5000, 50),
)
PACE = 1.0  # calls per second normally
BACKFILL_PACE = 6.0  # calls per second in the first minutes of each hour
BACKFILL_MINUTES = 5
WEIGHT_LIMIT = 1200  # per minute
BAN_AFTER = 20  # refusals in one window before a ban
BAN_SECONDS = 120.0
# Sim seconds between batches of the gate's bucket scorer: a client's scorer runs every 50 ms
# (``learner._SCORE_EVERY``), so the replay runs it as often on the sim clock.
SCORE_EVERY = 0.05
FLUSH_EVERY = 5_000  # calls between store flushes: the replay records far faster than a bot
VALIDATION_SHARE = 0.25  # the last quarter of the training time chooses thresholds
BREAKER_GRID = tuple((t, r) for t in (2, 3, 5, 8, 12) for r in (15.0, 30.0, 60.0, 120.0))

PROFILE: dict[str, Any] = {
    "name": "gate_eval",
    "description": "noise, a halted market, outages, busy hours for large requests",
    "faults": [
        {"kind": "http_5xx", "probability": 0.004, "status": [502, 503]},
        {"kind": "reset", "probability": 0.001},
        {
            "kind": "latency",
            "probability": 0.3,
            "latency": {"distribution": "lognormal", "median": 0.03, "sigma": 0.5},
        },
    ],
    "regimes": {
        "halt": {
            "description": "one market halted: its requests fail, the others are fine",
            "faults": [{"kind": "http_5xx", "symbols": ["XRP/USDT"], "probability": 0.97, "status": [503]}],
        },
        "outage": {
            "description": "the exchange is down",
            "faults": [
                {"kind": "http_5xx", "probability": 0.9, "status": [502, 503]},
                {"kind": "reset", "probability": 0.5},
            ],
        },
        "busy": {
            "description": "busy hours: large requests time out",
            "faults": [
                {
                    "kind": "timeout",
                    "endpoints": ["ohlcv"],
                    "min_limit": 1000,
                    "probability": 0.95,
                    "hold": 10,
                },
                {"kind": "http_5xx", "endpoints": ["order_book"], "min_limit": 1000, "probability": 0.95},
            ],
        },
    },
    "schedule": {
        "time_compression": 1,
        "start_hour": 0,
        "periods": [
            {"regime": "calm", "duration": 3 * 3600},
            {"regime": "halt", "duration": 3600},
            {"regime": "calm", "duration": 4 * 3600},
            {"regime": "outage", "duration": 1200},
            {"regime": "calm", "duration": 3 * 3600 + 2400},
        ],
        "hours": [{"hours": [13, 14], "regime": "busy"}],
    },
}


class Exchange:
    """The simulator's decisions on a simulated clock: faults from its engine, the weight window."""

    def __init__(self, seed: int) -> None:
        self.engine = FaultEngine(load_profile(PROFILE), seed, started=0.0)
        self.window = WeightWindow(WEIGHT_LIMIT, 60_000)
        self.refusals: dict[int, int] = {}
        self.banned_until = 0.0

    def fate(self, endpoint: str, symbol: str, limit: int | None, now: float) -> str | None:
        """The fault the engine decides for this request (the same whoever sends it), or None."""
        decision = self.engine.decide(EXCHANGE, endpoint, now=now, symbol=symbol, limit=limit)
        if decision is None or decision.action not in FAILING:
            return None
        return decision.action

    def headroom(self, now: float) -> float:
        """Share of the weight budget left, as the used-weight header tells the bot (none while
        a 418 ban's Retry-After runs, as the client's rate-limit budget records it)."""
        if now < self.banned_until:
            return 0.0
        used, _ = self.window.peek("bot", int(now * 1000))
        return max(0.0, 1.0 - used / WEIGHT_LIMIT)

    def refusal_kind(self, now: float) -> str:
        """What a refused request would have got: a ban or a 429."""
        return "ban_418" if now < self.banned_until else "rate_limit_429"

    def would_refuse(self, weight: int, now: float) -> bool:
        """Whether a request of ``weight`` would be refused now (without sending it)."""
        if now < self.banned_until:
            return True
        used, _ = self.window.peek("bot", int(now * 1000))
        return used + weight > WEIGHT_LIMIT

    def send(self, weight: int, now: float) -> str | None:
        """Charge the weight window for a request actually sent: None, or 429 / 418."""
        if now < self.banned_until:
            return "ban_418"
        used, reset_ms = self.window.charge("bot", weight, int(now * 1000))
        if used <= WEIGHT_LIMIT:
            return None
        n = self.refusals.get(reset_ms, 0) + 1
        self.refusals[reset_ms] = n
        if n >= BAN_AFTER:
            self.banned_until = now + BAN_SECONDS
            return "ban_418"
        return "rate_limit_429"


def schedule(days: float) -> list[tuple[float, int]]:
    """(sim time, index into ROUND) of every call the bot makes."""
    calls = []
    t, i, end = 0.0, 0, days * 86_400.0
    while t < end:
        calls.append((t, i % len(ROUND)))
        i += 1
        backfill = (t % 3600.0) < BACKFILL_MINUTES * 60
        t += 1.0 / (BACKFILL_PACE if backfill else PACE)
    return calls


def fates(calls: Sequence[tuple[float, int]], seed: int) -> list[str | None]:
    """The fault engine's decision for every scheduled call, in order: the ground truth, the same
    for every policy (decided once, whoever sends the call)."""
    exchange = Exchange(seed)
    out = []
    for now, index in calls:
        endpoint, symbol, _, limit, _ = ROUND[index]
        out.append(exchange.fate(endpoint, symbol, limit, now))
    return out


def _cause(outcome: str | None, endpoint: str, symbol: str, limit: int | None) -> str:
    if outcome in ("rate_limit_429", "ban_418"):
        return f"own pace ({outcome})"
    if symbol == "XRP/USDT":
        return "halted market or noise (XRP/USDT)"
    if limit is not None and limit >= 1000:
        return f"large request or noise ({endpoint} limit {limit})"
    return "outage or noise"


def run(
    policy: Any,
    calls: Sequence[tuple[float, int]],
    truth: Sequence[str | None],
    seed: int,
    cut: float,
    learner: Any = None,
    stop: float = float("inf"),
    max_good_skipped: float | None = None,
) -> Score:
    """Replay ``calls`` through ``policy``; score the calls at or after ``cut`` and before
    ``stop``. With ``max_good_skipped``, the learned gate chooses its threshold at ``cut`` on the
    last ``VALIDATION_SHARE`` of the time before it (``ErrorLearner.tune_threshold``)."""
    exchange = Exchange(seed)
    score = Score(policy.name)
    retrain_at = cut + 6 * 3600.0
    gate = isinstance(policy, LearnedGate)
    trained = False
    next_score = 0.0
    causes: dict[str, list[int]] = {}
    for n, ((now, index), fault) in enumerate(zip(calls, truth, strict=True)):
        if now >= stop:
            break
        endpoint, symbol, timeframe, limit, weight = ROUND[index]
        scored = now >= cut
        if learner is not None and n % FLUSH_EVERY == 0:
            learner.store.flush(60.0)  # nothing dropped from a full queue: every call recorded
        key = call = None
        if learner is not None:
            learner.clock.t = now
            headroom = exchange.headroom(now)  # what the stage reads from the client's budget
            key, call = learner.call_key(
                "exchange",
                EXCHANGE,
                endpoint,
                symbol,
                timeframe,
                None,
                limit,
                headroom,
                None,
                room=headroom - weight / WEIGHT_LIMIT,
            )
        group = ("exchange", EXCHANGE, endpoint)
        if gate and scored and not trained:  # the end of the training time: fit, then act
            if max_good_skipped is not None:  # the threshold, chosen on the validation slice
                choice = learner.tune_threshold(VALIDATION_SHARE, max_good_skipped)
                policy.extra["threshold_choice"] = choice
            policy.extra["trained_on"] = (learner.train(force=True) or {}).get("samples", 0)
            trained = True
        elif gate and scored and now >= retrain_at:  # online: refit on the calls it made
            learner.train(force=True)
            retrain_at = now + 6 * 3600.0
        if gate and now >= next_score:  # the background scorer's batch (every 50 ms in a client)
            learner.score_pending()
            next_score = now + SCORE_EVERY
        if gate and not scored:
            sent = True  # training time: the gate records, never skips
        else:
            sent = policy.admit(group, key, call, now)
        if sent:
            refused = exchange.send(weight, now)
            outcome = refused or fault
            failed = outcome is not None
            policy.observe(group, key, call, now, failed)
            if learner is not None:
                probe = gate and scored and policy.probe  # as the pipeline's stage records it
                learner.finish(key, call, failed, 0.05, outcome, None, 1, probe, None, now)
        else:
            outcome = fault or (exchange.refusal_kind(now) if exchange.would_refuse(weight, now) else None)
            failed = outcome is not None
        if scored:
            score.add(sent, failed)
            if failed:  # what the failing calls were, and how many of each the policy avoided
                cause = causes.setdefault(_cause(outcome, endpoint, symbol, limit), [0, 0])
                cause[0] += 1
                cause[1] += 0 if sent else 1
    score.extra["failures_avoided_by_cause"] = {k: f"{v[1]}/{v[0]}" for k, v in sorted(causes.items())}
    return score


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make_learner(threshold: float, per_endpoint: bool, probe_share: float) -> ErrorLearner:
    return ErrorLearner(
        None,
        threshold=threshold,
        probe_share=probe_share,
        min_samples=1_000,
        background=False,
        per_endpoint=per_endpoint,
        clock=_Clock(),
        train_rows=400_000,
        max_rows=2_000_000,
        retention=365 * 86_400.0,
    )


def tune_breaker(
    calls: Sequence[tuple[float, int]], truth: Sequence[str | None], seed: int, start: float, stop: float
) -> tuple[tuple[int, float], list[dict[str, Any]]]:
    """The breaker's (threshold, recovery) of ``BREAKER_GRID`` with the best goodput on the
    validation slice [start, stop): the breaker gets its own tuning, on the same slice as the gate."""
    tried = []
    for threshold, recovery in BREAKER_GRID:
        score = run(ConsecutiveBreaker(threshold, recovery), calls, truth, seed, start, stop=stop)
        score.seconds = stop - start
        tried.append(((threshold, recovery), score.as_dict()))
    best = max(tried, key=lambda item: item[1]["goodput_per_s"] or 0.0)
    figures = [{"threshold": t, "recovery": r, **_figures(d)} for (t, r), d in tried]
    return best[0], figures


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("failing_avoided_share", "good_skipped_share", "goodput_per_s")}


def evaluate(
    days: float,
    seed: int,
    train_share: float,
    threshold: float | None,
    probe_share: float,
    max_good_skipped: float = 0.01,
) -> dict[str, Any]:
    """Every policy on the same replay; ``threshold`` None: the gate chooses it on validation."""
    calls = schedule(days)
    truth = fates(calls, seed)
    cut = days * 86_400.0 * train_share
    validation = cut - days * 86_400.0 * train_share * VALIDATION_SHARE
    (b_threshold, b_recovery), breaker_tuning = tune_breaker(calls, truth, seed, validation, cut)
    results = []
    timings = {}
    tuned = ConsecutiveBreaker(threshold=b_threshold, recovery=b_recovery)
    tuned.name = f"breaker tuned on validation ({b_threshold} in a row, {b_recovery:.0f} s)"
    for policy in (
        NoGate(),
        ConsecutiveBreaker(threshold=5, recovery=30.0),
        tuned,
        SreThrottle(k=2.0, window=120.0),
    ):
        started = time.perf_counter()
        results.append(run(policy, calls, truth, seed, cut))
        timings[policy.name] = round(time.perf_counter() - started, 2)
    variants = [
        ("learned gate (one model)", False),
        ("learned gate (per endpoint)", True),
    ]
    for name, per_endpoint in variants:
        started = time.perf_counter()
        learner = make_learner(threshold or 0.8, per_endpoint, probe_share)
        gate = LearnedGate(learner, name)
        gate.extra = {}
        budget = None if threshold is not None else max_good_skipped
        score = run(gate, calls, truth, seed, cut, learner, max_good_skipped=budget)
        score.extra = {
            "threshold": learner.threshold,
            "probe_share": probe_share,
            **gate.extra,
            **score.extra,
        }
        score.extra["probes"] = learner.probes
        results.append(score)
        timings[name] = round(time.perf_counter() - started, 2)
        learner.close()
    for score in results:
        score.seconds = days * 86_400.0 - cut
    table = [s.as_dict() for s in results]
    return {
        "days": days,
        "seed": seed,
        "train_share": train_share,
        "calls_scheduled": len(calls),
        "calls_scored": results[0].calls,
        "failing_share_scored": round(results[0].would_fail / max(1, results[0].calls), 4),
        "validation_slice": [round(validation, 1), round(cut, 1)],
        "breaker_tuning": breaker_tuning,
        "results": table,
        "seconds_per_policy": timings,
        "targets": targets(table),
    }


def targets(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on the best learned row: >= 90 % of failing calls avoided,
    <= 2 % of good calls skipped, better than every baseline (goodput and avoided share)."""
    learned = [r for r in table if r["policy"].startswith("learned")]
    baselines = [r for r in table if not r["policy"].startswith("learned")]
    best = max(learned, key=lambda r: r["goodput_per_s"] or 0.0)
    return {
        "best_learned": best["policy"],
        "avoided_at_least_90pct": (best["failing_avoided_share"] or 0) >= 0.90,
        "good_skipped_at_most_2pct": (best["good_skipped_share"] or 0) <= 0.02,
        "goodput_above_every_baseline": all(
            (best["goodput_per_s"] or 0) > (b["goodput_per_s"] or 0) for b in baselines
        ),
        "avoided_above_every_baseline": all(
            (best["failing_avoided_share"] or 0) > (b["failing_avoided_share"] or 0) for b in baselines
        ),
    }


def plot(report: dict[str, Any], path: Path) -> bool:
    """Bars of avoided / wrongly skipped shares and goodput per policy (False: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = report["results"]
    names = [textwrap.fill(r["policy"], 16) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    series = (
        (
            "failing calls avoided (%)",
            [100 * (r["failing_avoided_share"] or 0) for r in rows],
            90,
            "target >= 90 %",
        ),
        ("good calls skipped (%)", [100 * (r["good_skipped_share"] or 0) for r in rows], 2, "target <= 2 %"),
        ("goodput (successful calls / s)", [r["goodput_per_s"] or 0 for r in rows], None, None),
    )
    for ax, (title, values, target, label) in zip(axes, series, strict=True):
        colors = ["#36c" if r["policy"].startswith("learned") else "#999" for r in rows]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), names, fontsize=7)
        ax.set_title(title)
        if target is not None:
            ax.axhline(target, color="k", linestyle="--", linewidth=1, label=label)
            ax.legend(fontsize=8)
        for i, v in enumerate(values):
            ax.text(
                i, v, f"{v:.1f}" if target is not None else f"{v:.3f}", ha="center", va="bottom", fontsize=7
            )
    fig.suptitle(
        f"Learning gate vs baselines, {report['days']} sim days, scored on the last "
        f"{(1 - report['train_share']) * 100:.0f} % (seed {report['seed']})"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main_argv(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=2.0, help="simulated days to replay")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-share", type=float, default=0.6, help="share of the time to train on")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="fix the gate's skip threshold (default: chosen on validation)",
    )
    parser.add_argument(
        "--max-good-skipped", type=float, default=0.01, help="validation budget of good calls skipped"
    )
    parser.add_argument("--probe-share", type=float, default=0.05, help="share of would-be skips probed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for tables")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "gate_eval.png")
    args = parser.parse_args(argv)
    if not 0.0 < args.train_share < 1.0:
        parser.error("--train-share must be between 0 and 1")
    started = time.perf_counter()
    report = evaluate(
        args.days, args.seed, args.train_share, args.threshold, args.probe_share, args.max_good_skipped
    )
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    table = format_table(report["results"])
    print(table)
    print(json.dumps(report["targets"], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "gate_eval.md").write_text(
        f"# Learning gate evaluation ({report['days']} sim days, seed {report['seed']}, "
        f"scored on the last {(1 - report['train_share']) * 100:.0f} % of the time)\n\n"
        f"{report['calls_scored']} calls scored, {report['failing_share_scored'] * 100:.1f} % of them "
        f"would fail. Produced by `python benchmarks/eval_gate.py` in {report['wall_seconds']} s.\n\n"
        f"{table}\n\nTargets: {json.dumps(report['targets'])}\n"
    )
    if plot(report, args.plot):
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main_argv())
