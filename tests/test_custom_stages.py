"""Users add their own stage to the default pipeline through public parts only."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from hardened import HardenedClient
from hardened.pipeline import CallContext, Stage, insert_stage


class CountingStage(Stage):
    """Counts calls and attempts (what an audit or a custom throttle would hook)."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.attempts = 0

    def on_call(self, ctx: CallContext) -> None:
        self.calls.append(ctx.endpoint.name)
        return None

    def on_attempt(self, ctx: CallContext) -> float | None:
        self.attempts += 1
        return None


def test_a_custom_stage_goes_into_the_default_pipeline(binance: ccxt.binance) -> None:
    counting = CountingStage()
    ex = HardenedClient(binance, stages=lambda default: insert_stage(default, counting, before="breaker"))
    try:
        names = ex.pipeline.names()
        assert names.index("counting") == names.index("breaker") - 1
        assert names[0] == "record" and "validate" in names  # the defaults are all still there
        ex.fetch_ticker("BTC/USDT")
        ex.fetch_ticker("BTC/USDT")  # a cache hit: answered by the cache, before the new stage
        stats = ex.stats()["endpoints"]["ticker"]
    finally:
        ex.close()
    assert counting.calls == ["ticker"] and counting.attempts == 1
    assert stats["calls"] == 2 and stats["cache_hits"] == 1  # the default record and cache stages work


def test_the_default_stages_are_handed_over_in_order(binance: ccxt.binance) -> None:
    seen: list[list[str]] = []

    def build(default: list[Stage]) -> list[Stage]:
        seen.append([s.name for s in default])
        return [*default, CountingStage()]

    ex = HardenedClient(binance, stages=build)
    try:
        assert ex.pipeline.names() == [*seen[0], "counting"]
        assert seen[0][:4] == ["record", "gate", "cache", "breaker"]  # outermost first
    finally:
        ex.close()


def test_insert_stage_places_before_or_after_a_named_stage() -> None:
    a, b, c = CountingStage(), CountingStage(), CountingStage()
    a.name, b.name, c.name = "a", "b", "c"
    assert [s.name for s in insert_stage([a, b], c, after="a")] == ["a", "c", "b"]
    assert [s.name for s in insert_stage([a, b], c, before="a")] == ["c", "a", "b"]
    assert [s.name for s in insert_stage([a, b], c)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no stage named 'nope'; stages: a, b"):
        insert_stage([a, b], c, before="nope")
    with pytest.raises(ValueError, match="either before= or after="):
        insert_stage([a, b], c, before="a", after="b")


def test_a_stage_list_with_something_else_in_it_is_refused(binance: ccxt.binance) -> None:
    def not_a_stage(_default: list[Stage]) -> list[Any]:
        return ["validate"]

    with pytest.raises(TypeError, match=r"stages must be hardened\.pipeline\.Stage instances, got str"):
        HardenedClient(binance, stages=not_a_stage)
