"""``hardened bench`` and its runners, on tiny runs against the simulator (no timed assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hardened.benchmark import run_concurrency, run_scenario, wrong_answer
from hardened.benchmark.command import main_argv
from hardened.benchmark.stats import paired_ratio, summarize
from hardened.sim import FaultEngine, Profile, Simulator, load_profile


def test_cli_tiny_run_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "latency.png"
    argv = [
        "--calls",
        "20",
        "--micro-calls",
        "20",
        "--parts",
        "success,micro",  # concurrency has its own test below
        "--json",
        "--no-progress",
        "--plot",
        str(plot),
    ]
    assert main_argv(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "simulator"
    assert doc["parts"] == ["success", "micro"]
    assert {"date_utc", "cpus", "python"} <= set(doc["machine"])
    ticker = doc["success"]["binance"]["fetch_ticker"]
    assert set(ticker["contenders"]) == {"raw", "ccxt_retry", "tenacity", "hardened"}
    for name, fig in ticker["contenders"].items():
        assert fig["samples"] == 20
        assert {"p50_us", "p95_us", "p99_us", "per_s"} <= set(fig)
        assert "samples_s" not in fig  # raw samples feed the plot, not the JSON
        if name != "raw":
            assert fig["ratio_low"] <= fig["ratio"] <= fig["ratio_high"]
    micro = doc["micro"]["binance"]
    assert micro["open_breaker_refusals"] == 20
    assert micro["cache_hits"] >= 1 and micro["cache_speedup"] > 0
    assert "concurrency" not in doc and "scenarios" not in doc
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["plot"] == str(plot)


def test_cli_refuses_unknown_parts_and_bad_counts() -> None:
    with pytest.raises(SystemExit) as exc:
        main_argv(["--parts", "success,speed"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main_argv(["--calls", "0"])
    assert exc.value.code == 2


def test_round_trip_option_delays_the_simulator_and_is_refused_outside_the_success_part(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--rtt-ms", "20"], ["--rtt-ms", "20", "--parts", "success,micro"], ["--rtt-ms", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main_argv(argv)
        assert exc.value.code == 2
    capsys.readouterr()
    argv = ["--calls", "5", "--parts", "success", "--rtt-ms", "30", "--json", "--no-progress"]
    assert main_argv(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rtt_ms"] == 30.0
    raw = doc["success"]["binance"]["fetch_ticker"]["contenders"]["raw"]
    assert raw["p50_us"] >= 30_000  # every answer came a round trip later


def test_wrong_answer_reads_the_ground_truth_record() -> None:
    assert wrong_answer({"fault_kind": "bad_data", "fault": "bad_data:crossed_book"})
    assert not wrong_answer({"fault_kind": "bad_data", "fault": "bad_data"})  # no variant applied
    assert wrong_answer({"fault_kind": "html_200", "fault": "html_200"})
    assert wrong_answer({"fault_kind": "malformed_json", "fault": "malformed_json"})
    assert not wrong_answer({"fault_kind": "http_5xx", "fault": "http_5xx"})
    assert not wrong_answer({"fault_kind": None, "fault": None})


def _corrupted_tickers(profile: Profile, seed: int, n: int) -> int:
    """How many of the first ``n`` ticker answers the simulator corrupts (its own decisions)."""
    engine = FaultEngine(load_profile(profile), seed)
    actions = [engine.decide("binance", "ticker") for _ in range(n)]
    return sum(1 for d in actions if d is not None and d.action in ("bad_data", "html_200"))


def test_fault_runner_counts_wrong_answers_on_bad_data() -> None:
    # The built-in baddata profile, every variant (zero prices that ccxt turns into None too), and
    # hardened at its default policy and minimum score: only quick retries, for a fast test.
    calls, seed = 30, 7
    profile = load_profile("baddata")
    result = run_scenario(
        profile,
        "binance",
        "fetch_ticker",
        calls,
        interval=0.0,
        seed=seed,
        contenders=["raw", "hardened"],
        hardened_overrides={"initial_delay": 0.01, "jitter": 0.0},
    )
    raw, ours = result["contenders"]["raw"], result["contenders"]["hardened"]
    assert result["seed"] == seed and result["profile"] == "baddata"  # the JSON says how to rerun it
    expected = _corrupted_tickers(profile, seed, calls)
    assert expected > 0
    assert raw["wrong"] == expected  # one request per call: every corrupted answer reached raw ccxt
    assert raw["right"] == calls - expected and raw["requests_sent"] == calls
    assert raw["untraced"] == 0 and ours["untraced"] == 0
    assert ours["wrong"] == 0 and ours["wrong_by_fault"] == {}
    assert sum(raw["wrong_by_fault"].values()) == expected
    assert ours["requests_sent"] > calls  # it asked again after each bad answer
    assert ours["right"] + ours["failed"] == calls


def test_fault_runner_times_recovery_after_an_outage_window() -> None:
    profile = {
        "name": "short_outage",
        "faults": [{"kind": "http_5xx", "status": [503], "window": {"start": 0.3, "end": 0.8}}],
    }
    import hardened.benchmark.scenarios as scenarios

    old_tail = scenarios.TAIL_S
    scenarios.TAIL_S = 0.7
    try:
        result = run_scenario(
            load_profile(profile), calls=0, interval=0.02, contenders=["raw"], hardened_overrides=None
        )
    finally:
        scenarios.TAIL_S = old_tail
    raw = result["contenders"]["raw"]
    assert result["windows_s"] == [(0.3, 0.8)]
    assert raw["failed"] > 0 and raw["right"] > 0
    assert raw["first_fresh_after_outage_s"] is not None and raw["first_fresh_after_outage_s"] >= 0


def test_concurrency_runner_counts_calls_and_requests() -> None:
    with Simulator("binance") as sim:
        result = run_concurrency("binance", sim.url, levels=(1, 10), calls=20, rounds=2)
    assert set(result["levels"]) == {"1", "10"}
    for level in result["levels"].values():
        assert set(level) == {"raw", "hardened", "hardened_uncoalesced"}
        assert level["raw"]["samples"] == 20 and level["raw"]["requests_sent"] == 20
        assert level["hardened_uncoalesced"]["requests_sent"] == 20  # nothing cacheable, nothing shared
        assert 1 <= level["hardened"]["requests_sent"] <= 20  # identical calls in flight share one
        assert level["hardened"]["throughput_per_s"] > 0


def test_paired_ratio_and_summary() -> None:
    base = [0.001 * (1 + (i % 7) / 10) for i in range(200)]
    same = paired_ratio(base, base)
    assert same["ratio"] == 1.0 and same["ratio_low"] <= 1.0 <= same["ratio_high"]
    assert same["added_us"] == 0.0
    double = paired_ratio([2 * x for x in base], base)
    assert double["ratio"] == pytest.approx(2.0)
    summary = summarize(base)
    assert summary["samples"] == 200
    assert summary["p50_us"] <= summary["p95_us"] <= summary["p99_us"]
    assert summarize([])["p50_us"] is None


def test_cli_refuses_non_finite_interval_and_unknown_profile_before_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --interval nan printed NaN into --json (invalid JSON), inf crashed a bot thread; an unknown
    # --profile failed with a traceback only after the other parts had run
    for argv in (
        ["--parts", "faults", "--interval", "nan"],
        ["--parts", "faults", "--interval", "inf"],
        ["--parts", "faults", "--profile", "no_such_profile"],
        ["--profile", "transient,no_such_profile"],
    ):
        with pytest.raises(SystemExit) as exc:
            main_argv(argv)
        assert exc.value.code == 2
    assert "no_such_profile" in capsys.readouterr().err


def test_live_without_network_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no internet in tests: "the real API" is a closed local port, as with no network at all
    import socket

    import hardened.benchmark.success as success
    from hardened.sim import attach_url

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(success, "_attach", lambda base_url: lambda ex: attach_url(ex, closed))
    assert main_argv(["--live", "--calls", "2", "--no-progress", "--json"]) == 1
    out = capsys.readouterr()
    assert out.out == ""  # nothing half-written to stdout
    assert "--live could not reach" in out.err and "Traceback" not in out.err


def test_fault_runner_raises_when_a_bot_thread_fails() -> None:
    # an error in a bot's thread used to end that thread quietly and the run reported the
    # figures of the calls made so far as if it had finished
    def broken_progress(n: int) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="raw bot stopped") as exc:
        run_scenario("transient", calls=5, interval=0.0, contenders=["raw"], advance=broken_progress)
    assert isinstance(exc.value.__cause__, RuntimeError)


def test_fault_runner_runs_until_the_latest_window_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # the long window starts first and ends last: the run and the recovery clock must use its
    # end, not that of the window that starts last (the run used to stop mid-outage)
    import hardened.benchmark.scenarios as scenarios

    monkeypatch.setattr(scenarios, "TAIL_S", 0.4)
    profile = {
        "name": "nested",
        "faults": [
            {"kind": "http_5xx", "status": [503], "window": {"start": 0.1, "end": 1.0}},
            {"kind": "http_5xx", "status": [502], "window": {"start": 0.2, "end": 0.3}},
        ],
    }
    result = run_scenario(load_profile(profile), calls=0, interval=0.02, contenders=["raw"])
    raw = result["contenders"]["raw"]
    assert raw["failed"] > 0
    assert raw["first_fresh_after_outage_s"] is not None  # the run went on past 1.0 s


def test_fault_runner_counts_every_window_from_one_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    # each contender's simulator starts as the contender is built, one after another: their
    # clocks are set to one instant as the bots start, so a window opens for all at once
    import hardened.benchmark.scenarios as scenarios

    monkeypatch.setattr(scenarios, "TAIL_S", 0.1)
    sims: list[Simulator] = []

    class Recorded(Simulator):
        def stop(self) -> None:
            sims.append(self)
            super().stop()

    monkeypatch.setattr(scenarios, "Simulator", Recorded)
    profile = {"name": "blip", "faults": [{"kind": "http_5xx", "window": {"start": 0.0, "end": 0.05}}]}
    run_scenario(load_profile(profile), calls=0, interval=0.02, contenders=["raw", "tenacity", "hardened"])
    assert len(sims) == 3
    assert len({sim.faults.started for sim in sims}) == 1
    assert len({sim.faults.started_wall for sim in sims}) == 1


def test_concurrency_runner_makes_every_call_asked_for() -> None:
    # 10 calls in 4 rounds used to measure 4 x (10 // 4) = 8
    with Simulator("binance") as sim:
        result = run_concurrency("binance", sim.url, levels=(1,), calls=10, rounds=4)
    for fig in result["levels"]["1"].values():
        assert fig["samples"] == 10
    assert result["levels"]["1"]["raw"]["requests_sent"] == 10


def test_hardened_contender_runs_the_defaults_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a bot's HARDENED_* settings in the shell used to reach the "default configuration" measured
    # (quality_policy=off let every corrupted answer through, as raw ccxt does)
    from hardened.benchmark.contenders import build_sync
    from hardened.config import HardenedConfig

    monkeypatch.setenv("HARDENED_QUALITY_POLICY", "off")
    monkeypatch.setenv("HARDENED_MAX_RETRIES", "0")
    monkeypatch.setenv("HARDENED_ENDPOINTS__TICKER__MAX_RETRIES", "7")
    monkeypatch.setenv("HARDENED_STATUS_PORT", "8799")
    monkeypatch.delenv("HARDENED_LEARNING_STORE", raising=False)
    contender = build_sync("hardened", "binance", lambda ex: ex, hardened_overrides={"cache_ttl": 0})
    try:
        config = contender.client._hd.config
        defaults = HardenedConfig.model_fields
        assert config.quality_policy == defaults["quality_policy"].default
        assert config.max_retries == defaults["max_retries"].default
        assert config.endpoints == {} and config.status_port is None
        assert config.cache_ttl == 0  # the benchmark's own overrides still apply
        assert config.learning_store == ":memory:"  # never the user's real store
    finally:
        contender.close()
    # stages are the client's argument beside the settings (benchmarks/bench_floor.py passes them)
    bare = build_sync("hardened", "binance", lambda ex: ex, hardened_overrides={"cache_ttl": 0, "stages": []})
    bare.close()


def test_plot_problems_never_lose_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # without matplotlib --plot is refused before the run, not with a traceback after it
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "matplotlib", None)  # as if the [bench] extra were missing
        with pytest.raises(SystemExit) as exc:
            main_argv(["--parts", "success", "--calls", "3", "--plot", str(tmp_path / "x.png")])
        assert exc.value.code == 2
    assert "matplotlib" in capsys.readouterr().err
    # a plot that cannot be written: the figures are still printed, and the exit code says so
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    argv = ["--parts", "success", "--calls", "3", "--no-progress", "--json", "--plot", str(blocker / "x.png")]
    assert main_argv(argv) == 1
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["success"]["binance"]["fetch_ticker"]["contenders"]["raw"]["samples"] == 3
    assert "plot" not in doc and "could not save the plot" in out.err


def test_live_refuses_parts_it_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    # --live --parts faults used to run nothing at all and exit 0 (never touches the network)
    for parts in ("faults", "success,micro"):
        with pytest.raises(SystemExit) as exc:
            main_argv(["--live", "--parts", parts, "--no-progress"])
        assert exc.value.code == 2
    assert "--live runs the success part only" in capsys.readouterr().err


def test_interrupted_fault_run_stops_its_bots(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C during a windowed run reached the caller, but the bots (non-daemon threads) went on
    # polling closed simulators until the run's planned end, keeping the process alive
    import threading

    import hardened.benchmark.scenarios as scenarios

    bots: list[threading.Thread] = []

    class Interrupted(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            if not self.name.startswith("bench-"):  # the simulator's own thread
                return super().join(timeout)
            bots.append(self)
            raise KeyboardInterrupt  # as Ctrl-C while the run waits for its bots

    monkeypatch.setattr(scenarios.threading, "Thread", Interrupted)
    profile = {"name": "long", "faults": [{"kind": "http_5xx", "window": {"start": 1.0, "end": 60.0}}]}
    with pytest.raises(KeyboardInterrupt):
        run_scenario(load_profile(profile), calls=0, interval=0.02, contenders=["raw"])
    monkeypatch.undo()
    assert bots and all(bot.daemon for bot in bots)  # never keeps the interpreter from exiting
    for bot in bots:
        threading.Thread.join(bot, timeout=30)  # the run planned 100 s; it stops at the next tick
        assert not bot.is_alive()
