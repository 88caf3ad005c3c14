"""The learning gate: a record store of every call, a failure model, anomaly detection.

``predict_error_likelihood(component, context)`` and ``record_operation_result(component,
context, had_error, ...)`` work for any component of a bot (the seeds' API), on one learner per
store file shared by the process (``HardenedConfig().learning_store``); ``ErrorLearner`` is for
users who want their own instance. The wrapper's ``gate`` stage uses the learner of its
client's configuration.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hardened.learning.learner import ErrorLearner
from hardened.learning.model import GateModel, ModelVersionError
from hardened.learning.store import RecordStore, StoreError

__all__ = [
    "ErrorLearner",
    "GateModel",
    "ModelVersionError",
    "RecordStore",
    "StoreError",
    "default_learner",
    "get_anomaly_report",
    "learner_for",
    "model_path_for",
    "predict_error_likelihood",
    "record_operation_result",
]

_learners: dict[str, ErrorLearner] = {}
_lock = threading.Lock()


@atexit.register
def _drain_all() -> None:
    """At a normal exit, turn the outcomes handed to each shared learner into rows before the
    stores write and close: registered after the stores' own exit hook, so it runs first (the
    learner's thread drains every few ms, and a bot that exits right after its calls lost them)."""
    with _lock:
        learners = list(_learners.values())
    for learner in learners:
        try:
            learner.drain()
        except Exception:  # exiting anyway: one learner that cannot drain must not stop the others
            continue


_MEMORY = ":memory:"


def model_path_for(store: str | None) -> Path | None:
    """Where the model of a store file lives (beside it), None for a store in memory."""
    if store is None or store == _MEMORY:
        return None
    path = Path(store).expanduser()
    return path.with_name(path.stem + ".model.joblib")


def learner_for(config: Any) -> ErrorLearner:
    """The learner of a configuration's store: one per file in the process, one for all in memory.

    Threshold, probe share and minimum samples come from the first configuration that opened the
    file; clients that need other values can pass their own ``ErrorLearner``."""
    store = config.learning_store
    memory = store is None or store == _MEMORY
    key = _MEMORY if memory else str(Path(store).expanduser().resolve())
    with _lock:
        found = _learners.get(key)
        if found is None:
            found = _learners[key] = _make(config, None if memory else key)
    return found


def _make(config: Any, path: str | None) -> ErrorLearner:
    return ErrorLearner(
        path,
        threshold=config.gate_threshold,
        probe_share=config.gate_probe_share,
        min_samples=config.gate_min_samples,
        model_path=model_path_for(path),
        max_rows=config.learning_max_rows,
        retention=config.learning_retention,
    )


_default: list[ErrorLearner] = []


def default_learner() -> ErrorLearner:
    """The process's learner for the default configuration (environment and config file apply)."""
    if not _default:
        from hardened.config import HardenedConfig

        learner = learner_for(HardenedConfig())  # takes _lock itself: not under it here
        with _lock:
            if not _default:
                _default.append(learner)
    return _default[0]


def predict_error_likelihood(component: str, operation_context: Mapping[str, Any]) -> dict[str, Any]:
    """Failure probability, confidence, should_attempt, risk level and alternatives for an
    operation of ``component`` (see ``ErrorLearner.predict_error_likelihood``)."""
    return default_learner().predict_error_likelihood(component, operation_context)


def record_operation_result(
    component: str,
    operation_context: Mapping[str, Any],
    had_error: bool,
    error_details: str | None = None,
    success_metrics: Mapping[str, Any] | None = None,
    execution_time: float | None = None,
) -> None:
    """Record an operation's outcome for learning (see ``ErrorLearner.record_operation_result``)."""
    default_learner().record_operation_result(
        component, operation_context, had_error, error_details, success_metrics, execution_time
    )


def get_anomaly_report(hours: float = 24) -> dict[str, Any]:
    """Latency and error-rate anomalies per endpoint over the last ``hours``."""
    return default_learner().get_anomaly_report(hours)
