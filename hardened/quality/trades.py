"""Trade list checks and repair: positive price and amount, sane timestamps, known side, unique ids.

Columns are pulled out with one ``itemgetter`` pass each and tested with NumPy reductions; the
per-trade detail is computed only for a test that fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from itertools import pairwise
from operator import itemgetter
from typing import Any

import numpy as np

from hardened.quality.memory import SeenSpan
from hardened.quality.report import MAX_WHERE, Issue, Severity
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds

__all__ = ["VALID_SIDES", "repair_trades", "trade_span", "validate_trades"]

VALID_SIDES = frozenset(("buy", "sell", None))
_KEYS = ("price", "amount", "timestamp", "side", "id")
_GETTERS = tuple(itemgetter(key) for key in _KEYS)
_TIMESTAMP = _GETTERS[2]
_ERROR = Severity.ERROR
_WARNING = Severity.WARNING
_NOT_A_LIST = Issue("malformed", Severity.CRITICAL, "the answer is not a list of trades", 1, (), 1.0)
_INF = float("inf")


def _where(idx: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in idx[:MAX_WHERE])


def _valid_side(side: Any) -> bool:
    try:
        return side in VALID_SIDES
    except TypeError:
        return False


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _floats(values: Sequence[Any]) -> np.ndarray | None:
    """Values as float64 (None -> NaN), or None when one is not a number."""
    try:
        out = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.ndim == 1 else None


def _columns(trades: list[Any]) -> tuple[list[int], list[tuple[Any, ...] | list[Any]]]:
    """Positions of trades that are not dicts with the unified keys, and the columns of the others."""
    with contextlib.suppress(TypeError, KeyError, IndexError):  # the fast path: all well-formed
        return [], [list(map(get, trades)) for get in _GETTERS]
    bad: list[int] = []
    rows: list[tuple[Any, ...]] = []
    for i, trade in enumerate(trades):
        if not isinstance(trade, dict):
            bad.append(i)
            continue
        rows.append(tuple(trade.get(key) for key in _KEYS))
    return bad, list(zip(*rows, strict=True))


def validate_trades(
    trades: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    seen: SeenSpan | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    marks: list[SeenSpan] | None = None,
) -> list[Issue]:
    """Check a unified ccxt trade list; an empty list means clean (an empty answer is clean too).

    Positive price and amount; a timestamp that exists, is after 2009 and not beyond ``now_ms`` plus
    the clock tolerance; timestamps non-decreasing; side in buy/sell/None; no repeated trade id,
    nor (for trades without an id) the exchange's raw record twice; and, given ``seen`` (what an
    earlier answer to the same "latest trades" request showed), a newest trade not older than
    its newest and every trade it showed within this answer's time span still there: trades that
    happened do not un-happen. ``marks``, when given, receives this answer's ``SeenSpan`` (from
    the timestamps already read, for the caller's memory).
    """
    if not isinstance(trades, (list, tuple)):
        return [_NOT_A_LIST]
    n = len(trades)
    if not n:
        return []
    th = thresholds
    issues: list[Issue] = []
    malformed, columns = _columns(list(trades) if isinstance(trades, tuple) else trades)
    if malformed:
        k = len(malformed)
        issues.append(
            Issue(
                "malformed",
                _ERROR,
                "entries that are not trade dicts",
                k,
                tuple(malformed[:MAX_WHERE]),
                k / n,
                True,
            )
        )
    if not columns:
        return issues
    keep = None if not malformed else np.setdiff1d(np.arange(n), malformed)

    def add(code: str, severity: Severity, message: str, mask: np.ndarray, impossible: bool = False) -> None:
        idx = np.flatnonzero(mask)
        if keep is not None:
            idx = keep[idx]
        k = len(idx)
        issues.append(Issue(code, severity, message, k, _where(idx), k / n, impossible))

    prices, amounts, stamps, sides, ids = columns
    for name, values in (("price", prices), ("amount", amounts)):
        arr = _floats(values)
        if arr is None:
            bad = np.array(
                [
                    not (isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < np.inf)
                    for x in values
                ]
            )
            impossible = True  # not numbers at all
        elif ((arr > 0) & (arr < np.inf)).all():
            continue
        else:
            bad = ~((arr > 0) & (arr < np.inf))
            # No trade happens at a price of 0; a zero amount is only a defect (dust rounded away).
            impossible = name == "price" or bool((~(arr[bad] >= 0) | np.isinf(arr[bad])).any())
        add(
            f"nonpositive_{name}",
            _ERROR,
            f"trades with a zero, negative, infinite or missing {name}",
            bad,
            impossible,
        )
    ts = _floats(stamps)
    if ts is None:
        ts = np.array(
            [float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else np.nan for x in stamps]
        )
    missing = np.isnan(ts)
    in_order = True
    if missing.any():
        add("missing_timestamp", _WARNING, "trades without a timestamp", missing, impossible=True)
    if ts.size and not missing.all():
        low = np.nanmin(ts)
        if low < th.min_timestamp_ms:
            add("absurd_timestamp", _ERROR, "trades dated before 2009", ts < th.min_timestamp_ms)
        if now_ms is not None and np.nanmax(ts) > now_ms + th.future_tolerance_ms:
            add(
                "future_timestamp", _ERROR, "trades dated in the future", ts > now_ms + th.future_tolerance_ms
            )
        present = ts[~missing] if missing.any() else ts
        in_order = bool((np.diff(present) >= 0).all())
        if not in_order:
            back = np.zeros(len(ts), dtype=bool)
            pos = np.flatnonzero(~missing)
            back[pos[1:][np.diff(present) < 0]] = True
            add("out_of_order", _WARNING, "trades older than the one before them", back)
    try:
        sides_ok = VALID_SIDES.issuperset(sides)
    except TypeError:  # an unhashable side
        sides_ok = False
    if not sides_ok:
        add(
            "invalid_side",
            _ERROR,
            "trades whose side is not buy, sell or None",
            np.array([not _valid_side(s) for s in sides], dtype=bool),
        )
    try:
        distinct = set(ids)
    except TypeError:  # an unhashable id
        distinct = {_hashable(i) for i in ids}
    if len(distinct) - (None in distinct) < len(ids) - ids.count(None):
        known: set[Any] = set()
        dup = np.zeros(len(ids), dtype=bool)
        for i, trade_id in enumerate(ids):
            if trade_id is not None:
                key = _hashable(trade_id)
                if key in known:
                    dup[i] = True
                known.add(key)
        add("duplicate_id", _WARNING, "trades repeating an earlier trade id", dup, impossible=True)
    if None in distinct and not malformed:
        _raw_repeats(trades, ids, ts, add)
    if (seen is not None or marks is not None) and not malformed and ts.size and not missing.any():
        ordered = ts if in_order else np.sort(ts)  # ccxt sorts trades: no copy on the usual path
        if seen is not None:
            issue = seen.compare(ordered, "trades")
            if issue is not None:
                issues.append(issue)
        if marks is not None:
            marks.append(SeenSpan(float(ordered[0]), float(ordered[-1]), ordered))
    if symbol is not None:
        first = trades[0]
        got = first.get("symbol") if isinstance(first, dict) else None
        if isinstance(got, str) and got.split(":", 1)[0] != symbol.split(":", 1)[0]:
            issues.append(Issue("symbol_mismatch", _WARNING, f"asked for {symbol}, got {got}", 1, (), 1.0))
    return issues


def trade_span(trades: Any) -> SeenSpan | None:
    """The ``SeenSpan`` of a trade list (for an answer whose times were not read by the check)."""
    if not isinstance(trades, list) or not trades:
        return None
    try:
        ts = np.fromiter(map(_TIMESTAMP, trades), np.float64, len(trades))
    except (TypeError, ValueError, KeyError):
        return None
    return SeenSpan.of_times(ts)


def _raw_repeats(trades: Any, ids: list[Any], ts: np.ndarray, add: Any) -> None:
    """Trades without an id (KuCoin's public trades carry only a sequence in ``info``) sent
    twice: the same raw record at the same time, next to each other once sorted by time."""
    same = np.flatnonzero(np.diff(ts) == 0) + 1
    if not len(same):
        return
    dup = np.zeros(len(ts), dtype=bool)
    for i in same.tolist():
        a, b = trades[i - 1], trades[i]
        if ids[i] is None and isinstance(a, dict) and isinstance(b, dict):
            info = b.get("info")
            if info and info == a.get("info"):
                dup[i] = True
    if dup.any():
        add("duplicate_id", _WARNING, "trades repeating an earlier trade (the same raw record)", dup, True)


def repair_trades(
    trades: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> tuple[Any, tuple[str, ...]]:
    """A new trade list and what was done; ``trades`` and its dicts are never modified.

    Drops entries that are not trades, trades with a non-positive, infinite or missing price or
    amount, an unknown side, no timestamp, an absurd or future one, and repeats of an earlier trade
    id; then sorts by timestamp (stable). Kept trade dicts are shared.
    """
    if not isinstance(trades, (list, tuple)):
        return trades, ()
    th = thresholds
    kept: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    seen: set[Any] = set()

    def positive(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < _INF

    for trade in trades:
        if not isinstance(trade, dict):
            code = "malformed"
        elif not positive(trade.get("price")):
            code = "nonpositive_price"
        elif not positive(trade.get("amount")):
            code = "nonpositive_amount"
        elif not _valid_side(trade.get("side")):
            code = "invalid_side"
        else:
            ts = trade.get("timestamp")
            trade_id = _hashable(trade.get("id"))
            if not isinstance(ts, (int, float)) or ts != ts:
                code = "missing_timestamp"
            elif ts < th.min_timestamp_ms:
                code = "absurd_timestamp"
            elif now_ms is not None and ts > now_ms + th.future_tolerance_ms:
                code = "future_timestamp"
            elif trade_id is not None and trade_id in seen:
                code = "duplicate_id"
            else:
                if trade_id is not None:
                    seen.add(trade_id)
                kept.append(trade)
                continue
        reasons[code] = reasons.get(code, 0) + 1
    stamps = [t.get("timestamp") for t in kept]
    timed = [s for s in stamps if isinstance(s, (int, float))]
    resorted = any(b < a for a, b in pairwise(timed))
    if resorted:
        inf = float("inf")
        kept.sort(key=lambda t: t["timestamp"] if isinstance(t.get("timestamp"), (int, float)) else inf)
    done: list[str] = []
    if reasons:
        detail = ", ".join(f"{code} {k}" for code, k in reasons.items())
        done.append(f"dropped {len(trades) - len(kept)} of {len(trades)} trades ({detail})")
    if resorted:
        done.append("sorted trades by timestamp")
    if not done:
        return trades, ()
    return kept, tuple(done)
