"""The exchange simulator: a local HTTP server speaking Binance, KuCoin and Bitvavo REST with faults.

Typical use::

    from hardened.sim import Simulator
    with Simulator(exchange="binance", profile="flaky", seed=7) as sim:
        ex = sim.attach(ccxt.binance())
        ex.fetch_ticker("BTC/USDT")
        sim.ground_truth_counts()

Which unified ccxt methods each exchange's simulator serves, and why the others are left out
(derivatives, wallet, conditional orders, batch endpoints), is listed and checked against ccxt's
``has`` in ``tests/test_sim_unified.py``.
"""

from hardened.sim.dialect import (
    Dialect,
    DialectError,
    Route,
    SimRequest,
    SimResponse,
    dialect_class,
    register_dialect,
)
from hardened.sim.faults import FaultEngine, FaultRule, Profile, ProfileError, builtin_profiles, load_profile
from hardened.sim.server import Simulator, attach_url, build_parser, main_argv, run_server
from hardened.sim.venue import Order, Venue, VenueError

__all__ = [
    "Dialect",
    "DialectError",
    "FaultEngine",
    "FaultRule",
    "Order",
    "Profile",
    "ProfileError",
    "Route",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "Venue",
    "VenueError",
    "attach_url",
    "build_parser",
    "builtin_profiles",
    "dialect_class",
    "load_profile",
    "main_argv",
    "register_dialect",
    "run_server",
]
