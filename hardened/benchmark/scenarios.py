"""Fault scenarios: the same bot loop on every contender, under the same simulator profile.

Each contender gets its own simulator (same profile, same seed: its n-th request meets the same
fault as every other contender's n-th request) and its own thread; the threads start together,
so a time window (a 429 storm, an outage) hits every contender at the same moment. The loop is a
bot polling one endpoint every ``interval`` seconds (a call that runs late delays the next).

Measured per contender: right answers (success rate, goodput per second), stale answers served
from hardened's cache, errors by class, requests sent to the exchange, the time from the end of
an outage window to the first fresh answer, and wrong answers that reached the caller.

Wrong answers are judged against the simulator's ground truth, not by hardened's validators: each
contender's exchange is the only client of its simulator and sends one request at a time, so
the simulator's k-th ground-truth record is the contender's k-th request (checked by path). A
call that returned is traced to the request whose answer it returned (the last one it sent, or
for a stale answer the request whose answer was cached); it is wrong when the simulator
corrupted that answer (``bad_data`` with a variant applied, an HTML page, truncated JSON).
One approximation: hardened's incremental OHLCV answer merges the candles it held with those of
the last request, and is judged by that request alone; a merge can drop a corrupted candle, so
on ``fetch_ohlcv`` its wrong answers may be over-counted, never under-counted.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from hardened.benchmark.contenders import CONTENDERS, ENDPOINTS, Contender, build_sync, symbol_for
from hardened.benchmark.stats import summarize
from hardened.sim import Profile, Simulator, load_profile

__all__ = ["SCENARIOS", "SCENARIO_OVERRIDES", "run_scenario", "wrong_answer"]

SCENARIOS = ("transient", "ratelimit_storm", "outage60", "baddata")
# Every call of hardened reaches the exchange, as every other contender's does: the cache TTL is
# 0 (a hit would hide the fault), stale-if-error and everything else stay at their defaults.
SCENARIO_OVERRIDES = {"cache_ttl": 0}
TIMEOUT_MS = 1000  # ccxt's timeout on every side, so a hung request costs a second, not ten
TAIL_S = 40.0  # after the last window: long enough for a breaker (30 s recovery) to probe again
_CORRUPTING = frozenset({"html_200", "malformed_json"})


def wrong_answer(record: dict[str, Any]) -> bool:
    """Whether the simulator corrupted the answer of this ground-truth record."""
    kind = record.get("fault_kind")
    if kind == "bad_data":
        return ":" in str(record.get("fault") or "")  # "bad_data:high_low": a variant was applied
    return kind in _CORRUPTING


def _last_end(windows: list[tuple[float, float]]) -> float:
    """When the last window closes: the latest end, not the end of the window that starts last
    (a long window can start before a short one and outlast it)."""
    return max(end for _start, end in windows)


def _windows(profile: Profile) -> list[tuple[float, float]]:
    """(start, end) in real seconds of every finite fault window of the profile."""
    factor = profile.schedule.time_compression if profile.schedule is not None else 1.0
    rules = list(profile.faults) + [r for regime in profile.regimes.values() for r in regime.faults]
    return sorted(
        (r.window.start / factor, r.window.end / factor)
        for r in rules
        if r.window is not None and math.isfinite(r.window.end)
    )


class _Tracer:
    """Counts the requests a contender's exchange sends, and the URL path of each."""

    def __init__(self, exchange: Any) -> None:
        self.paths: list[str] = []
        original = exchange.fetch

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            self.paths.append(urlsplit(url).path)
            return original(url, *args, **kwargs)

        exchange.fetch = fetch

    def reset(self) -> None:
        self.paths.clear()


def _stale_count(contender: Contender, endpoint: str) -> int:
    core = getattr(contender.client, "_hd", None)
    if core is None:
        return 0
    stats = core.stats_by_endpoint.get(endpoint)
    return stats.stale_served if stats is not None else 0


def _loop(
    contender: Contender,
    tracer: _Tracer,
    spec: Any,
    symbol: str,
    started: float,
    interval: float,
    stop: Callable[[int, float], bool],
    calls: list[dict[str, Any]],
    advance: Callable[[int], None] | None,
) -> None:
    """The bot: poll, record what happened, wait for the next tick."""
    perf = time.monotonic
    origin_of_cached: int | None = None
    n = 0
    while True:
        t0 = perf()
        if stop(n, t0 - started):
            return
        stale_before = _stale_count(contender, spec.endpoint)
        entry: dict[str, Any] = {"t": t0 - started}
        try:
            contender.call(spec, symbol)
        except Exception as error:
            entry["error"] = type(error).__name__
        else:
            stale = _stale_count(contender, spec.endpoint) > stale_before
            entry["stale"] = stale
            if stale:
                entry["origin"] = origin_of_cached
            else:
                entry["origin"] = len(tracer.paths) - 1
                origin_of_cached = entry["origin"]
        entry["done"] = perf() - started
        calls.append(entry)
        n += 1
        if advance is not None:
            advance(1)
        wait = t0 + interval - perf()
        if wait > 0:
            time.sleep(wait)


def run_scenario(
    profile: str | Profile,
    exchange: str = "binance",
    endpoint: str = "fetch_ticker",
    calls: int = 400,
    *,
    interval: float = 0.05,
    seed: int = 7,
    contenders: Sequence[str] = CONTENDERS,
    advance: Callable[[int], None] | None = None,
    hardened_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every contender through ``profile`` at once; returns the figures of each.

    A profile with time windows runs until its last window ends plus ``TAIL_S`` seconds (and
    ``calls`` is ignored); any other runs ``calls`` calls per contender.
    """
    loaded = load_profile(profile)
    windows = _windows(loaded)
    duration = _last_end(windows) + TAIL_S if windows else None
    spec = ENDPOINTS[endpoint]
    symbol = symbol_for(exchange)
    overrides = dict(SCENARIO_OVERRIDES, **(hardened_overrides or {}))
    sims: dict[str, Simulator] = {}
    built: dict[str, Contender] = {}
    tracers: dict[str, _Tracer] = {}
    try:
        for name in contenders:
            sim = sims[name] = Simulator(exchange, profile=loaded, seed=seed).start()
            built[name] = build_sync(
                name, exchange, sim.attach, timeout_ms=TIMEOUT_MS, hardened_overrides=overrides
            )
            _load_markets(built[name].client)
            tracers[name] = _Tracer(built[name].exchange)
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        failures: dict[str, BaseException] = {}
        halt = threading.Event()  # a bot failed, or the caller was interrupted: every bot stops

        def same_clock() -> None:
            """The simulators started one by one as their contenders were built: restart their
            clocks together as the bots are released, so a window opens for all at one moment."""
            now, wall = time.monotonic(), time.time()
            for sim in sims.values():
                sim.faults.started, sim.faults.started_wall = now, wall

        barrier = threading.Barrier(len(contenders), action=same_clock)

        def stop(n: int, elapsed: float) -> bool:
            if halt.is_set():  # the run has no figures: the others need not go on
                return True
            return elapsed >= duration if duration is not None else n >= calls

        def run(name: str) -> None:
            try:
                barrier.wait()
                sims[name].clear_ground_truth()
                tracers[name].reset()
                started = sims[name].faults.started  # windows count from the simulator's start
                _loop(
                    built[name], tracers[name], spec, symbol, started, interval, stop, records[name], advance
                )
            except BaseException as error:  # re-raised below: figures of a cut-short run are wrong
                failures[name] = error
                halt.set()
                barrier.abort()  # a bot still waiting to start must not wait for this one forever

        # daemons: a bot inside a long call must not keep the process alive after Ctrl-C
        threads = [
            threading.Thread(target=run, args=(n,), name=f"bench-{n}", daemon=True) for n in contenders
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C: the bots stop now, not at the run's planned end
            halt.set()
            barrier.abort()
            raise
        for name, error in failures.items():
            if not isinstance(error, threading.BrokenBarrierError):  # the others' abort, not a cause
                raise RuntimeError(f"the {name} bot stopped with an error; no figures") from error
        out: dict[str, Any] = {
            "profile": loaded.name,
            "exchange": exchange,
            "endpoint": endpoint,
            "seed": seed,  # with the profile, what makes the run's faults reproducible
            "interval_s": interval,
            "timeout_ms": TIMEOUT_MS,
            "windows_s": windows,
            "contenders": {},
        }
        for name in contenders:
            truth = sims[name].ground_truth()
            out["contenders"][name] = _figures(records[name], truth, tracers[name].paths, windows)
        return out
    finally:
        for contender in built.values():
            contender.close()
        for sim in sims.values():
            sim.stop()


def _load_markets(client: Any, tries: int = 20) -> None:
    """Markets first (outside the measurement): a fault profile may refuse the first tries."""
    for attempt in range(tries):
        try:
            client.load_markets()
            return
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(0.05)


def _figures(
    calls: list[dict[str, Any]],
    truth: list[dict[str, Any]],
    paths: list[str],
    windows: list[tuple[float, float]],
) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    wrong_by_fault: Counter[str] = Counter()  # which corruption each wrong answer carried
    right = wrong = stale = untraced = 0
    first_fresh_after: float | None = None
    outage_end = _last_end(windows) if windows else None
    for entry in calls:
        if "error" in entry:
            errors[entry["error"]] += 1
            continue
        origin = entry.get("origin")
        record = truth[origin] if origin is not None and 0 <= origin < len(truth) else None
        if record is None or record["path"].split("?", 1)[0] != paths[origin]:  # type: ignore[index]
            untraced += 1  # cannot be judged: counted apart, never as right
            continue
        if wrong_answer(record):
            wrong += 1
            wrong_by_fault[str(record.get("fault") or record.get("fault_kind"))] += 1
            continue
        right += 1
        if entry["stale"]:
            stale += 1
        elif outage_end is not None and entry["done"] >= outage_end and first_fresh_after is None:
            first_fresh_after = entry["done"] - outage_end
    total = len(calls)
    elapsed = calls[-1]["done"] - calls[0]["t"] if calls else 0.0
    latencies = [entry["done"] - entry["t"] for entry in calls]
    return {
        "calls": total,
        "right": right,
        "wrong": wrong,
        "wrong_by_fault": dict(wrong_by_fault),
        "stale": stale,
        "untraced": untraced,
        "errors": dict(errors),
        "failed": sum(errors.values()),
        "success_rate": right / total if total else 0.0,
        "goodput_per_s": right / elapsed if elapsed > 0 else 0.0,
        "requests_sent": len(paths),
        "requests_per_call": len(paths) / total if total else 0.0,
        "first_fresh_after_outage_s": first_fresh_after,
        "latency": summarize(latencies),
    }
