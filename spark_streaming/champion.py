"""The model behind the registry alias, and its hot reload.

A background thread checks the alias at most every ``model_refresh_seconds`` and loads a new
version off the scoring path; the micro-batch loop picks the swapped model up at its next batch, so
one batch is always scored by exactly one model. Any failure (registry down, broken artifact, model
rejecting the feature columns) keeps the last good model and is logged and counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot
from fraud_platform.ml.registry import ChampionInfo, load_champion

log = logging.getLogger(__name__)

Predictor = Callable[[pd.DataFrame], np.ndarray]


class NoChampionError(RuntimeError):
    """The registry has no version behind the alias (nothing to score with yet)."""


def read_champion(client, model_name: str, alias: str) -> ChampionInfo:
    """The version behind ``alias`` and its scorer tags (the platform's registry reader)."""
    info = load_champion(client, model_name, alias)
    if info is None:
        raise NoChampionError(f"model {model_name!r} has no version with alias {alias!r}")
    if not info.features:
        info = replace(info, features=list(FEATURE_COLUMNS))
    if info.threshold is not None and not math.isfinite(info.threshold):
        info = replace(info, threshold=None)
    if info.model_uri.startswith("models:/"):
        # Executors load the model from its artifacts directly: a registry outage must not stop a
        # new Python worker from loading the version the driver already checked.
        uri = client.get_model_version_download_uri(model_name, info.version)
        if uri.startswith("file:"):  # mlflow's Model.load checks os.path.exists(uri): it needs a plain path
            from urllib.parse import unquote, urlparse

            uri = unquote(urlparse(uri).path)
        info = replace(info, model_uri=uri)
    return info


def load_predictor(model_uri: str) -> tuple[Predictor, object | None]:
    """Fraud probability for a feature frame, whatever flavour the model was logged with, and the
    estimator itself when it is one ``fraud_platform.ml.explain`` can explain (else None)."""
    import mlflow

    # Model.load reads MLmodel only; get_model_info would also ask the tracking server (outage-prone).
    flavors = mlflow.models.Model.load(model_uri).flavors
    if "sklearn" in flavors:
        model = mlflow.sklearn.load_model(model_uri)
        single_threaded(model)
        return (lambda X: model.predict_proba(X)[:, 1]), model
    if "xgboost" in flavors:
        model = mlflow.xgboost.load_model(model_uri)
        single_threaded(model)
        if hasattr(model, "predict_proba"):
            return (lambda X: model.predict_proba(X)[:, 1]), model
        import xgboost

        return (lambda X: model.predict(xgboost.DMatrix(X))), model
    model = mlflow.pyfunc.load_model(model_uri)
    return (lambda X: np.asarray(model.predict(X), dtype="float64").reshape(len(X), -1)[:, -1]), None


def single_threaded(model) -> None:
    """One XGBoost thread per prediction. A loaded model has no ``n_jobs``, so XGBoost used every
    core: with one Spark task per core, the tasks' OpenMP threads spun against each other (1,250
    rows: 22.9 ms CPU, 116 ms wall at load 13, against 4.4 ms and 21 ms with one thread)."""
    from fraud_platform.ml.explain import booster_of

    steps = getattr(model, "steps", None)
    estimator = steps[-1][1] if steps else model
    if hasattr(estimator, "set_params") and hasattr(estimator, "get_booster"):
        estimator.set_params(n_jobs=1)  # the sklearn wrapper passes it to its booster
    booster = booster_of(estimator)
    if booster is not None:
        booster.set_param({"nthread": 1})


def _empty_history() -> FeatureSnapshot:
    """A feature history with no rows: the load probe needs valid feature columns, not values."""
    empty = pd.DataFrame(
        {"transaction_id": [], "customer_key": [], "terminal_id": [], "amount_eur": [],
         "event_time": pd.to_datetime([], utc=True)}
    )
    return FeatureSnapshot.build(empty, as_of="1970-01-01T00:00:00Z")


@dataclass
class ActiveModel:
    """A loaded champion: its registry info and predictor (features come from the online store)."""

    model_name: str
    info: ChampionInfo
    predict: Predictor
    loaded_at: float
    estimator: object | None = None  # what explain() takes apart for the reasons; None = no reasons

    @property
    def version(self) -> str:
        return self.info.version


def load_model(model_name: str, info: ChampionInfo) -> ActiveModel:
    """Load ``info``'s model and prove it scores one row of the feature columns; raises otherwise."""
    predict, estimator = load_predictor(info.model_uri)
    empty = _empty_history()
    probe = empty.features(_probe_batch(empty))[list(info.features)]
    scores = np.asarray(predict(probe), dtype="float64")
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ValueError(f"model {info.model_uri} returned {scores!r} for one row, expected one probability")
    return ActiveModel(model_name, info, predict, time.time(), estimator)


class ModelWatcher:
    """Holds the last good champion and refreshes it from the registry in the background."""

    def __init__(
        self,
        client_factory: Callable[[], object],
        model_name: str,
        alias: str,
        refresh_seconds: float,
        on_loaded: Callable[[ActiveModel], None] = lambda model: None,
        on_failure: Callable[[str, Exception], None] = lambda stage, error: None,
    ) -> None:
        self._client_factory = client_factory
        self.model_name = model_name
        self.alias = alias
        self.refresh_seconds = refresh_seconds
        self._on_loaded = on_loaded
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._current: ActiveModel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, info: ChampionInfo | None = None) -> ActiveModel:
        """Load the champion now (startup); raises on any problem."""
        info = info or read_champion(self._client_factory(), self.model_name, self.alias)
        model = load_model(self.model_name, info)
        with self._lock:
            self._current = model
        self._on_loaded(model)
        return model

    def current(self) -> ActiveModel:
        with self._lock:
            if self._current is None:
                raise NoChampionError("no champion loaded")
            return self._current

    def refresh(self) -> bool:
        """One alias check; True if a new version was swapped in. Never raises."""
        try:
            info = read_champion(self._client_factory(), self.model_name, self.alias)
        except Exception as error:  # registry unreachable, alias deleted, ...
            log.warning("model refresh: registry check failed, keeping version %s: %s", self._version(), one_line(error))
            self._on_failure("registry", error)
            return False
        if info.version == self._version():
            return False
        try:
            self.load(info)
        except Exception as error:
            log.warning("model refresh: version %s failed to load, keeping version %s: %s", info.version, self._version(), one_line(error))
            self._on_failure("load", error)
            return False
        log.info("model refresh: now scoring with %s version %s", self.model_name, info.version)
        return True

    def _version(self) -> str | None:
        with self._lock:
            return self._current.version if self._current else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class ChallengerWatcher(ModelWatcher):
    """The ``challenger`` alias for shadow scoring: its registry entry, or None while there is none.

    Only the entry is read here (no model on the driver): the plan names the version and each
    executor worker loads it once, as it does the champion's. A missing alias is the normal case,
    not a failure; a registry outage keeps the last entry seen.
    """

    _info: ChampionInfo | None = None

    def refresh(self) -> bool:
        """One alias check; True if the challenger appeared, moved or went away. Never raises."""
        try:
            info = read_champion(self._client_factory(), self.model_name, self.alias)
        except NoChampionError:
            info = None
        except Exception as error:
            log.warning("challenger refresh: registry check failed, keeping %s: %s", self._info and self._info.version, one_line(error))
            self._on_failure("registry", error)
            return False
        with self._lock:
            changed = (info and info.version) != (self._info and self._info.version)
            self._info = info
        if changed:
            log.info("challenger: %s", f"{self.model_name} version {info.version} scores in shadow" if info else "none")
        return changed

    def info(self) -> ChampionInfo | None:
        with self._lock:
            return self._info


def _probe_batch(snapshot: FeatureSnapshot) -> pd.DataFrame:
    return pd.DataFrame(
        {"transaction_id": ["probe-0000"], "customer_key": ["probe"], "terminal_id": ["probe"],
         "amount_eur": [1.0], "event_time": [max(snapshot.as_of, pd.Timestamp("2000-01-01", tz="UTC"))]}
    )


def one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300] if text else type(error).__name__
