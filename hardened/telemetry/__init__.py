"""Telemetry: the event bus, the client registry, the error tracker, health scores and metrics."""
