"""What an earlier answer showed, held against the next: the past does not change.

A "latest" request (the latest trades, the latest candles) asked again later must show at least
as much of the time both answers cover, and nothing older than it already showed. ``SeenSpan``
keeps the times of the last answer that passed (its validator reads them anyway) and tells,
with two binary searches per answer, when a later one went back in time (a stale answer) or lost
entries inside that span (a hole cut into it). The monitor keeps one per client and request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardened.quality.report import Issue, Severity

__all__ = ["SeenSpan"]


@dataclass(frozen=True, slots=True)
class SeenSpan:
    """The sorted entry times of one answer that passed, and its first and last time."""

    oldest: float
    newest: float
    stamps: np.ndarray  # sorted, none missing

    @classmethod
    def of_times(cls, ts: np.ndarray, ordered: bool = False) -> SeenSpan | None:
        """The span of an answer's entry times (NaN dropped); None when none is dated."""
        if not ordered:
            ts = np.sort(ts[~np.isnan(ts)])
        if not ts.size:
            return None
        return cls(float(ts[0]), float(ts[-1]), ts)

    def compare(self, ts: np.ndarray, noun: str) -> Issue | None:
        """Why a later answer to the same request cannot be true (``ts``: its entry times, sorted,
        none missing; ``noun``: ``trades`` or ``candles``, naming the issue); None if it can."""
        newest = float(ts[-1])
        if newest < self.newest:
            return Issue(
                f"{noun}_regressed",
                Severity.ERROR,
                f"newest of the {noun} ({newest:.0f}) older than an earlier answer's ({self.newest:.0f})",
                len(ts),
                (),
                1.0,
                True,
            )
        low, high = max(float(ts[0]), self.oldest), self.newest  # ends may be cut by a limit
        if high <= low:
            return None
        had = int(np.searchsorted(self.stamps, high, "left") - np.searchsorted(self.stamps, low, "right"))
        has = int(np.searchsorted(ts, high, "left") - np.searchsorted(ts, low, "right"))
        if has >= had:
            return None
        return Issue(
            f"{noun}_vanished",
            Severity.ERROR,
            f"{had - has} {noun} of an earlier answer are missing within this answer's time span",
            had - has,
            (),
            min(1.0, (had - has) / len(ts)),
            True,
        )
