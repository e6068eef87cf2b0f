"""``online_feature_snapshot`` materialises the batch feature state into a real Redis: metadata says
what was written, and the store then answers exactly as the snapshot itself does."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from fraud_platform.defs.features import feature_snapshot, online_feature_snapshot
from fraud_platform.defs.resources import LakeResource, OnlineStoreResource
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform_tests.ml.conftest import small_simulation, write_sandbox
from fraud_platform.ml.datasets import simulated_sandbox_frame

EVENT_COLUMNS = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]


def test_online_feature_snapshot_asset(online_store, tmp_path):
    frame = simulated_sandbox_frame(small_simulation(days=20))
    sandbox = frame[frame["event_time"] < frame["event_time"].min().normalize() + pd.Timedelta(days=18)]
    later = frame[frame["event_time"] >= sandbox["event_time"].max().normalize() + pd.Timedelta(days=1)]
    store = LocalLakeStore(tmp_path / "lake")
    write_sandbox(store, sandbox)
    resources = {
        "lake": LakeResource(root=str(store.root)),
        "online_store": OnlineStoreResource(url=online_store.url, key_prefix=online_store.prefix),
    }
    result = dg.materialize([feature_snapshot, online_feature_snapshot], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("online_feature_snapshot")[0].metadata
    assert metadata["customers_written"].value == sandbox["customer_key"].nunique()
    assert metadata["terminals_written"].value == sandbox["terminal_id"].nunique()
    assert metadata["bytes_added"].value > 0 and metadata["bytes_per_entity"].value > 0
    assert metadata["transactions_indexed"].value > 0

    snapshot = FeatureSnapshot.build(sandbox, as_of=sandbox["event_time"].max().normalize() + pd.Timedelta(days=1))
    assert online_store.state_version().startswith(snapshot.version)
    online = online_store.features(later[EVENT_COLUMNS])
    offline = snapshot.features(later[EVENT_COLUMNS])
    np.testing.assert_allclose(online[FEATURE_COLUMNS].to_numpy(), offline[FEATURE_COLUMNS].to_numpy(), rtol=0, atol=1e-9)
