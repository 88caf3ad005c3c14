"""Rate-limit budget: pacing before the exchange says 429, bans, headers of all three exchanges."""

from __future__ import annotations

import threading
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from hardened.adapters import load_profile
from hardened.ratelimit import RETRY_AFTER_MAX_S, RateLimitBudget, parse_retry_after

# A fixed wall-clock instant, 10 s into a minute: Binance windows are aligned to the minute.
T0 = 1_700_000_010.0
MINUTE_END = 1_700_000_040.0  # 1_700_000_040 is a multiple of 60


def budget(exchange: str, **kwargs: float) -> RateLimitBudget:
    return RateLimitBudget(load_profile(exchange), **kwargs)


# -- pacing --------------------------------------------------------------------------------------------


def _spacing_at(used: int) -> float:
    """The wait imposed on the second of two back-to-back tickers once Binance reports ``used`` weight."""
    b = budget("binance")
    b.observe("ticker", 200, {"x-mbx-used-weight-1m": str(used)}, T0)
    b.delay_before("ticker", T0)
    return b.delay_before("ticker", T0)


def test_no_wait_while_the_budget_is_mostly_unused() -> None:
    b = budget("binance")
    assert b.delay_before("ticker", T0) == 0.0
    b.observe("ticker", 200, {"x-mbx-used-weight-1m": "300"}, T0)
    assert b.delay_before("ticker", T0) == 0.0
    assert _spacing_at(2000) == 0.0


def test_pacing_grows_as_the_published_usage_nears_the_limit() -> None:
    spacings = [_spacing_at(used) for used in (3000, 4000, 5000, 5500, 5650)]
    assert all(s > 0 for s in spacings)
    assert spacings == sorted(spacings) and len(set(spacings)) == len(spacings)
    # the remaining budget is spread over the time to the reset: weight 2 of (5700 - used) left, 30 s to go
    assert spacings[0] == pytest.approx(30 * 2 / (5700 - 3000), abs=1e-6)


def test_a_spent_pool_waits_for_its_reset() -> None:
    b = budget("binance")
    b.observe("ticker", 200, {"x-mbx-used-weight-1m": "5699"}, T0)
    assert b.delay_before("ticker", T0) == pytest.approx(MINUTE_END - T0)
    assert b.delay_before("time", T0 + 1) == pytest.approx(MINUTE_END - T0 - 1)  # nobody jumps the queue
    assert b.delay_before("ticker", MINUTE_END + 0.5) == 0.0  # a new window


def test_headroom_keeps_a_margin_under_the_published_limit() -> None:
    default = budget("binance")  # 95 % of 6000 = 5700 usable
    default.observe("ticker", 200, {"x-mbx-used-weight-1m": "5699"}, T0)
    assert default.delay_before("ticker", T0) == pytest.approx(MINUTE_END - T0)
    full = budget("binance", headroom=1.0)
    full.observe("ticker", 200, {"x-mbx-used-weight-1m": "5699"}, T0)
    assert full.delay_before("ticker", T0) < 1.0


def test_local_accounting_without_headers() -> None:
    b = budget("bitvavo")
    for _ in range(10):
        b.delay_before("balance", T0)  # weight 5 each
    assert b.usage(T0)["weight"].used == 50
    b.observe("balance", 200, None, T0)
    assert b.usage(T0)["weight"].used == 50  # no header: the local count stands
    waits = [b.delay_before("trades", T0) for _ in range(200)]  # 1000 budget, 950 usable
    assert waits[0] == 0.0 and max(waits) > 0.0
    assert b.usage(T0 + max(waits) - 0.001)["weight"].used <= 950


def test_weight_override_and_unknown_endpoints() -> None:
    b = budget("binance")
    b.delay_before("order_book", T0, weight=b.weight_of("order_book", limit=1000))
    assert b.usage(T0)["request_weight"].used == 50
    b.delay_before("fetch_deposits", T0)  # not in the profile: the default weight
    assert b.usage(T0)["request_weight"].used == 51
    assert b.usage(T0)["raw_requests"].used == 2  # every request counts once there
    assert b.weight_of("open_orders", has_symbol=False) == 80


@pytest.mark.parametrize(
    ("exchange", "endpoint", "weight"),
    [("binance", "my_trades", 20), ("binance", "closed_orders", 20), ("kucoin", "my_trades", 10)],
)
def test_order_and_trade_history_calls_weigh_what_the_exchange_charges(
    exchange: str, endpoint: str, weight: float
) -> None:
    """Not the default weight of 1: a burst of history calls must be paced before the exchange says 429."""
    b = budget(exchange)
    assert b.weight_of(endpoint) == weight
    b.delay_before(endpoint, T0)
    pool = load_profile(exchange).rate_limit.default_pool
    assert pool is not None and b.usage(T0)[pool].used == weight


def test_the_order_alias_of_hardened_endpoints_is_fetch_order() -> None:
    b = budget("binance")
    assert b.weight_of("order") == b.weight_of("fetch_order") == 4
    b.delay_before("order", T0)
    assert b.usage(T0)["request_weight"].used == 4


def test_orders_count_in_their_own_pools() -> None:
    b = budget("binance")
    b.delay_before("create_order", T0)
    usage = b.usage(T0)
    assert (usage["orders_10s"].used, usage["orders_1d"].used, usage["request_weight"].used) == (1, 1, 1)
    b.observe("create_order", 200, {"x-mbx-order-count-10s": "99", "x-mbx-order-count-1d": "1200"}, T0)
    assert b.delay_before("create_order", T0) == pytest.approx(10.0)  # T0 is on a 10 s boundary
    assert b.delay_before("ticker", T0) == 0.0  # market data is not held back by the order count


# -- bans and refusals -----------------------------------------------------------------------------------


def test_418_with_retry_after_blocks_everything_until_the_ban_ends() -> None:
    b = budget("binance")
    b.observe("ticker", 418, {"Retry-After": "120"}, T0, body='{"code":-1003,"msg":"Way too much weight."}')
    assert b.banned_until == pytest.approx(T0 + 120)
    assert b.delay_before("balance", T0 + 20) == pytest.approx(100)
    assert b.delay_before("ticker", T0 + 121) == 0.0


def test_binance_ban_end_read_from_the_message_without_retry_after() -> None:
    b = budget("binance")
    end_ms = int((T0 + 300) * 1000)
    body = f'{{"code":-1003,"msg":"Way too much request weight used; IP banned until {end_ms}."}}'
    b.observe("ticker", 418, {}, T0, body=body)
    assert b.banned_until == pytest.approx(T0 + 300)
    assert b.delay_before("ticker", T0) == pytest.approx(300)


def test_429_with_retry_after_holds_the_pool() -> None:
    b = budget("binance")
    body = '{"code":-1003,"msg":"Too much request weight used; current limit is 6000 per 1 MINUTE."}'
    b.observe("ticker", 429, {"retry-after": "7"}, T0, body=body)
    assert b.banned_until == 0.0  # a rate limit, not a ban
    assert b.delay_before("tickers", T0) == pytest.approx(7)
    assert b.delay_before("ticker", T0 + 8) == 0.0


def test_order_count_429_without_retry_after_blocks_orders_until_the_window_resets() -> None:
    b = budget("binance")
    body = '{"code":-1015,"msg":"Too many new orders; current limit is 100 orders per TEN_SECONDS."}'
    b.observe("create_order", 429, {}, T0 + 3, body=body)
    assert b.delay_before("create_order", T0 + 3) == pytest.approx(7)
    assert b.delay_before("ticker", T0 + 3) == 0.0


def test_binance_daily_order_limit_429_blocks_orders_until_the_day_resets() -> None:
    """-1015 names its limiter: the daily one must not be retried when the 10 s window resets."""
    b = budget("binance")
    body = '{"code":-1015,"msg":"Too many new orders; current limit is 200000 orders per 1 DAY."}'
    b.observe("create_order", 429, {}, T0 + 3, body=body)
    day_end = (T0 // 86_400 + 1) * 86_400
    assert b.delay_before("create_order", T0 + 3) == pytest.approx(day_end - T0 - 3)
    assert b.delay_before("ticker", T0 + 3) == 0.0


def test_bitvavo_105_ban_until_the_time_in_the_message() -> None:
    b = budget("bitvavo")
    end_ms = int((T0 + 90) * 1000)
    body = f'{{"errorCode":105,"error":"Your IP or API key has been banned. The ban expires at {end_ms}."}}'
    b.observe("ticker", 429, {}, T0, body=body)
    assert b.delay_before("ticker", T0) == pytest.approx(90)


def test_a_ban_end_stamped_past_the_longest_ban_is_cut_to_it() -> None:
    """A garbled stamp (message or AllowAt header) must not hold the client for centuries."""
    b = budget("binance")
    body = '{"code":-1003,"msg":"Way too much request weight used; IP banned until 9999999999999."}'
    b.observe("ticker", 418, {}, T0, body=body)
    assert b.banned_until == pytest.approx(T0 + RETRY_AFTER_MAX_S)
    v = budget("bitvavo")
    headers = {"Bitvavo-Ratelimit-AllowAt": "99999999999999"}
    v.observe("ticker", 429, headers, T0, body='{"errorCode":103,"error":"You have been rate limited."}')
    assert v.banned_until == pytest.approx(T0 + RETRY_AFTER_MAX_S)


def test_bitvavo_110_blocks_for_a_minute_after_the_window() -> None:
    b = budget("bitvavo")
    reset_ms = int((T0 + 45) * 1000)
    headers = {"bitvavo-ratelimit-remaining": "0", "bitvavo-ratelimit-resetat": str(reset_ms)}
    b.observe("ticker", 429, headers, T0, body='{"errorCode":110,"error":"Rate limit exceeded."}')
    assert b.banned_until == pytest.approx(T0 + 45 + 60)  # exceeded at 12:00:15 -> back at 12:02:00


def test_kucoin_429000_waits_for_the_pool_reset_in_the_headers() -> None:
    b = budget("kucoin")
    headers = {"gw-ratelimit-limit": "4000", "gw-ratelimit-remaining": "0", "gw-ratelimit-reset": "12500"}
    b.observe("create_order", 429, headers, T0, body='{"code":"429000","msg":"Too Many Requests"}')
    assert b.delay_before("cancel_order", T0) == pytest.approx(12.5)
    assert b.delay_before("ticker", T0) == 0.0  # the public pool is another pool


def test_errors_that_are_not_rate_limits_leave_the_budget_alone() -> None:
    b = budget("binance")
    b.observe("create_order", 400, {}, T0, body='{"code":-2010,"msg":"Duplicate order sent."}')
    b.observe("ticker", 502, {}, T0, body="<html>Bad Gateway</html>")
    assert b.banned_until == 0.0
    assert b.delay_before("create_order", T0) == 0.0


def test_a_retry_after_that_is_neither_seconds_nor_a_date_is_ignored() -> None:
    b = budget("okx")  # generic profile: no pools, 429 -> 1 s
    b.observe("ticker", 429, {"Retry-After": "1, 2"}, T0)  # two headers merged by requests
    assert b.delay_before("ticker", T0) == pytest.approx(1.0)
    assert b.delay_before("ticker", T0 + 1.0) == 0.0


def test_a_retry_after_http_date_holds_the_pool_until_that_date() -> None:
    """RFC 9110 allows an HTTP-date: read against the budget's clock (``now``), not ignored."""
    b = budget("binance")
    b.observe("ticker", 429, {"Retry-After": formatdate(T0 + 300, usegmt=True)}, T0)
    assert b.delay_before("ticker", T0 + 61) == pytest.approx(239)
    assert b.delay_before("ticker", T0 + 301) == 0.0


def test_a_retry_after_date_is_the_exchanges_clock() -> None:
    b = budget("binance")
    b.clock_offset_s = 5.0  # the exchange's clock runs 5 s ahead of ours
    b.observe("ticker", 429, {"Retry-After": formatdate(T0 + 5 + 120, usegmt=True)}, T0)
    assert b.delay_before("ticker", T0 + 20) == pytest.approx(100)


T_HTTP = formatdate(T0 + 90, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0.5 ", 0.5),
        (b"7", 7.0),
        (30, 30.0),
        (T_HTTP, 90.0),
        (T_HTTP.replace("GMT", "-0000"), 90.0),  # no zone (a naive datetime): UTC
        (T_HTTP.replace(" GMT", ""), 90.0),
        (formatdate(T0 - 30, usegmt=True), 0.0),  # a date already past: go now
        ("-5", 0.0),
        ("1e12", RETRY_AFTER_MAX_S),  # absurd: held at most as long as the longest real ban
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_MAX_S),
        ("1, 2", None),  # requests' merge of two Retry-After headers
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        ("Thu, 03 Dec 2026 25:19:26 GMT", None),  # hour 25
        ("Thu, 03 Dec 2026 11:19:26 +2400", None),  # offset out of range
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),  # year out of range
    ],
)
def test_parse_retry_after(value: object, seconds: float | None) -> None:
    assert parse_retry_after(value, T0) == (None if seconds is None else pytest.approx(seconds))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.floats(), st.integers()))
def test_parse_retry_after_never_raises(value: object) -> None:
    result = parse_retry_after(value, T0)
    assert result is None or 0.0 <= result <= RETRY_AFTER_MAX_S


# -- headers of all three exchanges ----------------------------------------------------------------------


def test_binance_headers() -> None:
    b = budget("binance")
    b.observe("ticker", 200, {"x-mbx-used-weight-1m": "1234"}, T0)
    usage = b.usage(T0)["request_weight"]
    assert (usage.used, usage.limit, usage.reset_in) == (1234, 6000, pytest.approx(30.0))


def test_kucoin_headers_set_limit_remaining_and_reset_of_the_endpoint_pool() -> None:
    b = budget("kucoin")
    headers = {"gw-ratelimit-limit": "6000", "gw-ratelimit-remaining": "5000", "gw-ratelimit-reset": "20000"}
    b.observe("balance", 200, headers, T0)  # balance draws on the management pool
    usage = b.usage(T0)
    assert usage["management"] == (1000, 6000, pytest.approx(20.0))
    assert usage["spot"].used == 0 and usage["spot"].limit == 4000


def test_bitvavo_headers() -> None:
    b = budget("bitvavo")
    reset_ms = int((T0 + 42) * 1000)
    headers = {
        "bitvavo-ratelimit-limit": "2000",
        "bitvavo-ratelimit-remaining": "1500",
        "bitvavo-ratelimit-resetat": str(reset_ms),
    }
    b.observe("order_book", 200, headers, T0)
    assert b.usage(T0)["weight"] == (500, 2000, pytest.approx(42.0))


def test_bitvavo_resetat_uses_the_clock_offset() -> None:
    b = budget("bitvavo")
    b.clock_offset_s = 2.0  # the exchange clock runs 2 s ahead of ours
    reset_ms = int((T0 + 42) * 1000)
    b.observe("order_book", 200, {"bitvavo-ratelimit-resetat": str(reset_ms)}, T0)
    assert b.usage(T0)["weight"].reset_in == pytest.approx(40.0)


def test_legacy_bitvavo_allow_at_header() -> None:
    b = budget("bitvavo")
    b.observe("ticker", 429, {"Bitvavo-Ratelimit-AllowAt": str(int((T0 + 30) * 1000))}, T0)
    assert b.delay_before("ticker", T0) == pytest.approx(30)


@pytest.mark.parametrize(
    "headers",
    [
        CaseInsensitiveDict({"X-MBX-USED-WEIGHT-1M": "777"}),
        {"X-MBX-USED-WEIGHT-1M": "777"},
        {"x-mbx-used-weight-1m": "777"},
        {"X-Mbx-Used-Weight-1M": "777"},
    ],
)
def test_header_spelling_does_not_matter(headers: dict[str, str]) -> None:
    b = budget("binance")
    b.observe("ticker", 200, headers, T0)
    assert b.usage(T0)["request_weight"].used == 777


def test_header_usage_adds_calls_still_in_flight() -> None:
    b = budget("binance")
    b.delay_before("ticker", T0)  # in flight, answered below
    b.delay_before("balance", T0)  # still in flight when the ticker's answer arrives
    b.observe("ticker", 200, {"x-mbx-used-weight-1m": "100"}, T0)
    assert b.usage(T0)["request_weight"].used == 100 + 20


# -- concurrency ------------------------------------------------------------------------------------------


def test_concurrent_bookings_are_all_counted() -> None:
    b = budget("kucoin")
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(200):
            b.delay_before("open_orders", T0)  # spot pool, weight 2

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert b.usage(T0)["spot"].used == 8 * 200 * 2


def test_concurrent_callers_are_spread_out_not_bunched() -> None:
    b = budget("bitvavo", pace_above=0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            wait = b.delay_before("ticker", T0)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(waits)) == len(waits)  # every caller got its own slot


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="headroom"):
        budget("binance", headroom=0.0)
    with pytest.raises(ValueError, match="pace_above"):
        budget("binance", pace_above=1.5)
