"""The online state the scorer's executor tasks read: features of a batch and the duplicate claims.

One small seam (:class:`FeatureStore`) so the executor code never cares which store is behind it;
:func:`open_feature_store` is the only place that picks it: the Redis online store
(``fraud_platform.infra.online_store``), fed by the streaming feature pipeline
(``python -m spark_streaming features``). The scorer only reads it and claims ids.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from fraud_platform.infra.online_store import OnlineFeatureStore, OnlineStoreUnavailable

__all__ = ["FeatureStore", "OnlineStoreUnavailable", "open_feature_store"]


class FeatureStore(Protocol):
    """What a scoring task needs from the online store; picklable, connects lazily per worker."""

    description: str

    def ping(self) -> None: ...

    def features(self, events: pd.DataFrame) -> pd.DataFrame:
        """``transaction_id`` + feature columns for processed rows, index aligned."""

    def claim_ids(self, transaction_ids: list[str], token: str) -> np.ndarray:
        """True = first sighting, or already claimed by ``token`` (a replay of the same task)."""

    def state_version(self) -> str: ...


def open_feature_store(config) -> FeatureStore:
    """The store the scorer's tasks use; :class:`OnlineStoreUnavailable` when none is configured."""
    return OnlineFeatureStore.from_settings(config.platform)
