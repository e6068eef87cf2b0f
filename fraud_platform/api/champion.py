"""The champion behind the registry alias, hot-reloaded between requests.

A background thread checks the alias every ``refresh_seconds`` and swaps in a new version only
after it has loaded and scored a probe row. A request takes :meth:`ChampionHolder.current` once
and uses that object throughout, so a swap never happens mid-request. When the registry is down or
a new version is broken, the last good model keeps serving (logged and counted). The alias is read
with the streaming scorer's reader (``spark_streaming.champion.read_champion``), so both agree on
tags, features and threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fraud_platform.ml.registry import ChampionInfo
from fraud_platform.ml.serving import ServingModel, load_model_object
from spark_streaming.champion import NoChampionError, one_line, read_champion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedChampion:
    info: ChampionInfo
    model: ServingModel
    loaded_at: float

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version


class ChampionHolder:
    def __init__(self, client_factory: Callable[[], object], model_name: str, alias: str, refresh_seconds: float,
                 on_failure: Callable[[str], None] = lambda stage: None,
                 on_loaded: Callable[[LoadedChampion], None] = lambda champion: None) -> None:
        self._client_factory = client_factory
        self.model_name, self.alias, self.refresh_seconds = model_name, alias, refresh_seconds
        self._on_failure, self._on_loaded = on_failure, on_loaded
        self._current: LoadedChampion | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> LoadedChampion:
        current = self._current  # one atomic read: the request keeps this object
        if current is None:
            raise NoChampionError(self.last_error or f"no {self.alias!r} version of {self.model_name!r} loaded yet")
        return current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def refresh(self) -> bool:
        """One alias check; True if a new version was swapped in. Never raises."""
        try:
            info = read_champion(self._client_factory(), self.model_name, self.alias)
        except Exception as error:  # registry unreachable, alias missing, ...
            self._failed("registry", error)
            return False
        if self._current is not None and info.version == self._current.version:
            return False
        try:
            loaded = self._load(info)
        except Exception as error:
            self._failed("load", error, info.version)
            return False
        self._current, self.last_error = loaded, None
        self._on_loaded(loaded)
        log.info("decision API now scoring with %s version %s", info.name, info.version)
        return True

    @staticmethod
    def _load(info: ChampionInfo) -> LoadedChampion:
        model = ServingModel(load_model_object(info.model_uri), list(info.features))
        probe = model.predict(np.ones((1, len(info.features))))
        if probe.shape != (1,) or not np.isfinite(probe).all():
            raise ValueError(f"model {info.model_uri} returned {probe!r} for one row, expected one probability")
        return LoadedChampion(info, model, time.time())

    def _failed(self, stage: str, error: Exception, version: str | None = None) -> None:
        kept = self._current.version if self._current else None
        self.last_error = f"{stage}: {one_line(error)}"
        log.warning("champion refresh (%s%s) failed, keeping version %s: %s", stage,
                    f" of version {version}" if version else "", kept, one_line(error))
        self._on_failure(stage)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="champion-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds if self._current else min(self.refresh_seconds, 2.0)):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
