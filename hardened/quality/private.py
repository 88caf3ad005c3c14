"""Structure checks for private answers: orders, lists of orders, balances, and the raw body.

ccxt parses whatever a 200 answer holds: an HTML page or JSON cut short becomes an order with
``id=None``, a balance with empty totals, an empty list of open orders (or an ``AttributeError``
from the parser). Private answers have no "repair": an order without an id cannot be cancelled, a
balance without its exchange answer is not a balance. These checks say what is missing; the
validate stage turns a failed check into a ``DataQualityError`` (a ``ccxt.BadResponse``).

Two levels:
- ``garbled_body(body, parsed)``: the raw HTTP body ccxt received is not JSON at all (an HTML page)
  or is JSON that does not parse (cut short). Checked on every answer, before any parser runs.
- ``validate_order``/``validate_orders``/``validate_balance``/``list_answer_issue``: the parsed
  result, after ccxt's parser: the unified keys a bot relies on are there and of the right type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hardened.quality.report import MAX_WHERE, Issue, Severity

__all__ = [
    "ORDER_STATUSES",
    "garbled_body",
    "holds_a_list",
    "list_answer_issue",
    "validate_balance",
    "validate_order",
    "validate_orders",
]

ORDER_STATUSES = frozenset(("open", "closed", "canceled", "expired", "rejected"))
"""ccxt's unified order statuses (an order may also carry an exchange word ccxt does not map)."""

_CRITICAL = Severity.CRITICAL
_ERROR = Severity.ERROR
_WARNING = Severity.WARNING
_BALANCE_PARTS = ("free", "used", "total")


def garbled_body(body: Any, parsed: Any) -> str | None:
    """Why a 200 answer's raw body is not an answer, or None when it may be one.

    ``body`` is the text ccxt received and ``parsed`` what ``parse_json`` made of it (None when it
    did not parse). An HTML page and JSON that does not parse (an answer cut short) are garbage;
    an empty body or other plain text is left to the parser (some endpoints answer that way).
    """
    if parsed is not None or not isinstance(body, str):
        return None
    text = body.lstrip()
    if not text:
        return None
    if text[0] == "<":
        return "the body is an HTML page, not the exchange's JSON"
    if text[0] in "{[":
        return "the body is JSON that does not parse (cut short?)"
    return None


def holds_a_list(parsed: Any, depth: int = 3) -> bool:
    """Whether a parsed JSON answer holds a list within ``depth`` levels (``[]``, ``{"data": []}``,
    ``{"data": {"items": []}}``): where an exchange puts the entries of a list answer."""
    if isinstance(parsed, list):
        return True
    if depth <= 1 or not isinstance(parsed, Mapping):
        return False
    return any(holds_a_list(value, depth - 1) for value in parsed.values())


def list_answer_issue(endpoint: str, result: Any, parsed: Any, answered: bool = False) -> Issue | None:
    """An empty list is only an answer when the exchange's JSON held a list (a real ``[]``).

    ``parsed`` is the JSON of the last HTTP answer of the call and ``answered`` whether that answer
    was a 2xx; ``{}`` or ``{"data": null}`` parsed into ``[]`` is garbage with the wrong shape, and
    so is a 2xx body that was not JSON at all (empty), not "nothing there".
    """
    if result or not isinstance(result, list) or holds_a_list(parsed):
        return None
    if parsed is None:
        if not answered:
            return None  # no answer seen (nothing to judge by)
        what = "a body that is not JSON"
    else:
        what = f"a JSON {type(parsed).__name__} that holds no list"
    return Issue(
        "wrong_shape",
        _CRITICAL,
        f"{endpoint}: an empty list parsed from {what}: not the exchange's answer",
    )


def _usable(order: Any) -> bool:
    """The fast check of one order (the common case): a dict with an id and a status word."""
    if type(order) is not dict:
        return False
    order_id = order.get("id")
    return (
        ((type(order_id) is str and order_id != "") or type(order_id) is int)
        and type(order.get("status")) is str
        and not isinstance(order.get("info"), (str, bytes))
    )


def _order_problems(order: Any, require_status: bool) -> list[str]:
    """What is wrong with one order, in words (only computed when the fast check failed)."""
    if not isinstance(order, Mapping):
        return [f"not an order (a {type(order).__name__})"]
    problems = []
    order_id = order.get("id")
    if not isinstance(order_id, (str, int)) or isinstance(order_id, bool) or order_id == "":
        problems.append(f"no order id (id={order_id!r})")
    status = order.get("status")
    if status is None:
        if require_status:
            problems.append("no status")
    elif not isinstance(status, str) or not status:
        # ccxt passes statuses it does not unify through as the exchange's word (Binance's
        # PENDING_CANCEL -> "canceling"), so any word is a status; a number or a dict is not
        problems.append(
            f"status {status!r} is not a status word (ccxt's are {', '.join(sorted(ORDER_STATUSES))})"
        )
    if isinstance(order.get("info"), (str, bytes)):  # ccxt parsed a body that was not JSON
        problems.append("its exchange answer (info) is text, not JSON")
    return problems


def validate_order(order: Any, *, require_status: bool = True) -> list[Issue]:
    """An order needs an id and a status word (``require_status``; KuCoin's create and cancel
    answers carry only the id); an ``info`` that is text means ccxt parsed a non-JSON body."""
    if _usable(order):
        return []
    problems = _order_problems(order, require_status)
    if not problems:
        return []
    return [Issue("malformed_order", _CRITICAL, "the order has " + "; ".join(problems))]


def validate_orders(orders: Any) -> list[Issue]:
    """A list of orders, each with an id and a status; an order without them cannot be cancelled
    or tracked, so the issue's extent is the share of such orders."""
    if not isinstance(orders, list):
        return [
            Issue("malformed", _CRITICAL, f"the answer is not a list of orders (a {type(orders).__name__})")
        ]
    if all(map(_usable, orders)):
        return []
    bad: list[int] = []
    first = ""
    for i, order in enumerate(orders):
        problems = _order_problems(order, True)
        if problems:
            if not bad:
                first = "; ".join(problems)
            bad.append(i)
    if not bad:
        return []
    return [
        Issue(
            "malformed_order",
            _ERROR,
            f"{len(bad)} of {len(orders)} orders are not usable (first: {first})",
            len(bad),
            tuple(bad[:MAX_WHERE]),
            len(bad) / len(orders),
        )
    ]


def _number_or_none(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int or value is None


def validate_balance(balance: Any) -> list[Issue]:
    """A balance holds the exchange's answer (``info``) and ``free``/``used``/``total`` maps of
    currency -> number or None; a negative total or total != free + used is flagged too."""
    if not isinstance(balance, Mapping):
        return [Issue("malformed", _CRITICAL, f"the balance is not a dict (a {type(balance).__name__})")]
    issues: list[Issue] = []
    if not isinstance(balance.get("info"), (Mapping, list)):
        issues.append(
            Issue(
                "wrong_shape",
                _CRITICAL,
                f"the balance holds no exchange answer (info={str(balance.get('info'))[:40]!r})",
            )
        )
    parts = {name: balance.get(name) for name in _BALANCE_PARTS}
    missing = [name for name, part in parts.items() if not isinstance(part, Mapping)]
    if missing:
        issues.append(Issue("malformed", _CRITICAL, f"the balance has no {'/'.join(missing)} map"))
        return issues
    free, used, total = parts["free"], parts["used"], parts["total"]
    codes = total.keys() | free.keys() | used.keys()
    not_numbers: list[str] = []
    negative: list[str] = []
    off: list[str] = []
    for code in codes:  # one pass; words are only built for what failed
        f, u, t = free.get(code), used.get(code), total.get(code)
        if not (_number_or_none(f) and _number_or_none(u) and _number_or_none(t)):
            not_numbers.append(str(code))
            continue
        if t is not None and t < 0:
            negative.append(str(code))
        if f is not None and u is not None and t is not None and abs(f + u - t) > 1e-9 * max(1.0, abs(t)):
            off.append(str(code))
    for code_name, found, severity, words in (
        ("malformed", not_numbers, _ERROR, "balance amounts that are not numbers"),
        ("negative_balance", negative, _ERROR, "negative totals"),
        ("balance_inconsistent", off, _WARNING, "total != free + used for"),
    ):
        if found:
            found.sort()
            issues.append(
                Issue(
                    code_name,
                    severity,
                    f"{words}: {', '.join(found[:10])}",
                    len(found),
                    tuple(found[:MAX_WHERE]),
                    len(found) / len(codes),
                )
            )
    return issues
