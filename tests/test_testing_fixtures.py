"""The pytest fixtures hardened ships for bots' own tests (``hardened.testing``)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_each_test_gets_the_calm_simulator_whatever_an_earlier_one_set(pytester: pytest.Pytester) -> None:
    """The simulator is shared by a module's tests, its fault profile is not: a storm one test
    sets must not reach the next test, which was promised a calm exchange."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        pytest_plugins = ["hardened.testing"]

        def test_first_sets_a_storm(exchange_sim, make_exchange):
            make_exchange("binance")
            exchange_sim.set_profile("storm")
            assert exchange_sim.profile.name == "storm"

        def test_second_gets_calm(exchange_sim, make_exchange):
            assert exchange_sim.profile.name == "calm"
            assert make_exchange("binance").fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
