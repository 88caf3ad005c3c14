"""Scoring the gate against the simple rules, on held-out time.

Every policy answers the same two questions per call: may it go (``admit``), and what happened
(``observe``, only for calls that went). Policies:

- ``NoGate``: every call goes.
- ``ConsecutiveBreaker``: per exchange x endpoint, open after ``threshold`` failures in a row,
  one probe after ``recovery`` seconds, closed again by a good probe.
- ``SreThrottle``: the SRE book's client-side throttle per exchange x endpoint,
  p = max(0, (requests - K * accepts) / (requests + 1)) over a sliding window, K = 2.
- ``LearnedGate``: an ``ErrorLearner``'s decision (bucketed features, cached probabilities,
  probes).

``Score`` counts, over the scored calls: failing calls avoided (skipped calls that would have
failed), good calls skipped, calls sent, and goodput (successful calls). ``evaluate_rows``
replays recorded outcomes from the store (``hardened train``): a held-out replay of what was
recorded, where a skipped call's outcome is the one recorded for it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hardened.learning.features import FEATURES, ROW_COLUMNS

__all__ = [
    "ConsecutiveBreaker",
    "LearnedGate",
    "NoGate",
    "Score",
    "SreThrottle",
    "choose_threshold",
    "evaluate_rows",
]

# Candidate skip thresholds for ``choose_threshold``: below 0.5 a skip is more likely wrong than
# right, so the search starts there.
THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

_N = len(FEATURES)


@dataclass
class Score:
    """What a policy did to the calls it was scored on."""

    policy: str
    calls: int = 0
    would_fail: int = 0
    would_succeed: int = 0
    failing_avoided: int = 0
    good_skipped: int = 0
    sent: int = 0
    succeeded: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, sent: bool, would_fail: bool) -> None:
        """Count one call: whether the policy let it go, and whether it would have failed."""
        self.calls += 1
        if would_fail:
            self.would_fail += 1
            if not sent:
                self.failing_avoided += 1
        else:
            self.would_succeed += 1
            if not sent:
                self.good_skipped += 1
            else:
                self.succeeded += 1
        if sent:
            self.sent += 1

    def as_dict(self) -> dict[str, Any]:
        """The figures as shares and counts, JSON-ready."""
        return {
            "policy": self.policy,
            "calls": self.calls,
            "would_fail": self.would_fail,
            "failing_avoided_share": _share(self.failing_avoided, self.would_fail),
            "good_skipped_share": _share(self.good_skipped, self.would_succeed),
            "calls_sent": self.sent,
            "calls_saved": self.failing_avoided,
            "succeeded": self.succeeded,
            "goodput_per_s": round(self.succeeded / self.seconds, 4) if self.seconds else None,
            **self.extra,
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class NoGate:
    """Every call goes."""

    name = "no gate"

    def admit(self, group: tuple[Any, ...], key: Any, call: Any, now: float) -> bool:
        return True

    def observe(self, group: tuple[Any, ...], key: Any, call: Any, now: float, failed: bool) -> None:
        return None


class ConsecutiveBreaker:
    """Per group: open after ``threshold`` failures in a row; a probe after ``recovery`` s."""

    name = "consecutive-failure breaker"

    def __init__(self, threshold: int = 5, recovery: float = 30.0) -> None:
        self.threshold = threshold
        self.recovery = recovery
        self._streak: dict[tuple[Any, ...], int] = {}
        self._open_until: dict[tuple[Any, ...], float] = {}
        self._probing: set[tuple[Any, ...]] = set()

    def admit(self, group: tuple[Any, ...], key: Any, call: Any, now: float) -> bool:
        until = self._open_until.get(group)
        if until is None:
            return True
        if now >= until and group not in self._probing:
            self._probing.add(group)  # half-open: one probe
            return True
        return False

    def observe(self, group: tuple[Any, ...], key: Any, call: Any, now: float, failed: bool) -> None:
        if group in self._probing:
            self._probing.discard(group)
            if failed:
                self._open_until[group] = now + self.recovery
                return
            self._open_until.pop(group, None)
            self._streak[group] = 0
            return
        if not failed:
            self._streak[group] = 0
            return
        streak = self._streak.get(group, 0) + 1
        self._streak[group] = streak
        if streak >= self.threshold:
            self._open_until[group] = now + self.recovery
            self._streak[group] = 0


class SreThrottle:
    """Client-side throttling (Google SRE book, ch. 21): reject locally with probability
    max(0, (requests - K * accepts) / (requests + 1)) over the last ``window`` seconds."""

    name = "SRE throttle (K=2)"

    def __init__(self, k: float = 2.0, window: float = 120.0, seed: int = 0) -> None:
        self.k = k
        self.window = window
        self._rng = random.Random(seed)
        self._requests: dict[tuple[Any, ...], deque[float]] = {}
        self._accepts: dict[tuple[Any, ...], deque[float]] = {}

    def _trim(self, q: deque[float], now: float) -> int:
        edge = now - self.window
        while q and q[0] < edge:
            q.popleft()
        return len(q)

    def admit(self, group: tuple[Any, ...], key: Any, call: Any, now: float) -> bool:
        requests = self._requests.setdefault(group, deque())
        accepts = self._accepts.setdefault(group, deque())
        requests.append(now)  # every request the application makes counts, rejected or not
        n_req = self._trim(requests, now)
        n_acc = self._trim(accepts, now)
        p = max(0.0, (n_req - self.k * n_acc) / (n_req + 1.0))
        return self._rng.random() >= p

    def observe(self, group: tuple[Any, ...], key: Any, call: Any, now: float, failed: bool) -> None:
        if not failed:
            self._accepts.setdefault(group, deque()).append(now)


class LearnedGate:
    """The learning gate's own decision, as the pipeline makes it (cached buckets, probes)."""

    def __init__(self, learner: Any, name: str = "learned gate") -> None:
        self.learner = learner
        self.name = name
        self.extra: dict[str, Any] = {}
        self.probe = False  # whether the call last admitted goes as a probe

    def admit(self, group: tuple[Any, ...], key: Any, call: Any, now: float) -> bool:
        skip, _, self.probe = self.learner.decide(key, call)
        return not skip

    def observe(self, group: tuple[Any, ...], key: Any, call: Any, now: float, failed: bool) -> None:
        return None  # the replay records outcomes into the learner itself


def choose_threshold(
    probs: Sequence[float],
    labels: Sequence[int],
    max_good_skipped: float = 0.01,
    grid: Sequence[float] = THRESHOLDS,
) -> tuple[float, list[dict[str, Any]]]:
    """The lowest threshold of ``grid`` that would skip at most ``max_good_skipped`` of the good
    calls in a validation slice (``probs``: the model's failure probabilities, ``labels``: 1 = the
    call failed), and the figures of every candidate. None meets the budget: the highest.

    Lowest, because a lower threshold avoids more failing calls; the budget on good calls is
    what stops it. Chosen on calls the model was not fitted on, before the scored time."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probabilities but {len(labels)} labels")
    if not grid:
        raise ValueError("no candidate thresholds")
    if not 0.0 <= max_good_skipped <= 1.0:
        raise ValueError(f"max_good_skipped must be in [0, 1], got {max_good_skipped}")
    failing = sum(1 for y in labels if y)
    good = len(labels) - failing
    figures = []
    chosen = None
    for t in sorted(grid):
        avoided = sum(1 for p, y in zip(probs, labels, strict=True) if y and p >= t)
        wrongly = sum(1 for p, y in zip(probs, labels, strict=True) if not y and p >= t)
        row = {
            "threshold": t,
            "failing_avoided_share": _share(avoided, failing),
            "good_skipped_share": _share(wrongly, good),
        }
        figures.append(row)
        if chosen is None and wrongly <= max_good_skipped * good:
            chosen = t
    return (chosen if chosen is not None else max(grid)), figures


def evaluate_rows(
    rows: Sequence[tuple[Any, ...]], learner: Any, split: float = 0.7
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay recorded outcomes (store rows, oldest first): train ``learner``'s model on the
    first ``split`` of the time, score every policy on the rest. A skipped call's outcome is the
    one recorded for it; the learned gate decides on the features recorded with each call."""
    if len(rows) < 20:
        raise ValueError(f"{len(rows)} recorded calls: too few to evaluate (need 20 or more)")
    from hardened.learning.model import GateModel

    t0, t1 = rows[0][0], rows[-1][0]
    cut = t0 + (t1 - t0) * split
    train = [r for r in rows if r[0] < cut]
    test = [r for r in rows if r[0] >= cut]
    label = ROW_COLUMNS.index("had_error")
    keys = [_floats(r[1 : 1 + _N]) for r in train]
    labels = [int(r[label]) for r in train]
    if not keys or not test:
        raise ValueError("the recorded calls span too little time to hold some out")
    learner.use_model(GateModel.fit(keys, labels, per_endpoint=learner.per_endpoint))
    policies = [NoGate(), ConsecutiveBreaker(), SreThrottle(), LearnedGate(learner)]
    scores = [Score(p.name) for p in policies]
    for row in rows:
        ts = float(row[0])
        key = _floats(row[1 : 1 + _N])
        group = (key[0], key[1], key[2])
        call = (*group, key[3], key[4], key[5], key[6])
        failed = bool(row[label])
        scored = ts >= cut
        for policy, score in zip(policies, scores, strict=True):
            if not scored and isinstance(policy, LearnedGate):
                continue  # the model is fitted on this part: it does not decide on it
            sent = policy.admit(group, key, call, ts)
            if sent:
                policy.observe(group, key, call, ts, failed)
            if scored:
                score.add(sent, failed)
    span = max(1e-9, t1 - cut)
    for score in scores:
        score.seconds = span
    info = {"train_rows": len(train), "test_rows": len(test), "train_failures": sum(labels)}
    return [s.as_dict() for s in scores], info


def _floats(key: Sequence[Any]) -> tuple[Any, ...]:
    n_cat = 6
    return (*key[:n_cat], *(None if v is None else float(v) for v in key[n_cat:]))


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    head = "| policy | failing calls avoided | good calls skipped | calls sent | calls saved | goodput (/s) |"
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(
            f"| {r['policy']} | {_pct(r['failing_avoided_share'])} | {_pct(r['good_skipped_share'])} "
            f"| {r['calls_sent']} | {r['calls_saved']} | {r['goodput_per_s']} |"
        )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"
