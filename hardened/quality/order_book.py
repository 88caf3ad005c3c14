"""Order book checks and repair: sorted sides, an uncrossed top, positive levels, fresh snapshot.

The clean path is a handful of C-level passes over the price and amount columns (``map`` with
``operator`` functions); a level-by-level walk that names every bad level runs only when one of
them fails.
"""

from __future__ import annotations

import numbers
from itertools import repeat
from operator import gt, lt
from typing import Any

from hardened.quality.report import MAX_WHERE, Issue, Severity
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds

__all__ = ["repair_order_book", "validate_order_book"]

_ZEROS = repeat(0.0)  # endless, stateless: safe to share between calls and threads
_INF = float("inf")
_STALE_SPAN = 10
_ERROR = Severity.ERROR
_WARNING = Severity.WARNING
_NOT_A_BOOK = Issue("malformed", Severity.CRITICAL, "the answer is not an order book dict", 1, (), 1.0)
_NO_SIDES = Issue("malformed", Severity.CRITICAL, "bids or asks is not a list of levels", 1, (), 1.0)
_EMPTY = Issue("empty", Severity.ERROR, "both sides of the book are empty (HTML or empty body?)", 0, (), 1.0)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _base_symbol(symbol: str) -> str:
    return symbol.split(":", 1)[0]


class _Side:
    """One side walked level by level: the valid levels and the positions of each kind of defect."""

    __slots__ = ("malformed", "nonpositive_amount", "nonpositive_price", "prices", "unsorted")

    def __init__(self, levels: list[Any], descending: bool) -> None:
        self.malformed: list[int] = []
        self.nonpositive_price: list[int] = []
        self.nonpositive_amount: list[int] = []
        self.unsorted: list[int] = []
        self.prices: list[float] = []
        prev: float | None = None
        for i, level in enumerate(levels):
            try:
                price, amount = level[0], level[1]
            except (TypeError, IndexError, KeyError):
                self.malformed.append(i)
                continue
            if not (_is_number(price) and _is_number(amount)) or price == _INF or amount == _INF:
                self.malformed.append(i)  # not a number, or an infinite one
                continue
            if not price > 0:
                self.nonpositive_price.append(i)
                continue
            if not amount > 0:
                self.nonpositive_amount.append(i)
                continue
            if prev is not None and not (price < prev if descending else price > prev):
                self.unsorted.append(i)
            prev = price
            self.prices.append(price)


def validate_order_book(
    book: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    last_nonce: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[Issue]:
    """Check a unified ccxt order book; an empty list means clean.

    Bids strictly descending, asks strictly ascending, best bid below best ask, positive prices and
    amounts; the timestamp (when present and ``now_ms`` given) not older than ``book_max_age_ms``;
    the nonce (when present) not below ``last_nonce``, the newest one already seen for this book.
    """
    if not isinstance(book, dict):
        return [_NOT_A_BOOK]
    bids, asks = book.get("bids"), book.get("asks")
    if not isinstance(bids, (list, tuple)) or not isinstance(asks, (list, tuple)):
        return [_NO_SIDES]
    issues: list[Issue] = []
    total = len(bids) + len(asks)
    if not total:
        issues.append(_EMPTY)
    else:
        try:
            bp = [level[0] for level in bids]
            ap = [level[0] for level in asks]
            ba = [level[1] for level in bids]
            aa = [level[1] for level in asks]
            clean = (
                all(map(gt, bp, bp[1:]))
                and all(map(lt, ap, ap[1:]))
                and (not bp or (bp[-1] > 0 and bp[0] < _INF))
                and (not ap or (ap[0] > 0 and ap[-1] < _INF))
                and all(map(gt, ba, _ZEROS))
                and all(map(gt, aa, _ZEROS))
                and max(ba, default=0.0) < _INF
                and max(aa, default=0.0) < _INF
                and (not bp or not ap or bp[0] < ap[0])
            )
        except (TypeError, IndexError, KeyError):
            clean = False
        if not clean:
            issues.extend(_level_issues(bids, asks, total))
    th = thresholds
    ts = book.get("timestamp")
    if _is_number(ts):
        if ts < th.min_timestamp_ms:
            issues.append(Issue("absurd_timestamp", _ERROR, f"timestamp {ts} is before 2009", 1, (), 1.0))
        elif now_ms is not None:
            age = now_ms - ts
            span = _STALE_SPAN * th.book_max_age_ms
            if age > th.book_max_age_ms:
                issues.append(
                    Issue("stale", _ERROR, f"book is {age / 1000:.0f}s old", 1, (), min(1.0, age / span))
                )
            elif -age > th.future_tolerance_ms:
                issues.append(
                    Issue(
                        "future_timestamp",
                        _WARNING,
                        f"book is {-age / 1000:.0f}s in the future",
                        1,
                        (),
                        min(1.0, -age / span),
                    )
                )
    if last_nonce is not None:
        nonce = book.get("nonce")
        if _is_number(nonce) and nonce < last_nonce:
            issues.append(  # an older snapshot than one already seen: the book went back in time
                Issue(
                    "nonce_regressed",
                    _WARNING,
                    f"nonce {nonce} is older than {last_nonce} already seen",
                    1,
                    (),
                    1.0,
                    True,
                )
            )
    if symbol is not None:
        got = book.get("symbol")
        if isinstance(got, str) and _base_symbol(got) != _base_symbol(symbol):
            issues.append(Issue("symbol_mismatch", _WARNING, f"asked for {symbol}, got {got}", 1, (), 1.0))
    return issues


def _level_issues(bids: list[Any], asks: list[Any], total: int) -> list[Issue]:
    """Name every bad level; ``where`` holds ``"bids[3]"``-style positions."""
    bid_side, ask_side = _Side(bids, True), _Side(asks, False)
    issues: list[Issue] = []

    def add(
        code: str, message: str, bid_idx: list[int], ask_idx: list[int], impossible: bool = False
    ) -> None:
        k = len(bid_idx) + len(ask_idx)
        if k:
            where = [f"bids[{i}]" for i in bid_idx[:MAX_WHERE]] + [f"asks[{i}]" for i in ask_idx[:MAX_WHERE]]
            issues.append(Issue(code, _ERROR, message, k, tuple(where[:MAX_WHERE]), k / total, impossible))

    def below_zero(column: int, bid_idx: list[int], ask_idx: list[int]) -> bool:
        """Whether a flagged level holds a negative or NaN number (a zero is only a defect)."""
        values = [bids[i][column] for i in bid_idx] + [asks[i][column] for i in ask_idx]
        return any(not x >= 0 for x in values)

    add(
        "malformed",
        "levels that are not [price, amount] finite numbers",
        bid_side.malformed,
        ask_side.malformed,
        True,
    )
    add(  # no order rests at a price of 0: a zero price is as impossible as a negative one
        "nonpositive_price",
        "levels with a zero or negative price",
        bid_side.nonpositive_price,
        ask_side.nonpositive_price,
        True,
    )
    add(
        "nonpositive_amount",
        "levels with a zero or negative amount",
        bid_side.nonpositive_amount,
        ask_side.nonpositive_amount,
        below_zero(1, bid_side.nonpositive_amount, ask_side.nonpositive_amount),
    )
    # A matching engine keeps one level per price, best first (ccxt sorts each side, so what is
    # left unsorted after it is a repeated price): impossible either way.
    add("unsorted_bids", "bid prices not strictly descending", bid_side.unsorted, [], True)
    add("unsorted_asks", "ask prices not strictly ascending", [], ask_side.unsorted, True)
    if bid_side.prices and ask_side.prices:
        best_bid, best_ask = max(bid_side.prices), min(ask_side.prices)
        if best_bid >= best_ask:
            crossing = sum(p >= best_ask for p in bid_side.prices) + sum(
                p <= best_bid for p in ask_side.prices
            )
            issues.append(
                Issue(
                    "crossed",
                    _ERROR,
                    f"best bid {best_bid} at or above best ask {best_ask}",
                    crossing,
                    (),
                    max(0.5, crossing / total),
                    True,
                )
            )
    return issues


def _clean_side(levels: list[Any], descending: bool) -> tuple[list[list[Any]], int, bool]:
    """Valid levels sorted (best first), one per price; how many were dropped; whether it was resorted."""
    valid: list[list[Any]] = []
    for level in levels:
        try:
            price, amount = level[0], level[1]
        except (TypeError, IndexError, KeyError):
            continue
        if _is_number(price) and _is_number(amount) and 0 < price < _INF and 0 < amount < _INF:
            valid.append(list(level))
    ordered = sorted(valid, key=lambda lv: -lv[0] if descending else lv[0])
    resorted = ordered != valid
    unique: list[list[Any]] = []
    for level in ordered:
        if not unique or unique[-1][0] != level[0]:
            unique.append(level)
    return unique, len(levels) - len(unique), resorted


def repair_order_book(
    book: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> tuple[Any, tuple[str, ...]]:
    """A repaired copy of ``book`` and what was done; ``book`` itself is never modified.

    Drops malformed and non-positive levels, sorts each side best first, keeps the first level of
    each price, then uncrosses the top: while the best bid is at or above the best ask it drops the
    top of the side with fewer crossing levels (a lone bad level, not the healthy side, goes).
    Staleness and nonce regression cannot be repaired.
    """
    if not isinstance(book, dict):
        return book, ()
    bids, asks = book.get("bids"), book.get("asks")
    if not isinstance(bids, (list, tuple)) or not isinstance(asks, (list, tuple)):
        return book, ()
    new_bids, dropped_bids, bids_resorted = _clean_side(bids, True)
    new_asks, dropped_asks, asks_resorted = _clean_side(asks, False)
    uncrossed = 0
    while new_bids and new_asks and new_bids[0][0] >= new_asks[0][0]:
        best_bid, best_ask = new_bids[0][0], new_asks[0][0]
        crossing_bids = sum(1 for lv in new_bids if lv[0] >= best_ask)
        crossing_asks = sum(1 for lv in new_asks if lv[0] <= best_bid)
        if crossing_bids <= crossing_asks:
            new_bids.pop(0)
        else:
            new_asks.pop(0)
        uncrossed += 1
    done: list[str] = []
    if dropped_bids or dropped_asks:
        done.append(f"dropped {dropped_bids} bid and {dropped_asks} ask levels (invalid or repeated price)")
    if bids_resorted or asks_resorted:
        done.append(
            "sorted " + " and ".join(s for s, r in (("bids", bids_resorted), ("asks", asks_resorted)) if r)
        )
    if uncrossed:
        done.append(f"dropped {uncrossed} crossed top levels")
    if not done:
        return book, ()
    fixed = dict(book)
    fixed["bids"], fixed["asks"] = new_bids, new_asks
    return fixed, tuple(done)
