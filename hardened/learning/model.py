"""The failure model: gradient boosting with calibrated probabilities, saved with its schema.

``HistGradientBoostingClassifier`` (the seeds' gradient boosting, histogram-based: trains and
predicts far faster than ``GradientBoostingClassifier``) with the call's categories as native
categorical features, wrapped in ``CalibratedClassifierCV`` (isotonic, 3 folds, one final model)
so that "0.9" means nine failures in ten, which is what a skip threshold needs.

One model for every exchange and endpoint, with those as features, is the default; the
evaluation (``benchmarks/eval_gate.py``) compares it with one model per exchange x endpoint.

Saved as ``<path>`` (joblib) plus ``<path>.json`` (feature names, vocabulary, versions); a file
from another schema or another hardened version is refused with ``ModelVersionError``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import ThreadpoolController

from hardened.learning.features import CATEGORICAL, FEATURES, SCHEMA_VERSION, build_vocab, encode

__all__ = ["GateModel", "ModelVersionError"]

GroupKey = tuple[str | None, str | None]
# One OpenMP thread for our fits and predictions: on a busy machine scikit-learn's OpenMP threads
# spin against each other (measured on 2 shared cores: a 600-row fit 30 s with the default, 2 s
# with one thread; a one-row prediction 30 ms vs 3 ms). The limit applies to the calling thread
# only, not to the rest of the bot. The controller is built once: building it scans every loaded
# library, which costs milliseconds each time.
_threads = ThreadpoolController()


class ModelVersionError(ValueError):
    """A saved model cannot be used: written for another feature schema or hardened version,
    unreadable (truncated, not a model), or in a file other users can write."""


def _hardened_version() -> str:
    from hardened import __version__  # late: hardened/__init__ imports the client, which imports us

    return __version__


def _make_estimator(n: int) -> Any:
    categorical = [name in CATEGORICAL for name in FEATURES]
    boosting = HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=31,
        min_samples_leaf=10,
        categorical_features=categorical,
        early_stopping=False,
        random_state=0,
    )
    # Shuffled folds: the records are in time order, and contiguous folds would hold a whole
    # regime (an outage, a halted market) in one fold that the others never saw, which bends the
    # calibration of exactly the cases the gate exists for.
    folds = StratifiedKFold(n_splits=3 if n >= 60 else 2, shuffle=True, random_state=0)
    return CalibratedClassifierCV(boosting, method="isotonic", cv=folds, ensemble=False)


class _Constant:
    """The model of a group that never (or always) failed in training: its observed rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), 2))
        out[:, 1] = self.rate
        out[:, 0] = 1.0 - self.rate
        return out


class GateModel:
    """A fitted failure model and its schema; ``predict(keys)`` gives failure probabilities."""

    def __init__(self, vocab: dict[str, dict[str, int]], per_endpoint: bool = False) -> None:
        self.vocab = vocab
        self.per_endpoint = per_endpoint
        self.models: dict[GroupKey, Any] = {}
        self.schema: dict[str, Any] = {}

    @classmethod
    def fit(
        cls,
        keys: Sequence[tuple[Any, ...]],
        labels: Sequence[int],
        *,
        per_endpoint: bool = False,
        min_group: int = 200,
    ) -> GateModel:
        """Fit on feature keys (tuples in ``FEATURES`` order) and labels (1 = the call failed)."""
        if len(keys) != len(labels):
            raise ValueError(f"{len(keys)} feature rows but {len(labels)} labels")
        if not keys:
            raise ValueError("no rows to train on")
        started = time.perf_counter()
        keys = list(keys)
        y = np.asarray(labels, dtype=np.int8)
        model = cls(build_vocab(keys), per_endpoint)
        x = encode(keys, model.vocab)
        model.models[(None, None)] = _fit_one(x, y)
        if per_endpoint:
            ex_i, ep_i = FEATURES.index("exchange"), FEATURES.index("endpoint")
            groups: dict[GroupKey, list[int]] = {}
            for i, key in enumerate(keys):
                groups.setdefault((key[ex_i], key[ep_i]), []).append(i)
            for group, index in groups.items():
                if len(index) >= min_group:
                    model.models[group] = _fit_one(x[index], y[index])
        model.schema = {
            "schema_version": SCHEMA_VERSION,
            "hardened_version": _hardened_version(),
            "features": list(FEATURES),
            "categorical": list(CATEGORICAL),
            "vocab": model.vocab,
            "per_endpoint": per_endpoint,
            "groups": sorted(f"{a}:{b}" for a, b in model.models if a is not None),
            "trained_at": time.time(),
            "samples": len(keys),
            "failures": int(y.sum()),
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        return model

    def predict(self, keys: Sequence[tuple[Any, ...]]) -> np.ndarray:
        """Failure probability of each feature key."""
        with _threads.limit(limits=1, user_api="openmp"):
            return self._predict(keys)

    def _predict(self, keys: Sequence[tuple[Any, ...]]) -> np.ndarray:
        x = encode(list(keys), self.vocab)
        if not self.per_endpoint or len(self.models) == 1:
            return self.models[(None, None)].predict_proba(x)[:, 1]
        ex_i, ep_i = FEATURES.index("exchange"), FEATURES.index("endpoint")
        out = np.empty(len(keys))
        by_group: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            group = (key[ex_i], key[ep_i])
            by_group.setdefault(group if group in self.models else (None, None), []).append(i)
        for group, index in by_group.items():
            out[index] = self.models[group].predict_proba(x[index])[:, 1]
        return out

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model (joblib) and its schema beside it (``.json``); returns the model path."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temporary names of this process and thread: two learners on one store (two processes)
        # saving at once shared one ".tmp", and the model left was corrupt or one save failed.
        # Each file is replaced whole, so a reader never sees half of one.
        own = f".{os.getpid()}.{threading.get_ident()}.tmp"
        sidecar = path.with_name(path.name + ".json")
        tmp_sidecar = sidecar.with_name(sidecar.name + own)
        tmp_sidecar.write_text(json.dumps(self.schema, indent=1, sort_keys=True))
        tmp_sidecar.replace(sidecar)
        tmp = path.with_name(path.name + own)
        try:
            joblib.dump({"models": self.models, "schema": self.schema}, tmp)
            # never writable by others, whatever the umask: loading it unpickles (runs) what it holds
            os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) & ~0o022)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GateModel:
        """Read a saved model; refuses one written for another schema or hardened version."""
        path = Path(path).expanduser()
        sidecar = path.with_name(path.name + ".json")
        try:
            schema = json.loads(sidecar.read_text())
        except OSError as exc:
            raise ModelVersionError(
                f"model {path}: its schema file {sidecar.name} is missing ({exc})"
            ) from exc
        except ValueError as exc:
            raise ModelVersionError(f"model {path}: schema file {sidecar.name} is not JSON: {exc}") from exc
        check_schema(schema, str(path))
        check_trusted(path)
        try:
            payload = joblib.load(path)  # only after the schema said it is ours and of this version
        except Exception as exc:  # truncated, or not a model at all: refused like any other misfit
            raise ModelVersionError(
                f"model {path} cannot be read ({type(exc).__name__}: {exc}): retrain it with 'hardened train'"
            ) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("schema"), dict):
            raise ModelVersionError(f"model {path} holds no hardened model: retrain it with 'hardened train'")
        # The model's own schema decides: the schema file (read first, so that a model of another
        # version is never unpickled) may be a concurrent save's, of the same version.
        schema = payload["schema"]
        check_schema(schema, str(path))
        model = cls(schema["vocab"], bool(schema.get("per_endpoint")))
        model.models = payload["models"]
        model.schema = schema
        return model


def check_trusted(path: Path) -> None:
    """Raise ``ModelVersionError`` for a model file another user could have written: loading a
    joblib file unpickles it, which runs any code it holds. Refused when the file is owned by
    another user (root excepted) or writable by everyone, or when its folder is writable by
    everyone without the sticky bit (anyone could replace it)."""
    if os.name != "posix":
        return
    try:
        info = os.stat(path)
        folder = os.stat(path.parent)
    except OSError as exc:
        raise ModelVersionError(f"model {path} cannot be read: {exc}") from exc
    if info.st_uid not in (os.geteuid(), 0):
        reason = f"is owned by another user (uid {info.st_uid})"
    elif info.st_mode & stat.S_IWOTH:
        reason = "is writable by every user"
    elif folder.st_mode & stat.S_IWOTH and not folder.st_mode & stat.S_ISVTX:
        reason = f"is in {path.parent}, a folder every user can write to"
    else:
        return
    raise ModelVersionError(
        f"model {path} {reason}: not loaded, since loading a model runs the code it holds; "
        "check the file, or retrain it with 'hardened train'"
    )


def check_schema(schema: dict[str, Any], source: str) -> None:
    """Raise ``ModelVersionError`` unless ``schema`` is this version's feature schema."""
    found_schema = schema.get("schema_version")
    found_version = schema.get("hardened_version")
    if found_schema != SCHEMA_VERSION:
        raise ModelVersionError(
            f"model {source} uses feature schema {found_schema}, this hardened needs {SCHEMA_VERSION}: "
            "retrain it with 'hardened train'"
        )
    if found_version != _hardened_version():
        raise ModelVersionError(
            f"model {source} was trained by hardened {found_version}, this is {_hardened_version()}: "
            "retrain it with 'hardened train'"
        )
    if schema.get("features") != list(FEATURES):
        raise ModelVersionError(f"model {source} has other features than this hardened: retrain it")


def _fit_one(x: np.ndarray, y: np.ndarray) -> Any:
    failures = int(y.sum())
    if failures < 5 or failures > len(y) - 5:  # too few of one class to fit or calibrate
        return _Constant((failures + 0.5) / (len(y) + 1.0))
    estimator = _make_estimator(len(y))
    with _threads.limit(limits=1, user_api="openmp"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # categories unseen in a fold: expected
        estimator.fit(x, y)
    return estimator
