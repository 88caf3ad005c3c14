"""Exchange profiles: every file loads, every code maps as documented and as ccxt 4.5.90 reads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ccxt
import pytest

from hardened.adapters import (
    ENDPOINTS,
    Action,
    ExchangeProfile,
    FailureKind,
    ProfileError,
    available_profiles,
    load_profile,
    load_profile_file,
    profile_dir,
)
from hardened.errors import ErrorKind

EXCHANGES = ("binance", "bitvavo", "kucoin")
URLS = {
    "binance": "https://api.binance.com/api/v3/order",
    "kucoin": "https://api.kucoin.com/api/v1/orders",
    "bitvavo": "https://api.bitvavo.com/v2/order",
}

K = FailureKind


def _rules(exchange: str) -> list[tuple[str, str]]:
    return [(exchange, rule.name) for rule in load_profile(exchange).errors]


ALL_RULES = [pair for exchange in EXCHANGES for pair in _rules(exchange)]


# -- loading -----------------------------------------------------------------------------------------


def test_the_three_profiles_are_available() -> None:
    assert set(EXCHANGES) <= set(available_profiles())
    assert {entry.name for entry in profile_dir().iterdir()} >= {f"{e}.toml" for e in EXCHANGES}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_profile_loads_and_covers_every_endpoint(exchange: str) -> None:
    profile = load_profile(exchange)
    assert profile.exchange == exchange
    assert not profile.generic
    assert set(profile.rate_limit.endpoints) == set(ENDPOINTS)
    assert profile.rate_limit.pools, "a real exchange profile declares its pools"
    assert profile.ccxt_version == ccxt.__version__ == "4.5.90"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_every_number_names_its_source(exchange: str) -> None:
    profile = load_profile(exchange)
    assert all(rule.source.strip() for rule in profile.errors)
    assert all(pool.source.strip() for pool in profile.rate_limit.pools)
    assert all(header.source.strip() for header in profile.rate_limit.headers)
    assert all(cost.source.strip() for cost in profile.rate_limit.endpoints.values())
    assert profile.client_order_id.source.strip() and profile.clock.source.strip()


def test_load_profile_is_cached() -> None:
    assert load_profile("binance") is load_profile("binance")


def test_a_profile_file_loads_from_any_path(tmp_path: Path) -> None:
    target = tmp_path / "kucoin.toml"
    shutil.copy(profile_dir().joinpath("kucoin.toml"), target)  # type: ignore[arg-type]
    assert load_profile_file(target) == load_profile("kucoin")
    assert available_profiles(tmp_path) == ("kucoin",)
    assert load_profile("kucoin", tmp_path) == load_profile("kucoin")


def test_an_exchange_without_a_file_gets_the_generic_profile() -> None:
    profile = load_profile("okx")
    assert profile.generic and profile.exchange == "okx"
    assert profile.rate_limit.pools == ()
    rule = profile.classify_error(http_status=429)
    assert rule is not None and rule.kind is K.RATE_LIMIT and rule.action is Action.BACKOFF_UNTIL_RESET
    assert profile.classify_error(http_status=502).ambiguous  # type: ignore[union-attr]
    assert profile.classify_error("50001", "whatever", 400) is None


@pytest.mark.parametrize("bad", ["../binance", "Binance", "", "bin ance"])
def test_an_exchange_id_that_is_not_a_ccxt_id_is_refused(bad: str) -> None:
    with pytest.raises(ProfileError, match="not a ccxt exchange id"):
        load_profile(bad)


# -- a bad file fails, naming the file, the field and what is wrong ----------------------------------


def _broken(tmp_path: Path, old: str, new: str, name: str = "binance") -> Path:
    text = profile_dir().joinpath("binance.toml").read_text(encoding="utf-8")
    assert old in text, old
    target = tmp_path / f"{name}.toml"
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


@pytest.mark.parametrize(
    ("old", "new", "field", "what"),
    [
        ('kind = "ban"', 'kind = "bogus"', "errors.0.kind", "Input should be"),
        ('action = "resync_clock_then_retry_once"', 'action = "retry"', "errors.5", "does not fit kind"),
        ("limit = 6000\n", "limit = -6000\n", "rate_limit.pools.0.limit", "greater than 0"),
        ('name = "ip_banned"', 'name = "ip_banned"\nsurprise = 1', "errors.0.surprise", "Extra inputs"),
        (
            'message = "(?i)banned until"',
            'message = "(?i)banned ("',
            "errors.0.message",
            "regular expression",
        ),
        ("also = { orders_10s = 1", "also = { orders_1m = 1", "rate_limit", "unknown pool 'orders_1m'"),
        (
            'pool = "orders_10s"\nexample',
            'pool = "nowhere"\nexample',
            "(top level)",
            "unknown pool 'nowhere'",
        ),
        (
            "visibility_lag_ms = 1000",
            'visibility_lag_ms = "soon"',
            "client_order_id.visibility_lag_ms",
            "integer",
        ),
        # wrong values pydantic's lax mode would have taken without a word
        ("limit = 6000\n", "limit = true\n", "rate_limit.pools.0.limit", "valid number"),
        ("limit = 6000\n", 'limit = "6000"\n', "rate_limit.pools.0.limit", "valid number"),
        ("checks_timestamp = true", 'checks_timestamp = "no"', "clock.checks_timestamp", "valid boolean"),
        ("per_request = true", "per_request = 1", "rate_limit.pools.1.per_request", "valid boolean"),
        (
            "by_limit = [[100, 5], [500, 25], [1000, 50], [5000, 250]]",
            "by_limit = [[5000, 250], [100, 5], [500, 25], [1000, 50]]",
            "rate_limit.endpoints.order_book.by_limit",
            "strictly ascending",
        ),
        (
            "by_limit = [[100, 5], [500, 25]",
            "by_limit = [[100, -5], [500, 25]",
            "rate_limit.endpoints.order_book.by_limit.0.1",
            "greater than or equal to 0",
        ),
        (
            "also = { orders_10s = 1,",
            "also = { orders_10s = -1,",
            "rate_limit.endpoints.create_order.also.orders_10s",
            "greater than or equal to 0",
        ),
        (
            'name = "X-MBX-ORDER-COUNT-10S"',
            'name = "x-mbx-used-weight-1m"',
            "rate_limit",
            "declared twice",
        ),
        (
            'retry_after_header = "Retry-After"',
            'retry_after_header = ""',
            "rate_limit.retry_after_header",
            "1 character",
        ),
        ("window_ms = 5000\n", "window_ms = 600000\n", "clock", "over max_window_ms"),
    ],
)
def test_a_bad_profile_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str, what: str
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"field {field}" in message
    assert what in message


def test_a_rule_without_source_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'source = "[errors] -1021 INVALID_TIMESTAMP"\n', "")
    with pytest.raises(ProfileError, match=r"field errors\.5\.source: Field required"):
        load_profile_file(path)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'exchange = "binance"', 'exchange = "binance')
    with pytest.raises(ProfileError, match=rf"{path}: not valid TOML"):
        load_profile_file(path)


def test_a_file_named_for_another_exchange_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'exchange = "binance"', 'exchange = "binance"', name="kraken")
    with pytest.raises(
        ProfileError, match=r"field exchange: is 'binance' but the file is named for 'kraken'"
    ):
        load_profile_file(path)
    with pytest.raises(ProfileError, match=r"kraken\.toml"):
        load_profile("kraken", tmp_path)


# -- the error maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("exchange", "rule_name"), ALL_RULES)
def test_each_rule_matches_its_documented_example(exchange: str, rule_name: str) -> None:
    profile = load_profile(exchange)
    rule = next(r for r in profile.errors if r.name == rule_name)
    found = profile.classify_error(rule.code, rule.example or "", rule.example_status)
    assert found is rule


def _ccxt_raises(
    exchange: str, profile: ExchangeProfile, code: str | None, message: str, status: int, as_text: bool
) -> str:
    """The ccxt 4.5.90 error class for an answer, from the exchange class's own handle_errors."""
    api = getattr(ccxt, exchange)()
    payload: dict[str, object] | None = None
    body = message if as_text else ""
    if not as_text and (code is not None or message):
        payload = {}
        if code is not None:
            code_key = profile.error_payload.code_keys[0]
            payload[code_key] = int(code) if profile.error_payload.code_type == "int" else code
        payload[profile.error_payload.message_keys[0]] = message
        body = json.dumps(payload)
    try:
        handled = api.handle_errors(status, "reason", URLS[exchange], "POST", {}, body, payload, {}, None)
    except ccxt.BaseError as exc:
        return type(exc).__name__
    if not handled and str(status) in api.httpExceptions:
        return api.httpExceptions[str(status)].__name__
    return "ExchangeError"


@pytest.mark.parametrize(("exchange", "rule_name"), ALL_RULES)
def test_each_rule_records_what_ccxt_raises(exchange: str, rule_name: str) -> None:
    profile = load_profile(exchange)
    rule = next(r for r in profile.errors if r.name == rule_name)
    assert rule.ccxt is not None, "every rule records ccxt 4.5.90's class for cross-checking"
    as_text = rule.example_body == "text"
    raised = _ccxt_raises(
        exchange, profile, rule.code, rule.example or "", rule.example_status or 400, as_text
    )
    assert raised == rule.ccxt


RETRY, BACKOFF, RESYNC, FAIL = "retry", "backoff_until_reset", "resync_clock_then_retry_once", "fail"
BRIEF = [
    # exchange, code, message, http status -> kind, action
    ("binance", "-1003", "Too much request weight used; current limit is 6000.", 429, "rate_limit", BACKOFF),
    (
        "binance",
        "-1003",
        "Way too much request weight used; IP banned until 1700000000000.",
        418,
        "ban",
        BACKOFF,
    ),
    ("binance", None, "", 429, "rate_limit", BACKOFF),
    ("binance", None, "", 418, "ban", BACKOFF),
    (
        "binance",
        "-1021",
        "Timestamp for this request was 1000ms ahead of the server's time.",
        400,
        "clock_skew",
        RESYNC,
    ),
    (
        "binance",
        "-1021",
        "Timestamp for this request is outside of the recvWindow.",
        400,
        "clock_skew",
        RESYNC,
    ),
    ("binance", "-1001", "Internal error; unable to process your request.", 400, "transient", RETRY),
    (
        "binance",
        "-1006",
        "An unexpected response was received from the message bus.",
        400,
        "transient",
        RETRY,
    ),
    ("binance", "-1007", "Timeout waiting for response from backend server.", 400, "transient", RETRY),
    ("binance", "-2010", "Duplicate order sent.", 400, "duplicate_order", FAIL),
    (
        "binance",
        "-2010",
        "Account has insufficient balance for requested action.",
        400,
        "insufficient_funds",
        FAIL,
    ),
    ("binance", "-2010", "Market is closed.", 400, "permanent", FAIL),
    ("binance", "-2011", "Unknown order sent.", 400, "order_not_found", FAIL),
    ("binance", "-2013", "Order does not exist.", 400, "order_not_found", FAIL),
    ("binance", "-1121", "Invalid symbol.", 400, "permanent", FAIL),
    ("binance", "-1022", "Signature for this request is not valid.", 400, "permanent", FAIL),
    ("binance", "-1102", "Mandatory parameter 'side' was not sent.", 400, "permanent", FAIL),
    ("binance", None, "System is under maintenance.", 400, "maintenance", BACKOFF),
    ("kucoin", "429000", "Too Many Requests", 429, "rate_limit", BACKOFF),
    ("kucoin", "400002", "KC-API-TIMESTAMP Invalid", 400, "clock_skew", RESYNC),
    (
        "kucoin",
        "200002",
        "Too many requests in a short period of time, please retry later",
        200,
        "rate_limit",
        BACKOFF,
    ),
    ("kucoin", "200002", "Order cancel for this pair suspended", 200, "maintenance", BACKOFF),
    ("kucoin", "400100", "Parameter Error", 400, "permanent", FAIL),
    ("kucoin", "400100", "account.available.amount", 400, "insufficient_funds", FAIL),
    ("kucoin", "900001", "Symbol [FOO-BAR] Not Exists", 400, "permanent", FAIL),
    ("kucoin", "200004", "Balance insufficient", 200, "insufficient_funds", FAIL),
    ("kucoin", "400005", "Invalid KC-API-SIGN.", 401, "permanent", FAIL),
    ("kucoin", "400004", "Invalid KC-API-PASSPHRASE.", 401, "permanent", FAIL),
    ("kucoin", "400003", "KC-API-KEY does not exist.", 401, "permanent", FAIL),
    ("kucoin", "126044", "clientOid duplicate", 200, "duplicate_order", FAIL),
    ("bitvavo", "110", "Rate limit exceeded.", 429, "ban", BACKOFF),
    ("bitvavo", "110", "Invalid endpoint. Please check url and HTTP method.", 404, "permanent", FAIL),
    ("bitvavo", "105", "The ban expires at 1700000060000.", 429, "ban", BACKOFF),
    ("bitvavo", "304", "Request was not received within acceptable window.", 403, "clock_skew", RESYNC),
    ("bitvavo", "205", "Invalid parameter: price", 400, "permanent", FAIL),
    ("bitvavo", "203", "symbol parameter is required.", 400, "permanent", FAIL),
    ("bitvavo", "216", "You do not have sufficient balance.", 400, "insufficient_funds", FAIL),
    ("bitvavo", "240", "No order found.", 404, "order_not_found", FAIL),
    ("bitvavo", "220", "clientOrderId conflict within the market.", 400, "duplicate_order", FAIL),
    ("bitvavo", "107", "The matching engine is overloaded.", 503, "transient", RETRY),
    ("bitvavo", "108", "The matching engine could not process your order in time.", 503, "transient", RETRY),
    ("bitvavo", "109", "The matching engine did not respond in time.", 503, "transient", RETRY),
    ("bitvavo", None, "", 503, "maintenance", BACKOFF),
]


@pytest.mark.parametrize(("exchange", "code", "message", "status", "kind", "action"), BRIEF)
def test_documented_codes_map_to_kind_and_action(
    exchange: str, code: str | None, message: str, status: int, kind: str, action: str
) -> None:
    rule = load_profile(exchange).classify_error(code, message, status)
    assert rule is not None
    assert (rule.kind, rule.action) == (FailureKind(kind), Action(action))


@pytest.mark.parametrize(
    ("exchange", "code", "ambiguous"),
    [
        ("binance", "-1006", True),
        ("binance", "-1007", True),
        ("binance", "-1001", False),
        ("binance", "-2010", False),
        ("bitvavo", "101", True),
        ("bitvavo", "109", True),
        ("bitvavo", "107", False),
        ("kucoin", "500000", True),
        ("kucoin", "429000", False),
    ],
)
def test_execution_unknown_answers_are_marked_ambiguous(exchange: str, code: str, ambiguous: bool) -> None:
    rule = load_profile(exchange).classify_error(code, "", None)
    assert rule is not None and rule.ambiguous is ambiguous


def test_ban_end_is_read_from_the_message() -> None:
    binance = load_profile("binance")
    rule = binance.classify_error(
        "-1003", "Way too much request weight used; IP banned until 1620286253180.", 418
    )
    assert rule is not None and rule.ban_end(
        "Way too much request weight used; IP banned until 1620286253180."
    ) == pytest.approx(1620286253.18)
    bitvavo = load_profile("bitvavo")
    message = "Your IP or API key has been banned. The ban expires at 1700000060000."
    rule = bitvavo.classify_error(105, message, 429)
    assert rule is not None and rule.ban_end(message) == pytest.approx(1700000060.0)
    assert rule.ban_end("no time here") is None


@pytest.mark.parametrize(
    ("exchange", "text", "status", "expected"),
    [
        ("binance", 'binance {"code":-2010,"msg":"Duplicate order sent."}', None, "duplicate_order"),
        ("binance", "binance Account has insufficient balance for requested action.", None, None),
        (
            "binance",
            'binance POST https://api.binance.com/api/v3/order 418 I\'m a teapot {"code":-1003,'
            '"msg":"Way too much request weight used; IP banned until 1700000000000."}',
            418,
            "ip_banned",
        ),
        ("kucoin", 'kucoin {"code":"400002","msg":"KC-API-TIMESTAMP Invalid"}', None, "invalid_timestamp"),
        ("kucoin", 'kucoin {"code":"200000","data":{}}', None, None),
        (
            "bitvavo",
            'bitvavo {"errorCode":110,"error":"You have exceeded the rate limit."}',
            429,
            "rate_limited_429",
        ),
        ("bitvavo", "bitvavo not json at all", None, None),
    ],
)
def test_classify_text_reads_the_body_inside_a_ccxt_message(
    exchange: str, text: str, status: int | None, expected: str | None
) -> None:
    rule = load_profile(exchange).classify_text(text, status)
    assert (rule.name if rule else None) == expected


def test_classify_exception_reads_code_and_http_status() -> None:
    binance = load_profile("binance")
    exc = ccxt.DDoSProtection(
        'binance 429 Too Many Requests {"code":-1003,"msg":"Too much request weight used."}'
    )
    rule = binance.classify_exception(exc)
    assert rule is not None and rule.name == "too_much_weight"
    timeout = ccxt.ExchangeNotAvailable(
        "binance POST https://api.binance.com/api/v3/order 502 Bad Gateway <html>"
    )
    rule = binance.classify_exception(timeout)
    assert rule is not None and rule.kind is K.TRANSIENT and rule.ambiguous


# -- rate limits against ccxt's own per-endpoint costs -----------------------------------------------


def _endpoint_pairs() -> list[tuple[str, str]]:
    return [(e, endpoint) for e in EXCHANGES for endpoint in load_profile(e).rate_limit.endpoints]


@pytest.mark.parametrize(("exchange", "endpoint"), _endpoint_pairs())
def test_endpoint_weight_agrees_with_ccxt_cost(exchange: str, endpoint: str) -> None:
    spec = load_profile(exchange).rate_limit
    cost = spec.endpoints[endpoint]
    assert cost.ccxt_api is not None and cost.ccxt_cost is not None
    api, method, path, *key = cost.ccxt_api.split()
    entry = getattr(ccxt, exchange)().describe()["api"][api][method.lower()][path]
    ccxt_cost = entry[key[0]] if key else entry["cost"]
    assert ccxt_cost == pytest.approx(cost.ccxt_cost)
    unit = spec.ccxt_weight_per_cost
    if cost.ccxt_differs is None:  # else the profile says why the exchange's weight is not ccxt's
        assert cost.weight == pytest.approx(ccxt_cost * unit)
    else:
        assert cost.weight > ccxt_cost * unit, "a weight may only differ from ccxt's upwards"
    if cost.no_symbol_weight is not None:
        assert cost.no_symbol_weight == pytest.approx(entry.get("noSymbol", entry.get("noMarket")) * unit)
    if cost.by_limit and "byLimit" in entry:
        assert [(n, w) for n, w in cost.by_limit] == [(n, c * unit) for n, c in entry["byLimit"]]


def test_binance_pools_are_the_published_ones() -> None:
    pools = {p.name: (p.limit, p.interval_s) for p in load_profile("binance").rate_limit.pools}
    assert pools == {
        "request_weight": (6000, 60),
        "raw_requests": (61000, 300),
        "orders_10s": (100, 10),
        "orders_1d": (200000, 86400),
    }


def test_kucoin_and_bitvavo_pools_are_the_published_ones() -> None:
    kucoin = {p.name: (p.limit, p.interval_s) for p in load_profile("kucoin").rate_limit.pools}
    assert kucoin == {"spot": (4000, 30), "management": (2000, 30), "public": (2000, 30)}
    bitvavo = load_profile("bitvavo").rate_limit.pools[0]
    assert (bitvavo.name, bitvavo.limit, bitvavo.interval_s) == ("weight", 1000, 60)


def test_weight_for_limit_and_symbol() -> None:
    binance = load_profile("binance").rate_limit.endpoints
    assert binance["order_book"].weight_for() == 5
    assert binance["order_book"].weight_for(limit=500) == 25
    assert binance["order_book"].weight_for(limit=5000) == 250
    assert binance["order_book"].weight_for(limit=9999) == 250
    assert binance["open_orders"].weight_for(has_symbol=False) == 80
    assert binance["open_orders"].weight_for() == 6


# -- client order ids and clocks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "param", "lookup_param"),
    [
        ("binance", "newClientOrderId", "origClientOrderId"),
        ("kucoin", "clientOid", "clientOid"),
        ("bitvavo", "clientOrderId", "clientOrderId"),
    ],
)
def test_client_order_id_params(exchange: str, param: str, lookup_param: str) -> None:
    spec = load_profile(exchange).client_order_id
    assert spec.param == param
    call = spec.lookup_call("abc", "BTC/USDT")
    assert call == ("fetch_order", (None, "BTC/USDT"), {lookup_param: "abc"})
    assert spec.cancel_call("abc", "BTC/USDT").method == "cancel_order"


def test_clock_resync_matches_what_ccxt_can_do() -> None:
    assert load_profile("binance").clock.resync == "load_time_difference"
    assert load_profile("kucoin").clock.window_ms == 5000
    bitvavo = load_profile("bitvavo").clock
    assert bitvavo.resync == "widen_window" and bitvavo.max_window_ms == 60000
    # ccxt's bitvavo signs with milliseconds() and reads options['recvWindow'] as the access window
    exchange = ccxt.bitvavo({"apiKey": "key", "secret": "secret"})
    exchange.options["timeDifference"] = 999_999
    exchange.options[bitvavo.window_option] = 60000
    signed = exchange.sign("order", ["private"], "GET", {"market": "BTC-EUR"})
    stamp = int(signed["headers"]["BITVAVO-ACCESS-TIMESTAMP"])
    assert abs(stamp - exchange.milliseconds()) < 60_000  # timeDifference ignored
    assert signed["headers"]["BITVAVO-ACCESS-WINDOW"] == "60000"


@pytest.mark.parametrize(
    ("exchange", "code", "message", "status", "expected"),
    [
        ("binance", "-1003", "IP banned until 1700000000000.", 418, "rate_limit"),
        ("binance", "-1021", "Timestamp for this request is outside of the recvWindow.", 400, "clock_skew"),
        ("binance", "-2010", "Duplicate order sent.", 400, "permanent"),
        ("kucoin", "200002", "Order cancel for this pair suspended", 200, "transient"),
        ("bitvavo", "110", "Rate limit exceeded.", 429, "rate_limit"),
        ("bitvavo", "304", "Request was not received within acceptable window.", 403, "clock_skew"),
    ],
)
def test_error_kind_speaks_hardened_errors(
    exchange: str, code: str, message: str, status: int, expected: str
) -> None:
    rule = load_profile(exchange).classify_error(code, message, status)
    assert rule is not None and rule.error_kind is ErrorKind(expected)


def test_kucoin_cloudflare_page_is_a_30_second_ban() -> None:
    rule = load_profile("kucoin").classify_text("error code: 1015", 429)
    assert rule is not None and (rule.kind, rule.backoff_s) == (K.BAN, 30.0)
