"""Hot path of a successful call: hardened vs raw ccxt, measured in the same run.

Run: ``python benchmarks/bench_pipeline.py`` (the same as ``hardened bench``). Prints the
pipeline's own cost per call in microseconds, and the median ``fetch_ticker`` latency over HTTP
against the simulator, raw and hardened, as a ratio (target: at most 1.02).
"""

from __future__ import annotations

import sys

from hardened.bench import main_argv

if __name__ == "__main__":
    sys.exit(main_argv(sys.argv[1:]))
