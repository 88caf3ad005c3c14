"""What the gate knows about a call before it is sent, in buckets small enough to cache.

A call is described by the call itself (component, exchange, endpoint, symbol, timeframe, a
``variant`` string for the other arguments, the ``limit`` asked for) and by what the process saw
just before it (hour of day, rate-limit headroom, breaker state, its own pace, recent error share
of the endpoint and of this very call, recent latency, time since this call last failed). Every
number is quantised into a bucket here, once, so that training, recording and prediction see the
same values and the gate can cache one probability per bucket instead of asking scikit-learn on
every request.

Missing values are ``None`` in keys (hashable, equal to itself) and NaN in the model's arrays
(``HistGradientBoostingClassifier`` treats NaN as missing natively).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hardened.telemetry.redact import is_secret_key, redact_text

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "KNOWN_KEYS",
    "NO_ROOM",
    "NUMERIC",
    "ROW_COLUMNS",
    "SCHEMA_VERSION",
    "Decayed",
    "bucket_limit",
    "bucket_log2",
    "bucket_room",
    "bucket_share",
    "encode",
    "generic_parts",
]

# Bump when a feature's meaning or bucketing changes: a saved model of another version is refused.
SCHEMA_VERSION = 2  # 2: "room" (the call's own pool left once its weight is counted) for "headroom"

CATEGORICAL = ("component", "exchange", "endpoint", "symbol", "timeframe", "variant")
NUMERIC = (
    "limit_n",  # bit length of the limit asked for (500 -> 9, 1000 -> 10)
    "hour",  # UTC hour of day of the call
    "room",  # share of the call's own rate-limit pool left once its weight is counted (bucket_room)
    "breaker",  # 0 closed, 1 half-open, 2 open
    "pace",  # own calls per second to this exchange as of its last outcome, log2 buckets
    "err_ep",  # recent failure share of the endpoint, 0.1 steps
    "err_call",  # recent failure share of this very call (symbol, size, ...), 0.1 steps
    "lat_ep",  # recent latency of the endpoint, log2 of milliseconds
    "since_fail",  # log2 of seconds since this call last failed (None: never)
    "streak_ep",  # failures in a row of the endpoint, log2 buckets (what a breaker counts)
    "streak_call",  # failures in a row of this very call, log2 buckets
    "x0",  # up to four numbers from a bot component's own context, by sorted key
    "x1",
    "x2",
    "x3",
)
FEATURES = CATEGORICAL + NUMERIC
# Outcome columns recorded after the call.
OUTCOME = ("had_error", "error", "error_kind", "attempts", "latency", "probe", "details")
ROW_COLUMNS = ("ts", *FEATURES, *OUTCOME)
KNOWN_KEYS = frozenset(
    {"exchange", "endpoint", "symbol", "timeframe", "limit", "headroom", "room", "breaker"}
)
BREAKER_CODES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def bucket_share(x: float | None) -> float | None:
    """A share in [0, 1] rounded to tenths (integer arithmetic: this runs on every call)."""
    if x is None:
        return None
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return _TENTHS[int(x * 10.0 + 0.5)]


_TENTHS = tuple(i / 10 for i in range(11))
NO_ROOM = -0.5  # the room bucket of a call whose weight does not fit (-1 reads "unknown")


def bucket_room(x: float | None) -> float | None:
    """The share of the call's own rate-limit pool left once its weight is counted, in tenths
    rounded down (0.0: it fits, with less than a tenth to spare), ``NO_ROOM`` when it does not
    fit (the exchange will refuse it). Whether a request is refused depends on its weight
    against what is left, which a share of the budget alone cannot say: with four units left a
    ticker (2) goes and a large order book (50) is refused. The sign is what matters, and each
    side of it has plenty of examples in tenths (finer steps near zero left the model too few
    calls that fitted with a few units to spare, and it lumped them with the refused ones)."""
    if x is None:
        return None
    if x < 0.0:
        return NO_ROOM
    return 1.0 if x >= 1.0 else _TENTHS[int(x * 10.0)]


_LOG2 = tuple(float(i) for i in range(64))


def bucket_log2(x: float | None, cap: int = 12) -> float | None:
    """log2(1 + x) rounded down, capped: 0, 1, 2-3, 4-7, ... -> 0, 1, 2, 3, ...
    (``int.bit_length`` rather than ``math.log2``: exact, and cheaper on the hot path)."""
    if x is None:
        return None
    if x <= 0.0:
        return 0.0
    return _LOG2[min(cap, int(1.0 + x).bit_length() - 1)]


def bucket_limit(limit: Any) -> float | None:
    """The bit length of an integer ``limit`` (its order of size), None when absent or not a number."""
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        return None
    if isinstance(limit, float) and not math.isfinite(limit):  # int(inf) raised OverflowError
        return None
    return float(int(limit).bit_length())


class Decayed:
    """Calls and failures with exponential forgetting (time constant ``tau`` seconds).

    The failure share ``fails / calls`` is unchanged by the decay itself, so a quiet spell after
    a run of failures keeps the share until new outcomes arrive: the gate needs probes to see a
    recovery, as the SRE book says."""

    __slots__ = ("calls", "fails", "last", "last_fail", "streak")

    def __init__(self) -> None:
        self.calls = 0.0
        self.fails = 0.0
        self.last = 0.0
        self.last_fail: float | None = None
        self.streak = 0  # failures in a row

    def add(self, now: float, failed: bool, tau: float) -> None:
        """Count one outcome at ``now``."""
        if self.calls:
            decay = math.exp(-(now - self.last) / tau) if now > self.last else 1.0
            self.calls = self.calls * decay + 1.0
            self.fails = self.fails * decay + (1.0 if failed else 0.0)
        else:
            self.calls = 1.0
            self.fails = 1.0 if failed else 0.0
        self.last = now
        if failed:
            self.last_fail = now
            self.streak += 1
        else:
            self.streak = 0

    def share(self) -> float | None:
        """Recent failure share, None before the first outcome."""
        return self.fails / self.calls if self.calls else None

    def rate(self, now: float, tau: float) -> float:
        """Recent outcomes per second."""
        if not self.calls:
            return 0.0
        decay = math.exp(-(now - self.last) / tau) if now > self.last else 1.0
        return self.calls * decay / tau


def generic_parts(context: Mapping[str, Any]) -> tuple[str | None, tuple[float | None, ...]]:
    """A bot component's own context beyond the known keys: string values joined into the
    ``variant`` category (sorted ``k=v``), the first four numbers (by sorted key) as x0..x3.
    Keys named like a credential (``api_key``, ``passphrase``) are left out, and secret-looking
    text is masked: the variant is stored and shown in reports."""
    words: list[str] = []
    numbers: list[float | None] = []
    # sorted by the key's text: keys of mixed types (an int among strings) raised TypeError here
    for key in sorted(context, key=str):
        if key in KNOWN_KEYS or is_secret_key(str(key)):
            continue
        value = context[key]
        if isinstance(value, bool):
            numbers.append(1.0 if value else 0.0)
        elif isinstance(value, int | float):
            numbers.append(_finite(value))
        elif isinstance(value, str):
            words.append(f"{key}={redact_text(value)[:40]}")
    numbers = [*numbers, None, None, None, None][:4]
    variant = "|".join(words)[:200] if words else None
    return variant, tuple(numbers)


def _finite(value: int | float) -> float | None:
    """A context number rounded for a feature; None when it has no finite float value (an int
    past 1e308 raised OverflowError from ``float``)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return round(number, 2) if math.isfinite(number) else None


_ABSENT_CODE = 250  # the code of an absent category (no symbol, no timeframe): beside the 250 kept


def encode(keys: list[tuple[Any, ...]], vocab: Mapping[str, Mapping[str, int]]) -> np.ndarray:
    """Feature keys (tuples in ``FEATURES`` order) as a float matrix: categories by ``vocab``
    (absent -> its own code, unknown -> NaN, which the model treats as missing), numbers as they
    are (absent -> -1)."""
    n_cat = len(CATEGORICAL)
    out = np.full((len(keys), len(FEATURES)), np.nan, dtype=np.float64)
    maps = [vocab.get(name, {}) for name in CATEGORICAL]
    for i, key in enumerate(keys):
        row = out[i]
        for j in range(n_cat):
            value = key[j]
            code = maps[j].get(value) if value is not None else _ABSENT_CODE
            if code is not None:
                row[j] = code
        for j in range(n_cat, len(FEATURES)):
            value = key[j]
            # absent numbers read -1 (every feature is >= 0): a column all NaN in one
            # cross-validation fold trips scikit-learn's binning, a constant does not
            row[j] = -1.0 if value is None else value
    return out


def build_vocab(keys: list[tuple[Any, ...]], max_categories: int = 250) -> dict[str, dict[str, int]]:
    """Category -> code for each categorical feature, the most frequent ``max_categories`` kept
    (HistGradientBoosting takes at most 255 bins per feature; the rest read as missing)."""
    vocab: dict[str, dict[str, int]] = {}
    for j, name in enumerate(CATEGORICAL):
        counts: dict[str, int] = {}
        for key in keys:
            value = key[j]
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        top = sorted(counts, key=lambda v: (-counts[v], v))[:max_categories]
        vocab[name] = {value: code for code, value in enumerate(sorted(top))}
    return vocab
