"""The four contenders under fault profiles: transient 5xx and timeouts, a 429 storm with
Retry-After, a 60-second outage (in real time), bad data. About five minutes in all.

Run: ``python benchmarks/bench_faults.py [--exchange binance] [--json]`` (the same as
``hardened bench --parts faults --profile transient,ratelimit_storm,outage60,baddata``; other
options of ``hardened bench`` pass through). Prints, per contender: success rate, goodput, stale
answers, failures, requests sent, time to the first fresh answer after the outage, and wrong
answers that reached the caller, judged against the simulator's ground truth.
"""

from __future__ import annotations

import sys

from hardened.bench import main_argv
from hardened.benchmark import SCENARIOS

if __name__ == "__main__":
    argv = ["--parts", "faults", "--profile", ",".join(SCENARIOS), *sys.argv[1:]]
    sys.exit(main_argv(argv))
