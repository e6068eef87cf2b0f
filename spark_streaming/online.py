"""The online state the scorer's executor tasks read: features of a batch and the duplicate claims.

One small seam (:class:`FeatureStore`) so the executor code never cares which store is behind it.
:func:`open_feature_store` is the only place that picks the implementation. Until the Redis
online store (``fraud_platform.infra.online_store``) is merged, :class:`SnapshotFeatureStore`
stands in: the champion's lake snapshot, loaded once per executor Python worker.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import pandas as pd

from fraud_platform.domain.features import FeatureSnapshot
from fraud_platform.settings import LakeSettings

FEATURE_INPUT = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]


class StoreUnavailable(RuntimeError):
    """The online store cannot be reached: the task fails (visible), it never scores with empty features."""


class FeatureStore(Protocol):
    """What a scoring task needs from the online store; picklable, connects lazily per worker."""

    def ping(self) -> None: ...

    def features(self, events: pd.DataFrame) -> pd.DataFrame:
        """``transaction_id`` + feature columns for ``FEATURE_INPUT`` rows, in the same order."""

    def claim_ids(self, transaction_ids: list[str], token: str) -> np.ndarray:
        """True = first sighting, or already claimed by ``token`` (a replay of the same task)."""

    def state_version(self) -> str: ...


# -- interim: the champion's snapshot per worker --------------------------------------------------
_SNAPSHOTS: dict[tuple, tuple[FeatureSnapshot, dict[str, str]]] = {}
_SNAPSHOT_LOCK = threading.Lock()


class SnapshotFeatureStore:
    """The champion's FeatureSnapshot from the lake, rolled forward with what this worker scored.

    State and claims are per executor Python worker (not shared between workers or processes):
    exactly the limit the Redis store removes. Late events (older than the snapshot) are scored
    with their time clamped to the snapshot's ``as_of``.
    """

    def __init__(self, lake: LakeSettings, snapshot_key: str | None) -> None:
        self.lake = lake
        self.snapshot_key = snapshot_key

    def _key(self) -> tuple:
        return (self.lake.model_dump_json(), self.snapshot_key)

    def _state(self) -> tuple[FeatureSnapshot, dict[str, str]]:
        with _SNAPSHOT_LOCK:
            if self._key() not in _SNAPSHOTS:
                from fraud_platform.infra.lake import lake_store_from_settings
                from spark_streaming.champion import load_snapshot

                _SNAPSHOTS.clear()  # one snapshot per worker: a new champion replaces the old state
                snapshot, _ = load_snapshot(lake_store_from_settings(self.lake), self.snapshot_key)
                _SNAPSHOTS[self._key()] = (snapshot, {})
            return _SNAPSHOTS[self._key()]

    def ping(self) -> None:
        self._state()

    def features(self, events: pd.DataFrame) -> pd.DataFrame:
        snapshot, claims = self._state()
        batch = events[FEATURE_INPUT]
        late = batch["event_time"] < snapshot.as_of
        if late.any():
            batch = batch.assign(event_time=batch["event_time"].where(~late, snapshot.as_of))
        features = snapshot.features(batch)
        with _SNAPSHOT_LOCK:
            _SNAPSHOTS[self._key()] = (snapshot.update(batch), claims)
        return features.assign(transaction_id=events["transaction_id"].to_numpy())

    def claim_ids(self, transaction_ids: list[str], token: str) -> np.ndarray:
        _, claims = self._state()
        return np.fromiter((claims.setdefault(i, token) == token for i in transaction_ids), dtype=bool, count=len(transaction_ids))

    def state_version(self) -> str:
        return self._state()[0].version


def open_feature_store(config, snapshot_key: str | None) -> FeatureStore:
    """The store the scorer uses (the one line that changes when the Redis store is merged)."""
    return SnapshotFeatureStore(config.platform.lake, snapshot_key)
