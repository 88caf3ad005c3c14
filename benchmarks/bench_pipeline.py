"""Success path, cache hit, fail-fast and async concurrency: raw ccxt, ccxt's own retries, a
tenacity loop and hardened, interleaved in one run against the simulator (in its own process).

Run: ``python benchmarks/bench_pipeline.py [--exchange binance] [--endpoint fetch_ticker]
[--calls 2000] [--json] [--plot latency.png]`` (the same as ``hardened bench``; ``--help`` lists
every option). Prints p50/p95/p99, calls/s and the ratio to raw ccxt with a 95 % bootstrap
interval (target: hardened at most 1.02x), the cache-hit speed-up (target: 50x), the time an
open breaker takes to refuse a call, and throughput at 1, 10 and 100 concurrent async callers.
"""

from __future__ import annotations

import sys

from hardened.bench import main_argv

if __name__ == "__main__":
    sys.exit(main_argv(sys.argv[1:]))
