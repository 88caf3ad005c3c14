"""OHLCV checks and repair, vectorised with NumPy: one conversion, then whole-array tests.

The clean path converts the candles once (``np.fromiter`` over the flattened rows) and runs each
test as a single reduction; masks, indices and messages are only built for a test that fails.
Outliers use the median absolute deviation (MAD) of close-to-close log returns, which a few bad
ticks cannot inflate the way they inflate a standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from hardened.quality.memory import SeenSpan
from hardened.quality.report import MAX_WHERE, Issue, Severity
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds, Timeframe, parse_timeframe

__all__ = ["candle_span", "repair_ohlcv", "validate_ohlcv"]

_SIX = frozenset((6,))
_NAN = float("nan")
_MINUTE = 60_000
_HOUR = 3_600_000
_MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal distribution
_ERROR = Severity.ERROR
_WARNING = Severity.WARNING
_INFO = Severity.INFO
_EMPTY = Issue("empty", Severity.WARNING, "no candles in the answer", 0, (), 1.0)
_NOT_A_LIST = Issue("malformed", Severity.CRITICAL, "the answer is not a list of candles", 1, (), 1.0)


_NONE_LIVE = Issue(
    "empty",
    Severity.ERROR,
    "no candles in a window that reaches now, from an exchange that sends every interval",
    0,
    (),
    1.0,
    True,
)
_DEFAULT_LIMIT = 100  # candles an exchange returns when no limit is asked: at least this many


def _reaches_now(tf: Timeframe, now_ms: int, since: int | None, limit: int | None) -> bool:
    """Whether the request's window ends now: no ``since``, or ``since`` plus ``limit`` candles
    (the exchange's default, at least 100 on every exchange we know, when none was asked) is
    past ``now_ms``. Historical windows are old on purpose."""
    if since is None:
        return True
    return since + (limit if limit is not None else _DEFAULT_LIMIT) * tf.ms > now_ms


def _live(timeframe: str | None, now_ms: int | None, since: int | None, limit: int | None) -> bool:
    """``_reaches_now`` for the raw arguments: False without a timeframe or a clock."""
    if timeframe is None or now_ms is None:
        return False
    return _reaches_now(parse_timeframe(timeframe), now_ms, since, limit)


def _where(idx: np.ndarray | Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in idx[:MAX_WHERE])


def _to_array(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Candles as an (n, 6) float array, the original index of each array row (None: identity),
    and the original indices of rows that are not six numbers with a timestamp."""
    n = len(rows)
    try:
        if set(map(len, rows)) == _SIX:
            arr = np.fromiter(chain.from_iterable(rows), np.float64, 6 * n).reshape(n, 6)
            if np.isfinite(arr[:, 0]).all():
                return arr, None, []
    except (TypeError, ValueError):
        pass  # a None, a string or a ragged row: take the row-by-row path below
    good: list[list[float]] = []
    orig: list[int] = []
    bad: list[int] = []
    for i, row in enumerate(rows):
        try:
            if isinstance(row, (str, bytes, dict)) or len(row) < 6:
                raise ValueError(row)
            values = [_NAN if x is None else float(x) for x in row[:6]]
        except (TypeError, ValueError):
            bad.append(i)
            continue
        if not math.isfinite(values[0]):  # no timestamp: nothing to place the candle on
            bad.append(i)
            continue
        good.append(values)
        orig.append(i)
    arr = np.array(good, dtype=np.float64).reshape(len(good), 6)
    return arr, np.array(orig, dtype=np.intp), bad


def _month_index(ts: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each millisecond timestamp."""
    return ts.astype(np.int64).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def _misaligned(ts: np.ndarray, tf: Timeframe) -> np.ndarray | None:
    """Mask of candles off the timeframe's grid, or None when all are on it.

    Timeframes dividing an hour must sit on multiples of the timeframe since the epoch. Longer ones
    (4h, 1d, 1w, 1M) may be shifted by a whole number of minutes (weeks start on Monday, some
    exchanges cut days at their local midnight): they must all share that shift.
    """
    if tf.months:
        month_start = _month_index(ts).astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
        phase = ts - month_start
    else:
        phase = ts % tf.ms
        if tf.ms <= _HOUR and _HOUR % tf.ms == 0:
            return phase != 0 if phase.any() else None
    first = phase[0]
    if (phase == first).all() and first % _MINUTE == 0:
        return None
    values, counts = np.unique(phase, return_counts=True)
    ref = values[int(np.argmax(counts))]
    if ref % _MINUTE:
        return np.ones(len(ts), dtype=bool)
    return phase != ref


def _steps(u: np.ndarray, d: np.ndarray, tf: Timeframe) -> np.ndarray | None:
    """Intervals between consecutive distinct candles, in timeframes; None when all are exactly 1."""
    if tf.months:
        steps = np.diff(_month_index(u)) / tf.months
        if (steps == 1).all():
            return None
        return np.rint(steps)
    if (d == tf.ms).all():
        return None
    return np.rint(d / tf.ms)


def _median(x: np.ndarray) -> float:
    """Median by partition: several times faster than ``np.median`` on a thousand values."""
    k = len(x) // 2
    if len(x) % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float(part[k - 1] + part[k]) / 2


def _outlier_candles(c: np.ndarray, th: QualityThresholds) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of candles whose close is an outlier, and of those that are isolated spikes.

    A return is an outlier when ``|r - median| > threshold * max(1.4826 * MAD, min_scale)``. Two
    consecutive outlier returns of opposite sign around candle k make k an isolated spike (a bad
    tick that the next candle undoes); any other outlier return flags the candle it ends on.
    """
    if len(c) - 1 < th.outlier_min_returns:
        return None
    r = np.diff(np.log(c))
    med = _median(r)
    dev = r - med
    adev = np.abs(dev)
    scale = max(_MAD_TO_SIGMA * _median(adev), th.outlier_min_scale)
    limit = th.outlier_threshold * scale
    if not adev.max() > limit:
        return None
    out = adev > limit
    sign = np.sign(dev)
    spikes = np.flatnonzero(out[:-1] & out[1:] & (sign[:-1] != sign[1:])) + 1
    explained = np.zeros(len(r), dtype=bool)
    explained[spikes - 1] = True
    explained[spikes] = True
    lone = np.flatnonzero(out & ~explained) + 1
    return np.union1d(spikes, lone), spikes


def validate_ohlcv(
    rows: Any,
    *,
    timeframe: str | None = None,
    now_ms: int | None = None,
    since: int | None = None,
    limit: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    seen: SeenSpan | None = None,
    marks: list[SeenSpan] | None = None,
) -> list[Issue]:
    """Check a ccxt OHLCV answer (``[[ts, o, h, l, c, v], ...]``); an empty list means clean.

    ``timeframe`` enables the alignment, gap and staleness checks; ``now_ms`` the staleness and
    future checks. Staleness is skipped for historical requests: when ``since`` is given and
    ``since + limit * timeframe`` does not reach ``now_ms`` (an unknown ``limit`` counts as 100).
    With ``thresholds.continuous_candles`` (an exchange that sends every interval) a gap, a stale
    last candle or no candle at all in a window that reaches now is impossible; without it (an
    exchange that skips quiet intervals) an old last candle is a quiet market: staleness there
    only informs. ``seen`` (what an
    earlier answer to the same "latest candles" request showed) makes an answer whose newest
    candle is older, or that lacks candles it showed within this one's span, impossible; ``marks``
    receives this answer's ``SeenSpan`` for the caller's memory.
    """
    if not isinstance(rows, (list, tuple, np.ndarray)):
        return [_NOT_A_LIST]
    n = len(rows)
    th = thresholds
    if not n:
        if th.continuous_candles and _live(timeframe, now_ms, since, limit):
            return [_NONE_LIVE]
        return [_EMPTY]
    arr, orig, malformed = _to_array(rows)
    issues: list[Issue] = []

    def add(
        code: str,
        severity: Severity,
        message: str,
        mask_or_idx: np.ndarray,
        extent: float = -1,
        impossible: bool = False,
    ) -> None:
        idx = np.flatnonzero(mask_or_idx) if mask_or_idx.dtype == bool else mask_or_idx
        if orig is not None:
            idx = orig[idx]
        k = len(idx)
        issues.append(
            Issue(code, severity, message, k, _where(idx), k / n if extent < 0 else extent, impossible)
        )

    if malformed:
        k = len(malformed)
        issues.append(
            Issue(
                "malformed",
                _ERROR,
                f"{k} of {n} rows are not [ts, o, h, l, c, v] numbers (or have no timestamp)",
                k,
                _where(malformed),
                k / n,
                True,
            )
        )
    m = len(arr)
    if not m:
        return issues
    tf = parse_timeframe(timeframe) if timeframe else None
    ts, o, h, low, c, v = arr.T

    # Prices and candle shape. A zero, negative, missing or infinite price (a candle's prices are
    # trade prices: none is ever 0) and a candle whose open or close lies outside [low, high] are
    # impossible.
    price_ok: np.ndarray | None = None  # None: every price is positive
    prices = arr[:, 1:5]
    positive = prices > 0
    if not positive.all():
        price_ok = positive.all(axis=1)
        add(
            "nonpositive_price",
            _ERROR,
            "candles with a zero, negative or missing price",
            ~price_ok,
            impossible=True,
        )
    if np.isinf(arr[:, 1:]).any():
        add(
            "non_finite",
            _ERROR,
            "candles with an infinite price or volume",
            np.isinf(arr[:, 1:]).any(axis=1),
            impossible=True,
        )
    shape_ok = (h >= np.maximum(o, c)) & (low <= np.minimum(o, c))
    if not shape_ok.all():
        bad = ~shape_ok if price_ok is None else ~shape_ok & price_ok
        if bad.any():
            add(
                "ohlc_inconsistent",
                _ERROR,
                "candles with high < max(open, close) or low > min(open, close)",
                bad,
                impossible=True,
            )
    if not (v >= 0).all():
        neg = v < 0
        if neg.any():
            add("negative_volume", _ERROR, "candles with a negative volume", neg, impossible=True)
        missing = np.isnan(v)
        if missing.any():
            add("missing_volume", _WARNING, "candles without a volume", missing)

    # Order, duplicates, alignment, gaps.
    d = np.diff(ts)
    ordered = bool((d > 0).all())
    first_idx: np.ndarray | None = None
    if ordered:
        u = ts
    else:
        back = d < 0
        if back.any():
            add("out_of_order", _ERROR, "candles older than the one before them", np.flatnonzero(back) + 1)
        u, first_idx = np.unique(ts, return_index=True)
        if len(u) < m:
            dup = np.ones(m, dtype=bool)
            dup[first_idx] = False
            add("duplicate_timestamp", _ERROR, "candles repeating an earlier open time", dup, impossible=True)
        d = np.diff(u)
    if u[0] < th.min_timestamp_ms:
        add("absurd_timestamp", _ERROR, "candles dated before 2009", ts < th.min_timestamp_ms)
    if tf is not None:
        off = _misaligned(ts, tf)
        if off is not None:
            add("misaligned_timestamp", _ERROR, f"candles not on the {tf.name} grid", off)
        steps = _steps(u, d, tf) if len(u) > 1 else None
        if steps is not None:
            holes = steps > 1
            missing_count = int((steps[holes] - 1).sum())
            if missing_count:
                after = np.flatnonzero(holes) + 1
                where = after if first_idx is None else first_idx[after]
                if orig is not None:
                    where = orig[where]
                # An exchange that sends every interval has no hole in live data.
                live_hole = th.continuous_candles and _live(timeframe, now_ms, since, limit)
                issues.append(
                    Issue(
                        "gap",
                        _ERROR if live_hole else _WARNING,
                        f"{missing_count} {tf.name} candles missing in {len(after)} gaps",
                        missing_count,
                        _where(where),
                        missing_count / (len(u) + missing_count),
                        live_hole,
                    )
                )

    # Time relative to now.
    if now_ms is not None:
        if u[-1] > now_ms + th.future_tolerance_ms:
            add(
                "future_timestamp",
                _ERROR,
                "candles opening in the future",
                ts > now_ms + th.future_tolerance_ms,
            )
        elif tf is not None and _reaches_now(tf, now_ms, since, limit):
            age = now_ms - float(u[-1])
            if age > th.stale_intervals * tf.ms + th.stale_tolerance_ms:
                behind = max(1, int(age // tf.ms) - 1)
                # Where the exchange skips intervals without trades (KuCoin, Bitvavo, any exchange
                # without a profile), an old last candle is what a quiet market looks like: it can
                # only inform, or ``fetch_ohlcv(symbol, "1m", limit=1)`` on an illiquid market is
                # refused. A stale answer there is caught by what earlier answers showed (``seen``).
                issues.append(
                    Issue(
                        "stale",
                        _ERROR if th.continuous_candles else _INFO,
                        f"last candle opened {age / 1000:.0f}s ago: {behind} {tf.name} candles missing",
                        behind,
                        (m - 1 if orig is None else int(orig[-1]),) if ordered else (),
                        behind / (len(u) + behind),
                        th.continuous_candles,  # the exchange always has the current candle
                    )
                )

    # What an earlier answer to the same request showed: candles do not go back or disappear.
    if seen is not None:
        issue = seen.compare(u, "candles")
        if issue is not None:
            issues.append(issue)
    if marks is not None:
        marks.append(SeenSpan(float(u[0]), float(u[-1]), np.array(u)))

    # Outliers, on the valid candles in time order, one per open time.
    if ordered and price_ok is None:
        cidx: np.ndarray | None = None
        closes = c
    else:
        sel = np.arange(m) if price_ok is None else np.flatnonzero(price_ok)
        order = sel[np.argsort(ts[sel], kind="stable")]
        tso = ts[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = tso[1:] != tso[:-1]
        cidx = order[first]
        closes = c[cidx]
    found = _outlier_candles(closes, th)
    if found is not None:
        flagged = found[0] if cidx is None else cidx[found[0]]
        add(
            "outlier",
            _WARNING,
            f"closes beyond {th.outlier_threshold:g} robust deviations (MAD of log returns)",
            flagged,
        )
    return issues


def candle_span(rows: Any) -> SeenSpan | None:
    """The ``SeenSpan`` of a candle list (for an answer whose times were not read by the check)."""
    if not isinstance(rows, (list, tuple)) or not rows:
        return None
    try:
        ts = np.array([row[0] for row in rows], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return SeenSpan.of_times(np.unique(ts[~np.isnan(ts)]), ordered=True)


def repair_ohlcv(
    rows: Any,
    *,
    timeframe: str | None = None,
    now_ms: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> tuple[list[list[Any]], tuple[str, ...]]:
    """A new, repaired candle list and what was done to it; ``rows`` is never modified.

    Drops malformed candles, non-positive or infinite numbers, inconsistent OHLC, negative volumes, absurd,
    future and off-grid timestamps; sorts by open time; keeps the last of duplicated open times;
    drops isolated spikes. Gaps and staleness cannot be repaired (inventing candles would be worse).
    Each kept row is a copy of the original row.
    """
    if not isinstance(rows, (list, tuple, np.ndarray)):
        return [], ("dropped an answer that is not a list of candles",)
    n = len(rows)
    if not n:
        return [], ()
    th = thresholds
    arr, orig, malformed = _to_array(rows)
    reasons: dict[str, int] = {}
    if malformed:
        reasons["malformed"] = len(malformed)
    m = len(arr)
    keep = np.ones(m, dtype=bool)

    def drop(mask: np.ndarray, code: str) -> None:
        k = int((mask & keep).sum())
        if k:
            reasons[code] = reasons.get(code, 0) + k
            keep[mask] = False

    resorted = False
    order = np.arange(0)
    if m:
        ts, o, h, low, c, v = arr.T
        drop(~(arr[:, 1:5] > 0).all(axis=1), "nonpositive_price")
        drop(np.isinf(arr[:, 1:]).any(axis=1), "non_finite")
        drop(~((h >= np.maximum(o, c)) & (low <= np.minimum(o, c))), "ohlc_inconsistent")
        drop(v < 0, "negative_volume")
        drop(ts < th.min_timestamp_ms, "absurd_timestamp")
        if now_ms is not None:
            drop(ts > now_ms + th.future_tolerance_ms, "future_timestamp")
        sub = np.flatnonzero(keep)
        if timeframe and len(sub):
            off = _misaligned(ts[sub], parse_timeframe(timeframe))
            if off is not None:
                mask = np.zeros(m, dtype=bool)
                mask[sub[off]] = True
                drop(mask, "misaligned_timestamp")
                sub = np.flatnonzero(keep)
        resorted = bool((np.diff(ts[sub]) < 0).any())
        order = sub[np.argsort(ts[sub], kind="stable")]
        tso = ts[order]
        last_of_time = np.ones(len(order), dtype=bool)
        last_of_time[:-1] = tso[:-1] != tso[1:]
        if not last_of_time.all():
            reasons["duplicate_timestamp"] = int((~last_of_time).sum())
            order = order[last_of_time]
        found = _outlier_candles(c[order], th)
        if found is not None and len(found[1]):
            reasons["outlier"] = len(found[1])
            order = np.delete(order, found[1])
    src = order if orig is None else orig[order]
    repaired = [list(rows[i]) for i in src.tolist()]
    done: list[str] = []
    dropped = n - len(repaired)
    if dropped:
        detail = ", ".join(f"{code} {k}" for code, k in reasons.items())
        done.append(f"dropped {dropped} of {n} candles ({detail})")
    if resorted:
        done.append("sorted candles by open time")
    return repaired, tuple(done)
