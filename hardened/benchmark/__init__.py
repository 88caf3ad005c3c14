"""Endpoint benchmarks: raw ccxt, ccxt's ``maxRetriesOnFailure``, a tenacity loop and hardened,
measured side by side in one run (``hardened bench``; see ``command.py`` for the parts).

One module per concern: ``contenders`` (how each side is built), ``success`` (interleaved
latency), ``scenarios`` (fault profiles, judged against the simulator's ground truth),
``concurrency`` (async callers), ``micro`` (cache hit, open breaker), ``stats``, ``report``
(tables, JSON), ``plot`` (PNG), ``simproc`` (the simulator in its own process).
"""

from hardened.benchmark.command import main_argv, run
from hardened.benchmark.concurrency import run_concurrency
from hardened.benchmark.micro import run_micro
from hardened.benchmark.scenarios import SCENARIOS, run_scenario, wrong_answer
from hardened.benchmark.success import run_success

__all__ = [
    "SCENARIOS",
    "main_argv",
    "run",
    "run_concurrency",
    "run_micro",
    "run_scenario",
    "run_success",
    "wrong_answer",
]
