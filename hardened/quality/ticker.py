"""Ticker checks and repair: one unified ccxt ticker, or a ``fetch_tickers`` dict of them.

The case that matters most: an exchange answering 200 with an HTML page makes ccxt return a
ticker whose every market field is None, without raising. That ticker scores 0.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from operator import is_not
from typing import Any

from hardened.quality.report import MAX_WHERE, Issue, Severity
from hardened.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds

__all__ = ["repair_ticker", "repair_tickers", "ticker_is_clean", "validate_ticker", "validate_tickers"]

_PRICE_FIELDS = ("bid", "ask", "last", "close", "open", "high", "low", "vwap")
_VOLUME_FIELDS = ("baseVolume", "quoteVolume")
_SIZED = (("bid", "bidVolume"), ("ask", "askVolume"))  # a size at the best quote implies its price
_DATA_FIELDS = (
    *_PRICE_FIELDS,
    *_VOLUME_FIELDS,
    "bidVolume",
    "askVolume",
    "change",
    "percentage",
    "average",
    "previousClose",
    "markPrice",
    "indexPrice",
)
_FULL_CROSS = 0.01  # a bid 1 % above the ask is a fully broken quote (extent 1)
_FULL_LAST_MISS = 0.10  # last 10 % beyond the tolerated band is fully off (extent 1)
_STALE_SPAN = 10  # a timestamp ten times the allowed age old is fully stale (extent 1)
_ERROR = Severity.ERROR
_WARNING = Severity.WARNING
_EMPTY = Issue(
    "empty_ticker", Severity.CRITICAL, "every market field is None (HTML or empty body?)", 1, (), 1.0
)
_NOT_A_DICT = Issue("malformed", Severity.CRITICAL, "the ticker is not a dict", 1, (), 1.0)
_NOT_NUMBERS = Issue("malformed", Severity.ERROR, "ticker fields are not numbers", 1, (), 1.0, True)
_INF = float("inf")
_not_none = partial(is_not, None)


def _base_symbol(symbol: str) -> str:
    return symbol.split(":", 1)[0]


def validate_ticker(
    ticker: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[Issue]:
    """Check one unified ccxt ticker; an empty list means clean.

    Checks: not all-None, some quote present, positive prices, bid <= ask, last within
    ``last_spread_tolerance`` of [bid, ask], 24h high >= low, non-negative volumes, timestamp
    neither stale nor in the future (when ``now_ms`` is given), and the symbol asked for; a bid or
    ask with a size but no price, and a price in ``thresholds.ticker_prices`` that is missing.
    """
    if not isinstance(ticker, dict):
        return [_NOT_A_DICT]
    get = ticker.get
    issues: list[Issue] = []
    th = thresholds
    try:
        present = 0
        bad: list[str] | None = None
        missing: list[str] | None = None
        required = th.ticker_prices
        for field in _PRICE_FIELDS:
            x = get(field)
            if x is not None:
                present += 1
                if not 0 < x < _INF:  # zero, negative, NaN or infinite
                    bad = [field] if bad is None else [*bad, field]
            elif required and field in required:
                missing = [field] if missing is None else [*missing, field]
        if not present and all(get(f) is None for f in _DATA_FIELDS):
            return [_EMPTY]
        if get("bid") is None and get("ask") is None and get("last") is None and get("close") is None:
            issues.append(Issue("missing_price", _ERROR, "no bid, ask, last or close", 1, (), 1.0))
        # A quote with a size but no price, or a price the exchange always sends that is absent:
        # ccxt's omit_zero turned a zero into None, which no range check can see.
        for field, size in _SIZED:
            if get(field) is None and get(size) and (missing is None or field not in missing):
                missing = [field] if missing is None else [*missing, field]
        if missing is not None:
            issues.append(
                Issue(
                    "missing_field",
                    _ERROR,
                    f"no {', '.join(missing)} (zero or absent where the exchange always sends one)",
                    len(missing),
                    (),
                    1.0,
                    True,
                )
            )
        if bad is not None:
            infinite = [f for f in bad if get(f) in (_INF, -_INF)]
            nonpositive = [f for f in bad if f not in infinite]
            if nonpositive:  # a zero (no trade yet: vwap, open) is weighed; below zero, NaN or a
                # zero where the exchange always sends a price is impossible
                issues.append(
                    Issue(
                        "nonpositive_price",
                        _ERROR,
                        f"non-positive {', '.join(nonpositive)}",
                        len(nonpositive),
                        (),
                        len(nonpositive) / present,
                        any(not get(f) >= 0 or f in th.ticker_prices for f in nonpositive),
                    )
                )
            if infinite:
                issues.append(
                    Issue(
                        "non_finite", _ERROR, f"infinite {', '.join(infinite)}", len(infinite), (), 1.0, True
                    )
                )
            bad_set = set(bad)
        else:
            bad_set = ()

        def value(field: str) -> Any:
            x = get(field)
            return None if x is None or field in bad_set else x

        bid, ask, last = value("bid"), value("ask"), value("last")
        if bid is not None and ask is not None:
            if bid > ask:
                cross = (bid - ask) / ask
                issues.append(
                    Issue(
                        "crossed",
                        _ERROR,
                        f"bid {bid} above ask {ask}",
                        1,
                        (),
                        min(1.0, cross / _FULL_CROSS),
                        True,
                    )
                )
            elif last is not None:
                tol = th.last_spread_tolerance
                low_band, high_band = bid * (1 - tol), ask * (1 + tol)
                miss = (low_band - last) / low_band if last < low_band else (last - high_band) / high_band
                if miss > 0:
                    issues.append(
                        Issue(
                            "last_outside_spread",
                            _WARNING,
                            f"last {last} outside bid {bid} / ask {ask} by more than {tol:.1%}",
                            1,
                            (),
                            min(1.0, miss / _FULL_LAST_MISS),
                        )
                    )
        high, low = value("high"), value("low")
        if high is not None and low is not None and high < low:
            issues.append(
                Issue("range_inconsistent", _ERROR, f"24h high {high} below low {low}", 1, (), 0.25, True)
            )
        for field in _VOLUME_FIELDS:
            x = get(field)
            if x is not None and not 0 <= x < _INF:
                if x < 0:
                    issues.append(
                        Issue("negative_volume", _ERROR, f"negative {field} {x}", 1, (), 0.25, True)
                    )
                else:
                    issues.append(Issue("non_finite", _ERROR, f"{field} is {x}", 1, (), 0.25, True))
        ts = get("timestamp")
        if ts is not None:
            if ts < th.min_timestamp_ms:
                issues.append(Issue("absurd_timestamp", _ERROR, f"timestamp {ts} is before 2009", 1, (), 1.0))
            elif now_ms is not None:
                age = now_ms - ts
                span = _STALE_SPAN * th.ticker_max_age_ms
                if age > th.ticker_max_age_ms:
                    issues.append(
                        Issue(
                            "stale", _ERROR, f"ticker is {age / 1000:.0f}s old", 1, (), min(1.0, age / span)
                        )
                    )
                elif -age > th.future_tolerance_ms:
                    issues.append(
                        Issue(
                            "future_timestamp",
                            _WARNING,
                            f"ticker is {-age / 1000:.0f}s in the future",
                            1,
                            (),
                            min(1.0, -age / span),
                        )
                    )
    except TypeError:
        return [_NOT_NUMBERS]
    if symbol is not None:
        got = get("symbol")
        if isinstance(got, str) and _base_symbol(got) != _base_symbol(symbol):
            issues.append(Issue("symbol_mismatch", _WARNING, f"asked for {symbol}, got {got}", 1, (), 1.0))
    return issues


def ticker_is_clean(
    ticker: Any, now_ms: int | None, symbol: str | None, th: QualityThresholds = DEFAULT_THRESHOLDS
) -> bool:
    """True exactly when ``validate_ticker`` would find nothing: the same checks, in one pass that
    builds no issue. The validation stage asks this first on every ticker and runs the full
    validation only when it says False, so a clean ticker (nearly all of them) costs a few
    microseconds instead of a report's worth of work, right after the network wait where every
    line is paid for with cold caches. ``tests/test_quality_fastpath.py`` holds the two equal."""
    if type(ticker) is not dict:
        return False
    get = ticker.get
    try:
        # Prices: the ones present, gathered in C (filter/map), then judged all at once: a sum that
        # is finite rules out NaN and infinities, a positive minimum the zeros and negatives.
        prices = list(filter(_not_none, map(get, _PRICE_FIELDS)))
        if not prices or not min(prices) > 0 or not sum(prices) < _INF:
            return False
        required = th.ticker_prices
        if required and None in map(get, required):
            return False
        bid, ask, last = get("bid"), get("ask"), get("last")
        if bid is None and ask is None and last is None and get("close") is None:
            return False
        if (bid is None and get("bidVolume")) or (ask is None and get("askVolume")):
            return False
        if bid is not None and ask is not None:
            if bid > ask:
                return False
            if last is not None:
                tol = th.last_spread_tolerance
                if last < bid * (1 - tol) or last > ask * (1 + tol):
                    return False
        high, low = get("high"), get("low")
        if high is not None and low is not None and high < low:
            return False
        volume = get("baseVolume")
        if volume is not None and not 0 <= volume < _INF:
            return False
        volume = get("quoteVolume")
        if volume is not None and not 0 <= volume < _INF:
            return False
        ts = get("timestamp")
        if ts is not None:
            if ts < th.min_timestamp_ms:
                return False
            if now_ms is not None:
                age = now_ms - ts
                if age > th.ticker_max_age_ms or -age > th.future_tolerance_ms:
                    return False
    except TypeError:
        return False
    if symbol is not None:
        got = get("symbol")
        if isinstance(got, str) and got.split(":", 1)[0] != symbol.split(":", 1)[0]:
            return False
    return True


def validate_tickers(
    tickers: Any,
    *,
    now_ms: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[Issue]:
    """Check a ``fetch_tickers`` dict (symbol -> ticker); issues are merged per code across symbols.

    ``where`` lists the symbols concerned and ``extent`` is the summed extent over the number of
    tickers. An all-None ticker is an error among others and critical only when every one is.
    """
    if not isinstance(tickers, dict):
        return [Issue("malformed", Severity.CRITICAL, "the answer is not a dict of tickers", 1, (), 1.0)]
    n = len(tickers)
    if not n:
        return [Issue("empty", _WARNING, "no tickers in the answer", 0, (), 1.0)]
    if thresholds.ticker_prices:  # every market, quiet ones too: an empty book side is no defect there
        thresholds = replace(thresholds, ticker_prices=())
    merged: dict[str, list[Any]] = {}
    for key, ticker in tickers.items():
        found = validate_ticker(
            ticker, now_ms=now_ms, symbol=key if isinstance(key, str) else None, thresholds=thresholds
        )
        for issue in found:
            entry = merged.get(issue.code)
            if entry is None:
                merged[issue.code] = [issue.severity, 1, [key], issue.extent, issue.message, issue.impossible]
            else:
                entry[0] = max(entry[0], issue.severity)
                entry[1] += 1
                if len(entry[2]) < MAX_WHERE:
                    entry[2].append(key)
                entry[3] += issue.extent
                entry[5] = entry[5] or issue.impossible
    issues = []
    for code, (severity, count, where, extent, message, impossible) in merged.items():
        if severity == Severity.CRITICAL and count < n:
            severity = _ERROR
        issues.append(
            Issue(
                code,
                severity,
                f"{count} of {n} tickers, e.g. {message}",
                count,
                tuple(where),
                extent / n,
                impossible,
            )
        )
    return issues


def repair_ticker(
    ticker: Any,
    *,
    now_ms: int | None = None,
    symbol: str | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> tuple[Any, tuple[str, ...]]:
    """A repaired copy of ``ticker`` with untrustworthy fields set to None, and what was cleared.

    Clears non-positive or non-numeric prices, both sides of a crossed quote (with their volumes),
    an inverted 24h range and negative volumes. An all-None, stale or price-less ticker cannot be
    repaired and comes back as it was. ``ticker`` itself is never modified.
    """
    if not isinstance(ticker, dict):
        return ticker, ()
    fixed = dict(ticker)
    cleared: list[str] = []

    def clear(*fields: str) -> None:
        for field in fields:
            if fixed.get(field) is not None:
                fixed[field] = None
                cleared.append(field)

    for field in _DATA_FIELDS:
        x = fixed.get(field)
        if x is not None and (
            not isinstance(x, (int, float)) or isinstance(x, bool) or x != x or x in (_INF, -_INF)
        ):
            clear(field)
    for field in _PRICE_FIELDS:
        x = fixed.get(field)
        if x is not None and not x > 0:
            clear(field)
    bid, ask = fixed.get("bid"), fixed.get("ask")
    if bid is not None and ask is not None and bid > ask:
        clear("bid", "ask", "bidVolume", "askVolume")
    high, low = fixed.get("high"), fixed.get("low")
    if high is not None and low is not None and high < low:
        clear("high", "low")
    for field in _VOLUME_FIELDS:
        x = fixed.get(field)
        if x is not None and x < 0:
            clear(field)
    if not cleared:
        return ticker, ()
    return fixed, (f"cleared {', '.join(cleared)}",)


def repair_tickers(
    tickers: Any,
    *,
    now_ms: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> tuple[Any, tuple[str, ...]]:
    """A new dict without all-None or malformed tickers and with the others repaired as above."""
    if not isinstance(tickers, dict):
        return tickers, ()
    fixed: dict[Any, Any] = {}
    dropped: list[str] = []
    touched = 0
    for key, ticker in tickers.items():
        found = validate_ticker(ticker, now_ms=now_ms, thresholds=thresholds)
        if any(i.code in ("empty_ticker", "malformed") for i in found):
            dropped.append(str(key))
            continue
        repaired, done = (
            repair_ticker(ticker, now_ms=now_ms, thresholds=thresholds) if found else (ticker, ())
        )
        touched += bool(done)
        fixed[key] = repaired
    done_all: list[str] = []
    if dropped:
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        done_all.append(f"dropped {len(dropped)} of {len(tickers)} tickers without data ({shown})")
    if touched:
        done_all.append(f"cleared bad fields in {touched} tickers")
    return fixed, tuple(done_all)
