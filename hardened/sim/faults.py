"""Fault profiles: what goes wrong, where, when and how often, declared as data and seeded.

A profile (TOML, JSON or a dict, validated by pydantic) lists fault rules, named regimes (each a
set of rules) and an optional schedule that switches regimes over (compressed) time and by hour of
day. :class:`FaultEngine` decides, per request, which rules fire; decisions hash
``(seed, exchange, endpoint, n-th request to that endpoint, rule)``, so the same seed gives the
same decisions whatever the interleaving of endpoints. :class:`BadData` corrupts market data.

Example (TOML)::

    name = "flaky"
    [[faults]]
    kind = "http_5xx"
    endpoints = ["ticker", "ohlcv"]
    probability = 0.03
    status = [502, 503]
    [[faults]]
    kind = "latency"
    probability = 0.2
    latency = { distribution = "lognormal", median = 0.05, sigma = 0.8 }

    [regimes.outage]
    faults = [{ kind = "http_5xx", status = [503] }]
    [schedule]
    time_compression = 60          # 1 real second = 60 sim seconds
    periods = [{ regime = "calm", duration = 3000 }, { regime = "outage", duration = 600 }]
    hours = [{ hours = [13, 14], regime = "degraded" }]

Rules may also be narrowed to one market or one request size: ``symbols`` (unified or exchange
ids, compared without ``/`` and ``-``: ``BTC/USDT`` matches ``BTCUSDT`` and ``BTC-USDT``) and
``min_limit`` (the request's ``limit`` at least this), so a profile can break one market or large
requests while the rest of the endpoint is healthy, as real exchanges do.

Rule kinds and their fields: ``latency`` (``latency``), ``timeout`` (``hold``), ``reset``,
``http_5xx`` (``status``), ``rate_limit_429`` and ``ban_418`` (``retry_after``),
``exchange_error`` (``error``: rate_limit | clock_skew | maintenance), ``html_200``,
``malformed_json``, ``bad_data`` (``variants``), ``accept_then_drop``. Every rule takes
``endpoints`` (default ``["*"]``), ``exchanges`` (default ``["*"]``), ``probability`` (default 1)
and ``window`` (``{start, end}`` in sim seconds since the simulator started).
"""

from __future__ import annotations

import itertools
import json
import math
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hardened.sim.dialect import ENDPOINTS, FAULT_ERROR_KINDS
from hardened.sim.venue import Candle, OrderBook, Ticker, Trade

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

if TYPE_CHECKING:
    from hardened.sim.dialect import SimRequest

__all__ = [
    "BAD_DATA_VARIANTS",
    "FAULT_KINDS",
    "PROFILES_DIR",
    "BadData",
    "Decision",
    "FaultEngine",
    "FaultRule",
    "Profile",
    "ProfileError",
    "builtin_profiles",
    "load_profile",
]

PROFILES_DIR = Path(__file__).with_name("profiles")

FAULT_KINDS = (
    "latency",
    "timeout",
    "reset",
    "http_5xx",
    "rate_limit_429",
    "ban_418",
    "exchange_error",
    "html_200",
    "malformed_json",
    "bad_data",
    "accept_then_drop",
)
BAD_DATA_VARIANTS = (
    "high_low",  # candles / ticker with high < low
    "gaps",  # candles or trades missing in the middle
    "duplicates",  # repeated candles, trades or book levels
    "out_of_order",  # candles or trades not ascending, book sides unsorted
    "stale",  # timestamps minutes behind the exchange clock
    "crossed_book",  # best bid above best ask (book and ticker)
    "zero_price",  # a price of 0
    "negative_price",  # a negative price
    "null_ticker",  # a ticker whose every field is null
)

# Fields each kind may set (besides the common ones): anything else is a profile error.
_KIND_FIELDS: dict[str, set[str]] = {
    "latency": {"latency"},
    "timeout": {"hold"},
    "reset": set(),
    "http_5xx": {"status"},
    "rate_limit_429": {"retry_after"},
    "ban_418": {"retry_after"},
    "exchange_error": {"error"},
    "html_200": set(),
    "malformed_json": set(),
    "bad_data": {"variants"},
    "accept_then_drop": set(),
}
_COMMON_FIELDS = {"kind", "name", "endpoints", "exchanges", "probability", "window", "symbols", "min_limit"}
_ACTION_ORDER = {kind: i for i, kind in enumerate(FAULT_KINDS)}


class ProfileError(ValueError):
    """A fault profile is invalid; the message names the source, the field path and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Model):
    """Added delay in seconds: ``fixed`` (seconds), ``uniform`` (low, high), ``lognormal``
    (median, sigma)."""

    distribution: Literal["fixed", "uniform", "lognormal"] = "fixed"
    seconds: float | None = Field(default=None, ge=0)
    low: float | None = Field(default=None, ge=0)
    high: float | None = Field(default=None, ge=0)
    median: float | None = Field(default=None, gt=0)
    sigma: float | None = Field(default=None, ge=0)
    max: float = Field(default=60.0, gt=0, description="cap on any single delay")

    @model_validator(mode="after")
    def _params(self) -> Latency:
        need = {"fixed": ("seconds",), "uniform": ("low", "high"), "lognormal": ("median", "sigma")}
        missing = [name for name in need[self.distribution] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"distribution {self.distribution!r} needs {', '.join(missing)}")
        if self.distribution == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("low must not exceed high")
        return self

    def sample(self, u: float, v: float) -> float:
        """A delay from two independent uniforms in [0, 1)."""
        if self.distribution == "fixed":
            value = self.seconds or 0.0
        elif self.distribution == "uniform":
            value = self.low + (self.high - self.low) * u  # type: ignore[operator]
        else:  # lognormal via Box-Muller
            z = math.sqrt(-2.0 * math.log(max(u, 1e-12))) * math.cos(2 * math.pi * v)
            value = self.median * math.exp(self.sigma * z)  # type: ignore[operator]
        return min(value, self.max)


class Window(_Model):
    """Active from ``start`` to ``end`` sim seconds after the simulator started."""

    start: float = Field(default=0.0, ge=0)
    end: float = Field(default=math.inf, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class FaultRule(_Model):
    """One fault: its kind, where it applies, how often, and the kind's own parameters."""

    kind: Literal[
        "latency",
        "timeout",
        "reset",
        "http_5xx",
        "rate_limit_429",
        "ban_418",
        "exchange_error",
        "html_200",
        "malformed_json",
        "bad_data",
        "accept_then_drop",
    ]
    name: str | None = None
    endpoints: list[str] = Field(default_factory=lambda: ["*"])
    exchanges: list[str] = Field(default_factory=lambda: ["*"])
    probability: float = Field(default=1.0, ge=0, le=1)
    window: Window | None = None
    symbols: list[str] = Field(default_factory=lambda: ["*"])
    min_limit: int | None = Field(default=None, ge=1)
    latency: Latency | None = None
    hold: float = Field(default=30.0, gt=0, le=3600)
    status: list[int] = Field(default_factory=lambda: [500, 502, 503, 504])
    retry_after: float = Field(default=1.0, ge=0)
    error: Literal["rate_limit", "clock_skew", "maintenance"] | None = None
    variants: list[
        Literal[
            "high_low",
            "gaps",
            "duplicates",
            "out_of_order",
            "stale",
            "crossed_book",
            "zero_price",
            "negative_price",
            "null_ticker",
        ]
    ] = Field(default_factory=lambda: list(BAD_DATA_VARIANTS))

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and name not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {name!r}; use '*' or one of {', '.join(ENDPOINTS)}")
        if not value:
            raise ValueError("list at least one endpoint (or '*')")
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one symbol (or '*')")
        return [v if v == "*" else symbol_word(v) for v in value]

    @field_validator("status")
    @classmethod
    def _status(cls, value: list[int]) -> list[int]:
        if not value or any(not 500 <= s <= 599 for s in value):
            raise ValueError("give one or more HTTP statuses between 500 and 599")
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one bad-data variant")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> FaultRule:
        allowed = _COMMON_FIELDS | _KIND_FIELDS[self.kind]
        extra = sorted(set(self.model_fields_set) - allowed)
        if extra:
            raise ValueError(f"field(s) {', '.join(extra)} do not apply to kind {self.kind!r}")
        if self.kind == "latency" and self.latency is None:
            raise ValueError("kind 'latency' needs a 'latency' table (distribution and its parameters)")
        if self.kind == "exchange_error" and self.error is None:
            raise ValueError(f"kind 'exchange_error' needs 'error', one of {', '.join(FAULT_ERROR_KINDS)}")
        return self


class Regime(_Model):
    """A named set of fault rules (calm, degraded, outage, ban...)."""

    description: str = ""
    faults: list[FaultRule] = Field(default_factory=list)


class Period(_Model):
    """One stretch of the cyclic timeline: ``regime`` for ``duration`` sim seconds."""

    regime: str
    duration: float = Field(gt=0)


class HourRule(_Model):
    """``regime`` is active during these UTC hours of the (sim) day."""

    hours: list[int]
    regime: str

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 <= h <= 23 for h in value):
            raise ValueError("hours are integers from 0 to 23")
        return value


class Schedule(_Model):
    """Regimes over time: a repeating list of periods and/or hour-of-day rules.

    ``time_compression`` is sim seconds per real second (60: an hour of weather per minute).
    ``start_hour`` is the sim clock's UTC hour at start (default: the real UTC time)."""

    time_compression: float = Field(default=1.0, gt=0)
    start_hour: float | None = Field(default=None, ge=0, lt=24)
    periods: list[Period] = Field(default_factory=list)
    hours: list[HourRule] = Field(default_factory=list)


class Profile(_Model):
    """A fault profile. Active rules at a moment: ``faults`` + the current period's regime +
    the current hour's regime. ``enforce_rate_limits`` makes dialects refuse requests over the
    exchange's real request-weight budget."""

    name: str = "custom"
    description: str = ""
    seed: int | None = None
    enforce_rate_limits: bool = False
    faults: list[FaultRule] = Field(default_factory=list)
    regimes: dict[str, Regime] = Field(default_factory=dict)
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _regimes_exist(self) -> Profile:
        if self.schedule is not None:
            for i, period in enumerate(self.schedule.periods):
                if period.regime not in self.regimes and period.regime != "calm":
                    raise ValueError(
                        f"schedule.periods[{i}]: regime {period.regime!r} is not defined in [regimes]"
                    )
            for i, rule in enumerate(self.schedule.hours):
                if rule.regime not in self.regimes and rule.regime != "calm":
                    raise ValueError(
                        f"schedule.hours[{i}]: regime {rule.regime!r} is not defined in [regimes]"
                    )
        return self

    @property
    def is_calm(self) -> bool:
        """True when no rule can ever fire (the server then skips fault decisions entirely)."""
        return not self.faults and not any(r.faults for r in self.regimes.values())


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "list[", "dict[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _validate(data: Any, source: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            loc = _format_loc(tuple(err["loc"]))
            lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
        raise ProfileError(f"invalid fault profile {source}:\n" + "\n".join(lines)) from None


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``hardened/sim/profiles``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml")) + sorted(
        p.stem for p in PROFILES_DIR.glob("*.json")
    )


def load_profile(spec: Profile | Mapping[str, Any] | str | Path | None) -> Profile:
    """A :class:`Profile` from a profile, a dict, a built-in name (``"storm"``) or a file path
    (``.toml``/``.json``); None means ``calm``. Raises :class:`ProfileError`."""
    if spec is None:
        return Profile(name="calm")
    if isinstance(spec, Profile):
        return spec
    if isinstance(spec, Mapping):
        return _validate(dict(spec), "(dict)")
    if not isinstance(spec, str | Path):
        raise ProfileError(
            f"a fault profile is a built-in name, a file path, a dict or a Profile, not {type(spec).__name__}"
        )
    path = Path(spec)
    if not path.suffix and not path.is_file():  # a folder named "storm" does not hide the built-in
        for suffix in (".toml", ".json"):
            candidate = PROFILES_DIR / f"{spec}{suffix}"
            if candidate.exists():
                path = candidate
                break
        else:
            known = ", ".join(builtin_profiles())
            raise ProfileError(f"unknown fault profile {str(spec)!r}: not a file, and not one of {known}")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"cannot read fault profile {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"invalid fault profile {path}: cannot parse: {exc}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return _validate(data, str(path))


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------
def _hash01(*words: int) -> float:
    """A uniform in [0, 1) from integers (splitmix64 chain): stateless and reproducible."""
    x = 0x9E3779B97F4A7C15
    for w in words:
        x = (x ^ (w & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())


def symbol_word(symbol: str) -> str:
    """A market name in one spelling for every dialect: ``BTC/USDT``, ``BTC-USDT`` -> ``BTCUSDT``."""
    return symbol.replace("/", "").replace("-", "").replace("_", "").upper()


def _narrowed(rule: FaultRule, symbol: str | None, limit: int | None) -> bool:
    """Whether a rule narrowed to some symbols or to large requests leaves this request alone."""
    if rule.symbols[0] != "*" and (symbol is None or symbol_word(symbol) not in rule.symbols):
        return True
    return rule.min_limit is not None and (limit is None or limit < rule.min_limit)


@dataclass(slots=True)
class Decision:
    """What happens to one request: added latency and at most one action (a fault kind)."""

    latency: float
    action: str | None
    rule: FaultRule | None
    regime: str | None
    bad_data: BadData | None = None
    key: tuple[int, ...] = ()

    def choose(self, choices: list[Any], salt: int = 7) -> Any:
        """A reproducible choice among ``choices`` for this request (e.g. which 5xx status)."""
        u = _hash01(*self.key, salt)
        return choices[int(u * len(choices)) % len(choices)]

    @property
    def fault(self) -> str | None:
        """The name of the rule that decided the action (its kind when unnamed)."""
        if self.rule is None:
            return "latency" if self.latency else None
        return self.rule.name or self.rule.kind


class FaultEngine:
    """Decides faults for requests under a profile, reproducibly for a seed.

    Args:
        profile: the validated profile.
        seed: decisions are a pure function of (seed, exchange, endpoint, request number, rule).
        started: ``time.monotonic()`` at simulator start (windows and schedules count from it).
        started_wall: ``time.time()`` at that start (hour-of-day regimes count from it; default now).
    """

    __slots__ = ("_counters", "_indexed", "_rule_cache", "profile", "seed", "started", "started_wall")

    def __init__(
        self, profile: Profile, seed: int, started: float | None = None, started_wall: float | None = None
    ) -> None:
        self.profile = profile
        self.seed = int(seed)
        self.started = time.monotonic() if started is None else started
        self.started_wall = time.time() if started_wall is None else started_wall
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}
        self._rule_cache: dict[
            tuple[str, str, str | None, str | None], tuple[tuple[int, FaultRule], ...]
        ] = {}
        self._indexed = self._number_rules(profile)

    @staticmethod
    def _number_rules(profile: Profile) -> dict[int, int]:
        numbers: dict[int, int] = {}
        for i, rule in enumerate(profile.faults):
            numbers[id(rule)] = i
        base = len(profile.faults)
        for name in sorted(profile.regimes):
            for j, rule in enumerate(profile.regimes[name].faults):
                numbers[id(rule)] = base + _crc(name) % 10_000 * 100 + j
        return numbers

    @property
    def active(self) -> bool:
        """False when the profile can never fire a fault."""
        return not self.profile.is_calm

    def sim_elapsed(self, now: float | None = None) -> float:
        """Sim seconds since start (real seconds times the schedule's time compression)."""
        now = time.monotonic() if now is None else now
        schedule = self.profile.schedule
        factor = schedule.time_compression if schedule is not None else 1.0
        return (now - self.started) * factor

    def regimes_at(self, elapsed: float) -> tuple[str | None, str | None]:
        """(period regime, hour regime) active ``elapsed`` sim seconds after start."""
        schedule = self.profile.schedule
        if schedule is None:
            return None, None
        period_regime = None
        if schedule.periods:
            cycle = sum(p.duration for p in schedule.periods)
            pos = elapsed % cycle
            for period in schedule.periods:
                if pos < period.duration:
                    period_regime = period.regime
                    break
                pos -= period.duration
        hour_regime = None
        if schedule.hours:
            if schedule.start_hour is not None:
                hour = int((schedule.start_hour + elapsed / 3600) % 24)
            else:
                hour = time.gmtime(self.started_wall + elapsed).tm_hour
            for rule in schedule.hours:
                if hour in rule.hours:
                    hour_regime = rule.regime
                    break
        return period_regime, hour_regime

    def _rules(
        self, exchange: str, endpoint: str, period: str | None, hour: str | None
    ) -> tuple[tuple[int, FaultRule], ...]:
        key = (exchange, endpoint, period, hour)
        found = self._rule_cache.get(key)
        if found is not None:
            return found
        pool = list(self.profile.faults)
        for regime in (period, hour):
            if regime is not None and regime in self.profile.regimes:
                pool.extend(self.profile.regimes[regime].faults)
        found = tuple(
            (self._indexed[id(rule)], rule)
            for rule in pool
            if ("*" in rule.endpoints or endpoint in rule.endpoints)
            and ("*" in rule.exchanges or exchange in rule.exchanges)
        )
        self._rule_cache[key] = found
        return found

    def decide(
        self,
        exchange: str,
        endpoint: str,
        now: float | None = None,
        symbol: str | None = None,
        limit: int | None = None,
    ) -> Decision | None:
        """The decision for the next request to ``exchange``/``endpoint`` (None: untouched).

        ``symbol`` and ``limit`` are the request's market and size, for rules narrowed by
        ``symbols`` or ``min_limit``; ``now`` is a ``time.monotonic()`` reading (default: now)."""
        counter = self._counters.get((exchange, endpoint))
        if counter is None:
            counter = self._counters.setdefault((exchange, endpoint), itertools.count())
        n = next(counter)
        elapsed = self.sim_elapsed(now)
        period, hour = self.regimes_at(elapsed)
        rules = self._rules(exchange, endpoint, period, hour)
        if not rules:
            return None
        ex_word, ep_word = _crc(exchange), _crc(endpoint)
        latency = 0.0
        chosen: FaultRule | None = None
        chosen_number = 0
        for number, rule in rules:
            window = rule.window
            if window is not None and not (window.start <= elapsed < window.end):
                continue
            if (rule.symbols[0] != "*" or rule.min_limit is not None) and _narrowed(rule, symbol, limit):
                continue
            if rule.probability < 1.0 and _hash01(self.seed, ex_word, ep_word, n, number) >= rule.probability:
                continue
            if rule.kind == "latency":
                u = _hash01(self.seed, ex_word, ep_word, n, number, 1)
                v = _hash01(self.seed, ex_word, ep_word, n, number, 2)
                latency += rule.latency.sample(u, v)  # type: ignore[union-attr]
            elif chosen is None:
                chosen, chosen_number = rule, number
        regime = hour or period
        key = (self.seed, ex_word, ep_word, n, chosen_number)
        if chosen is None:
            return Decision(latency, None, None, regime, None, key) if latency else None
        bad = None
        if chosen.kind == "bad_data":
            bad = BadData(chosen.variants, _hash01(*key, 3))
        return Decision(latency, chosen.kind, chosen, regime, bad, key)


# --------------------------------------------------------------------------------------------
# Bad data
# --------------------------------------------------------------------------------------------
_APPLICABLE: dict[str, tuple[str, ...]] = {
    "candles": ("high_low", "gaps", "duplicates", "out_of_order", "stale", "zero_price", "negative_price"),
    "ticker": ("high_low", "stale", "crossed_book", "zero_price", "negative_price", "null_ticker"),
    "book": ("duplicates", "out_of_order", "stale", "crossed_book", "zero_price", "negative_price"),
    "trades": ("gaps", "duplicates", "out_of_order", "stale", "zero_price", "negative_price"),
}
_STALE_MS = 10 * 60_000


class BadData:
    """Corrupts one market-data object with one of ``variants`` (chosen by ``pick`` in [0, 1))."""

    __slots__ = ("applied", "pick", "variants")

    def __init__(self, variants: list[str], pick: float) -> None:
        self.variants = list(variants)
        self.pick = pick
        self.applied: str | None = None

    def _variant(self, family: str) -> str | None:
        usable = [v for v in self.variants if v in _APPLICABLE[family]]
        if not usable:
            return None
        return usable[int(self.pick * len(usable)) % len(usable)]

    def apply(self, obj: Any, req: SimRequest | None = None) -> Any:
        """``obj`` corrupted (lists and objects are modified in place and returned)."""
        if isinstance(obj, Ticker):
            return self._ticker(obj)
        if isinstance(obj, OrderBook):
            return self._book(obj)
        if isinstance(obj, list) and obj and isinstance(obj[0], Candle):
            return self._candles(obj)
        if isinstance(obj, list) and obj and isinstance(obj[0], Trade):
            return self._trades(obj)
        return obj

    def _candles(self, candles: list[Candle]) -> list[Candle]:
        variant = self._variant("candles")
        n = len(candles)
        mid = n // 2
        changed = n > 0
        if variant == "high_low" and n:
            for c in candles[mid:]:
                c.high, c.low = min(c.low, c.high) * 0.99, max(c.high, c.low) * 1.01
        elif variant == "gaps" and n >= 3:
            del candles[max(1, mid - max(1, n // 10)) : mid + 1]
        elif variant == "duplicates" and n:
            candles.insert(mid, Candle(*(getattr(candles[mid], f) for f in Candle.__slots__)))
        elif variant == "out_of_order" and n >= 2:
            candles[mid - 1 if mid else 0], candles[-1] = candles[-1], candles[mid - 1 if mid else 0]
        elif variant == "stale" and n:
            step = (candles[1].ts - candles[0].ts) if n >= 2 else 60_000
            for c in candles:
                c.ts -= step * 10
                c.close_ts -= step * 10
        elif variant in ("zero_price", "negative_price") and n:
            c = candles[-1]
            c.low = 0.0 if variant == "zero_price" else -abs(c.low)
            c.close = c.low if variant == "zero_price" else c.close
        else:
            changed = False  # too few candles for this variant: the answer goes out unharmed
        self.applied = variant if changed else None
        return candles

    def _ticker(self, t: Ticker) -> Ticker:
        variant = self._variant("ticker")
        changed = True
        if variant == "null_ticker":
            for name in Ticker.__slots__:
                if name != "symbol":
                    setattr(t, name, None)
        elif variant == "high_low" and t.high is not None and t.low is not None:
            t.high, t.low = t.low * 0.99, t.high * 1.01
        elif variant == "stale" and t.ts is not None:
            t.ts -= _STALE_MS
        elif variant == "crossed_book" and t.bid is not None and t.ask is not None:
            t.bid, t.ask = t.ask * 1.001, t.bid
        elif variant == "zero_price":
            t.last = 0.0
            t.bid = 0.0
        elif variant == "negative_price" and t.last is not None:
            t.last = -t.last
        else:
            changed = False  # the fields this variant corrupts are absent
        self.applied = variant if changed else None
        return t

    def _book(self, book: OrderBook) -> OrderBook:
        variant = self._variant("book")
        changed = True
        if variant == "crossed_book" and book.asks and book.bids:
            book.bids.insert(0, [round(book.asks[0][0] * 1.001, 8), book.bids[0][1]])
        elif variant == "duplicates" and book.bids:
            book.bids.insert(1, list(book.bids[0]))
        elif variant == "out_of_order" and len(book.bids) >= 2:
            book.bids.reverse()
            book.asks.reverse()
        elif variant == "stale":
            book.ts -= _STALE_MS
            book.nonce -= _STALE_MS // 1000
        elif variant == "zero_price" and book.bids:
            book.bids[-1][0] = 0.0
        elif variant == "negative_price" and book.bids:
            book.bids[-1][0] = -abs(book.bids[-1][0])
        else:
            changed = False
        self.applied = variant if changed else None
        return book

    def _trades(self, trades: list[Trade]) -> list[Trade]:
        variant = self._variant("trades")
        n = len(trades)
        mid = n // 2
        changed = True
        if variant == "gaps" and n >= 3:
            del trades[max(1, mid - max(1, n // 10)) : mid + 1]
        elif variant == "duplicates" and n:
            t = trades[mid]
            trades.insert(mid, Trade(t.id, t.ts, t.price, t.qty, t.buyer_is_maker))
        elif variant == "out_of_order" and n >= 2:
            trades.reverse()
        elif variant == "stale" and n:
            for t in trades:
                t.ts -= _STALE_MS
        elif variant == "zero_price" and n:
            trades[-1].price = 0.0
        elif variant == "negative_price" and n:
            trades[-1].price = -abs(trades[-1].price)
        else:
            changed = False
        self.applied = variant if changed else None
        return trades
