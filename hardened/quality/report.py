"""Issues, severities and the quality report: what a check found and the 0-100 score it earns.

Score formula (monotone by construction). Every issue has a severity and an ``extent`` in [0, 1]:
the share of the answer it affects (bad candles / candles, bad levels / levels, missing candles /
expected candles) or, for single-object answers, how far off it is (a ticker's age against ten
times the allowed age). The issue costs a penalty ``p = base + span * extent``:

    ============  =====  =====  ==========================
    severity      base   span   p at extent 0 .. 1
    ============  =====  =====  ==========================
    info          0.01   0.09   0.01 .. 0.10
    warning       0.05   0.35   0.05 .. 0.40
    error         0.20   0.80   0.20 .. 1.00
    critical      1.00   0.00   1.00 (the answer is unusable)
    ============  =====  =====  ==========================

and ``score = 100 * prod(1 - p_i)``. A clean answer (no issue) scores exactly 100; one more issue,
a larger extent or a higher severity can only lower the score; any critical issue, or an error
affecting the whole answer, scores 0.

Some issues are ``impossible``: values no market can produce (high < low, open or close outside
[low, high], a zero or negative price in a candle, a trade or a book level, a negative volume, a
crossed book, a repeated candle, trade or book price, a null timestamp, an infinite or NaN
number, a quote with a size but no price, a price the exchange always sends missing), and answers
that contradict one already seen (a book's nonce or the latest trades going back in time, trades
vanishing); on an exchange that sends every interval, a gap, a stale end or no candle in a window
that reaches now. The score does not excuse them: under ``raise`` they always raise, under
``repair`` they are dropped (see ``hardened.quality.monitor``). The score governs the soft
defects only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CODES", "MAX_WHERE", "Issue", "QualityReport", "Severity", "score_of"]

MAX_WHERE = 20
"""At most this many positions (indices or symbols) are kept in an issue's ``where``."""


class Severity(enum.IntEnum):
    """How bad one issue is; ordered, so ``max`` and comparisons work."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """Lower-case name, as logged and shown in reports (``"error"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: Severity | str) -> Severity:
        """Accept a ``Severity`` or its name in any case (``"warning"``)."""
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {value!r}; expected one of {names}") from None


_BASE = (0.01, 0.05, 0.20, 1.0)
_SPAN = (0.09, 0.35, 0.80, 0.0)

CODES: dict[str, str] = {
    # shared
    "malformed": "an entry is not the shape ccxt returns (wrong length, non-numeric, not a dict)",
    "empty": "the answer holds no data at all",
    "nonpositive_price": "a price is zero, negative or missing",
    "nonpositive_amount": "an amount is zero, negative or missing",
    "stale": "the newest data is older than the allowed age",
    "future_timestamp": "a timestamp lies in the future beyond the clock tolerance",
    "absurd_timestamp": "a timestamp is before 2009 (seconds instead of milliseconds, or garbage)",
    "out_of_order": "timestamps go backwards",
    "symbol_mismatch": "the answer is for another symbol than the one asked",
    # ohlcv
    "ohlc_inconsistent": "high < max(open, close) or low > min(open, close)",
    "negative_volume": "a volume is negative",
    "missing_volume": "a volume is missing (None/NaN)",
    "misaligned_timestamp": "a candle's open time is not on the timeframe's grid",
    "duplicate_timestamp": "two candles share an open time",
    "gap": "candles are missing between the first and the last",
    "outlier": "a close-to-close log return is far outside the robust (MAD) spread of the series",
    # ticker
    "empty_ticker": "every market field is None (typically a 200 answer with an HTML body)",
    "missing_price": "no bid, ask, last or close at all",
    "missing_field": "a price the exchange always sends is absent or zero (ccxt's omit_zero makes it None)",
    "crossed": "bid above ask (ticker) or best bid at or above best ask (order book)",
    "last_outside_spread": "last is outside [bid, ask] by more than the tolerance",
    "range_inconsistent": "the 24h high is below the 24h low",
    # order book
    "unsorted_bids": "bid prices are not strictly descending",
    "unsorted_asks": "ask prices are not strictly ascending",
    "nonce_regressed": "the book's nonce is older than one already seen for this symbol",
    # trades
    "missing_timestamp": "a trade has no timestamp",
    "duplicate_id": "two trades share an id (or, without ids, the exchange's raw record)",
    "trades_regressed": "the newest trade is older than the newest of an earlier answer (stale)",
    "trades_vanished": "trades an earlier answer showed are missing within this answer's time span",
    "invalid_side": "a trade's side is not 'buy', 'sell' or None",
    # private answers (orders, balances) and raw bodies
    "garbled_body": "a 200 answer whose body is an HTML page or JSON that does not parse",
    "wrong_shape": "the exchange's JSON is not the shape of this answer (no list, no balance)",
    "malformed_order": "an order without an id or a status, or parsed from text",
    "negative_balance": "a currency's total balance is negative",
    "balance_inconsistent": "a currency's total differs from free + used",
    # custom checks
    "non_finite": "a number is infinite or NaN where a market value must be",
    "custom_check_error": "a user check raised or returned something it should not",
}
"""Every issue code the built-in checks emit, with what it means. Custom checks add their own."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One defect: its code, severity, a message, how many entries and where, and its extent;
    ``impossible`` when no market can produce it (never passed on under ``raise``, whatever the score)."""

    code: str
    severity: Severity
    message: str
    count: int = 1
    where: tuple[int | str, ...] = ()
    extent: float = 1.0
    impossible: bool = False

    @property
    def penalty(self) -> float:
        """The share of the score this issue costs on its own (see the module docstring)."""
        extent = min(1.0, max(0.0, self.extent))
        return _BASE[self.severity] + _SPAN[self.severity] * extent

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for events, logs and the status stream (``impossible`` when set)."""
        data: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity.label,
            "message": self.message,
            "count": self.count,
            "where": list(self.where),
            "extent": round(self.extent, 4),
        }
        if self.impossible:
            data["impossible"] = True
        return data


def score_of(issues: Iterable[Issue]) -> float:
    """The 0-100 score of a set of issues: ``100 * prod(1 - penalty)``; 100 when there are none."""
    keep = 1.0
    for issue in issues:
        keep *= 1.0 - issue.penalty
    return max(0.0, 100.0 * keep)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The verdict on one answer: score, issues, and what a repair did.

    Under the ``repair`` policy ``issues`` and ``score`` describe the answer actually returned (the
    repaired one), ``repairs`` says what was changed and ``score_before`` is the original score.
    """

    endpoint: str
    score: float
    issues: tuple[Issue, ...] = ()
    repaired: bool = False
    repairs: tuple[str, ...] = ()
    score_before: float | None = None
    symbol: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, endpoint: str, issues: Iterable[Issue], symbol: str | None = None) -> QualityReport:
        """Score ``issues`` and wrap them in a report, worst first."""
        ordered = tuple(sorted(issues, key=lambda i: (-i.severity, -i.penalty, i.code)))
        return cls(endpoint, score_of(ordered), ordered, symbol=symbol)

    @property
    def ok(self) -> bool:
        """True when nothing at all was found."""
        return not self.issues

    @property
    def codes(self) -> frozenset[str]:
        """The issue codes present, for quick membership tests."""
        return frozenset(i.code for i in self.issues)

    @property
    def impossible(self) -> tuple[Issue, ...]:
        """The issues no market can produce: they fail the answer whatever its score."""
        return tuple(i for i in self.issues if i.impossible)

    def has(self, code: str) -> bool:
        """Whether an issue with ``code`` is present."""
        return any(i.code == code for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for events, logs and the status stream."""
        return {
            "endpoint": self.endpoint,
            "symbol": self.symbol,
            "score": round(self.score, 2),
            "issues": [i.to_dict() for i in self.issues],
            "repaired": self.repaired,
            "repairs": list(self.repairs),
            "score_before": None if self.score_before is None else round(self.score_before, 2),
        }

    def __str__(self) -> str:
        head = f"{self.endpoint}{f' {self.symbol}' if self.symbol else ''} quality {self.score:.0f}/100"
        if self.issues:
            named = ", ".join(
                f"{i.code}{f' x{i.count}' if i.count != 1 else ''} "
                f"({i.severity.label}{', impossible' if i.impossible else ''})"
                for i in self.issues
            )
            head = f"{head}: {named}"
        if self.repaired:
            head = f"{head}; repaired: {'; '.join(self.repairs)}"
        return head
