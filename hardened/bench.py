"""``hardened bench``: endpoint benchmarks against raw ccxt, in the same run.

The benchmark lives in ``hardened.benchmark`` (contenders, success path, fault scenarios,
concurrency, report, plot); this module is the entry point ``hardened.cli`` routes to.
"""

from hardened.benchmark.command import build_parser, main_argv

__all__ = ["build_parser", "main_argv"]
