"""Prometheus metrics, read from the clients' ``stats()`` at scrape time: nothing on the hot path.

``HardenedCollector`` is a custom prometheus-client collector; ``metrics_text()`` renders a
dedicated registry holding it (what the status server's ``/metrics`` serves), and
``register_collector()`` adds it to a registry of your own (the default one if none given).

Series, labelled ``client``, ``exchange`` and ``endpoint``: ``hardened_calls_total``,
``hardened_successes_total``, ``hardened_failures_total{error}``, ``hardened_retries_total``,
``hardened_skips_total``, ``hardened_cache_hits_total``, ``hardened_stale_served_total``,
``hardened_breaker_state{breaker,state}`` (1 for the current state), ``hardened_breaker_trips_total``,
``hardened_breaker_rejected_total``, ``hardened_latency_seconds{quantile}``,
``hardened_quality_score``; per client ``hardened_health_score``; and the process-wide
``hardened_health_overall_score``, ``hardened_tracked_errors_total{error_type}``,
``hardened_tracked_endpoint_errors_total{endpoint}``, ``hardened_tracked_error_rate_per_minute``.

Latency is a gauge per quantile, not a histogram nor a summary: the clients keep the most recent
1,024 latencies per endpoint (a ring) and compute percentiles on demand. A histogram would need
cumulative bucket counters incremented on every call, and a summary needs ``_sum`` and ``_count``
of the same population; either would add work to the hot path, which this module must not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from hardened.telemetry import registry
from hardened.telemetry.health import overall_health
from hardened.telemetry.tracker import ErrorTracker
from hardened.telemetry.tracker import tracker as default_tracker

__all__ = ["HardenedCollector", "metrics_text", "register_collector"]

_LABELS = ["client", "exchange", "endpoint"]
_STATES = ("closed", "open", "half_open")
StatsSource = Callable[[], Mapping[str, dict[str, Any]]]


def registry_stats() -> dict[str, dict[str, Any]]:
    """``stats()`` of every registered client, by name (clients being torn down are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for name, client in registry.clients().items():
        try:
            out[name] = client.stats()
        except Exception:
            continue
    return out


class HardenedCollector(Collector):
    """Reads every registered client's stats, health and the error tracker at each scrape.

    Args:
        stats_source: returns name -> ``stats()``; defaults to the client registry.
        tracker: the error tracker to expose; defaults to ``hardened.tracker``.
        extra: returns more metric families to yield (the status server adds its own).
    """

    def __init__(
        self,
        stats_source: StatsSource | None = None,
        tracker: ErrorTracker | None = None,
        extra: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self._stats_source = stats_source or registry_stats
        self._tracker = tracker or default_tracker
        self._extra = extra

    def describe(self) -> Iterable[Metric]:
        """Nothing: the series depend on the clients alive at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Build every family from one reading of the stats."""
        all_stats = self._stats_source()
        counters = {
            key: CounterMetricFamily(f"hardened_{key}", doc, labels=_LABELS)
            for key, doc in (
                ("calls", "Calls that went through the pipeline."),
                ("successes", "Calls that returned a result."),
                ("retries", "Retries after a first attempt."),
                ("skips", "Calls the gate skipped."),
                ("cache_hits", "Calls answered from the cache."),
                ("stale_served", "Calls answered with stale cached data."),
            )
        }
        failures = CounterMetricFamily(
            "hardened_failures", "Failed calls by error class.", labels=[*_LABELS, "error"]
        )
        breaker_state = GaugeMetricFamily(
            "hardened_breaker_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            labels=[*_LABELS, "breaker", "state"],
        )
        trips = CounterMetricFamily(
            "hardened_breaker_trips", "Times the breaker opened.", labels=[*_LABELS, "breaker"]
        )
        rejected = CounterMetricFamily(
            "hardened_breaker_rejected",
            "Calls the open breaker refused without touching the network.",
            labels=[*_LABELS, "breaker"],
        )
        latency = GaugeMetricFamily(
            "hardened_latency_seconds",
            "Call latency quantiles over the most recent 1024 calls (gauges; see module docs).",
            labels=[*_LABELS, "quantile"],
        )
        quality = GaugeMetricFamily(
            "hardened_quality_score", "Last data quality score (0-100).", labels=_LABELS
        )
        health = GaugeMetricFamily(
            "hardened_health_score", "Health score of a client (0-100).", labels=["client", "exchange"]
        )
        for name, stats in all_stats.items():
            exchange = str(stats.get("exchange", ""))
            for endpoint, data in stats.get("endpoints", {}).items():
                labels = [name, exchange, endpoint]
                for key, family in counters.items():
                    family.add_metric(labels, float(data.get(key, 0)))
                for error, n in data.get("failures", {}).items():
                    failures.add_metric([*labels, error], float(n))
                breaker = data.get("breaker") or {}
                if breaker:
                    bname = str(breaker.get("name", f"{exchange}_{endpoint}"))
                    current = breaker.get("state")
                    for state in _STATES:
                        breaker_state.add_metric([*labels, bname, state], 1.0 if state == current else 0.0)
                    trips.add_metric([*labels, bname], float(breaker.get("trips", 0)))
                    rejected.add_metric([*labels, bname], float(breaker.get("rejected", 0)))
                for q_label, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                    value = (data.get("latency_ms") or {}).get(key)
                    if value is not None:
                        latency.add_metric([*labels, q_label], value / 1000.0)
                if data.get("last_quality") is not None:
                    quality.add_metric(labels, float(data["last_quality"]))
        overall = overall_health(all_stats)
        for name, h in overall["clients"].items():
            health.add_metric([name, str(all_stats[name].get("exchange", ""))], float(h["score"]))
        shared = GaugeMetricFamily(
            "hardened_shared_state_up",
            "1 while a client with redis_url shares its state through Redis, 0 while on local state.",
            labels=["client", "exchange"],
        )
        for name, stats in all_stats.items():
            if "shared" in stats:
                up = 1.0 if stats["shared"].get("state") == "shared" else 0.0
                shared.add_metric([name, str(stats.get("exchange", ""))], up)
        yield from counters.values()
        yield from (failures, breaker_state, trips, rejected, latency, quality, health, shared)
        yield GaugeMetricFamily(
            "hardened_health_overall_score", "Health score of the process (0-100).", value=overall["score"]
        )
        yield GaugeMetricFamily(
            "hardened_process_memory_bytes",
            "Resident set size of the process.",
            value=overall["memory"]["rss_mb"] * 1024 * 1024,
        )
        yield from self._tracker_families()
        if self._extra is not None:
            yield from self._extra()

    def _tracker_families(self) -> Iterator[Metric]:
        counts = self._tracker.counts()
        by_type = CounterMetricFamily(
            "hardened_tracked_errors", "Errors recorded by the error tracker, by type.", labels=["error_type"]
        )
        for error_type, n in counts["by_type"].items():
            by_type.add_metric([error_type], float(n))
        by_endpoint = CounterMetricFamily(
            "hardened_tracked_endpoint_errors",
            "Errors recorded by the error tracker, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, n in counts["by_endpoint"].items():
            by_endpoint.add_metric([endpoint], float(n))
        yield by_type
        yield by_endpoint
        yield GaugeMetricFamily(
            "hardened_tracked_error_rate_per_minute",
            "Errors per minute over the tracker's sliding window.",
            value=self._tracker.rate_per_minute(),
        )


def register_collector(target: CollectorRegistry | None = None, **kwargs: Any) -> HardenedCollector:
    """Add a ``HardenedCollector`` to ``target`` (prometheus-client's default registry if None)."""
    collector = HardenedCollector(**kwargs)
    (target if target is not None else REGISTRY).register(collector)
    return collector


def metrics_text(collector: HardenedCollector | None = None) -> bytes:
    """The Prometheus text exposition of ``collector`` (a default one if None), in its own registry."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector or HardenedCollector())
    return generate_latest(reg)
