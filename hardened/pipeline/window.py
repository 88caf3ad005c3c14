"""Counts over a sliding time window in one-second buckets: the breaker's failure rate and the
retry budget both need "how many of X and Y in the last N seconds" without allocating per call.

Written by hand: a ring of integer buckets is a dozen lines, cheaper than any general library.
Not thread-safe on its own: the owner holds its lock around it.
"""

from __future__ import annotations

__all__ = ["SlidingCounts"]


class SlidingCounts:
    """Two counters (``a``, ``b``) per one-second bucket over the last ``seconds`` seconds."""

    __slots__ = ("_a", "_b", "_seconds", "_stamps")

    def __init__(self, seconds: int) -> None:
        self._seconds = max(1, int(seconds))
        self._a = [0] * self._seconds
        self._b = [0] * self._seconds
        self._stamps = [-1] * self._seconds

    def add(self, now: float, a: int, b: int) -> None:
        """Add ``a`` and ``b`` to the bucket of ``now`` (seconds on a monotonic clock)."""
        second = int(now)
        i = second % self._seconds
        if self._stamps[i] != second:
            self._stamps[i] = second
            self._a[i] = 0
            self._b[i] = 0
        self._a[i] += a
        self._b[i] += b

    def totals(self, now: float) -> tuple[int, int]:
        """(sum of a, sum of b) over the window ending at ``now``."""
        oldest = int(now) - self._seconds
        total_a = total_b = 0
        for i, stamp in enumerate(self._stamps):
            if stamp > oldest:
                total_a += self._a[i]
                total_b += self._b[i]
        return total_a, total_b

    def clear(self) -> None:
        """Forget every bucket."""
        for i in range(self._seconds):
            self._stamps[i] = -1
