"""Blocking checks mean what they say across runs: a sandbox partition whose GX suite failed (or that
was rebuilt after its check) is left out of the training matrix, with the reason in the metadata."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd
import pytest

from fraud_platform.defs.features import transaction_features
from fraud_platform.defs.features.assets import read_matrix
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource
from fraud_platform.domain.catalogue import SANDBOX_TRANSACTIONS
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.datasets import sandbox_table, simulated_sandbox_frame
from fraud_platform.quality import DATASETS, QualityBounds
from fraud_platform.quality.gate import record_verdicts
from fraud_platform.quality.runner import validate_partitions

pytestmark = pytest.mark.slow
BAD_DAY, REBUILT_DAY = "2026-01-03", "2026-01-04"


def test_failed_partition_is_left_out_of_training_with_its_reason(tmp_path):
    sim = TransactionSimulator(SimulationConfig(start=date(2026, 1, 1), days=5, n_customers=80, n_terminals=60, seed=2))
    frame = simulated_sandbox_frame(sim)
    store = LocalLakeStore(tmp_path / "lake")
    for day, part in frame.groupby("event_date"):
        if day.isoformat() == BAD_DAY:  # a crafted bad partition: one transaction twice
            part = pd.concat([part, part.head(1)])
        store.write_parquet(f"{SANDBOX_TRANSACTIONS.partition_prefix(day)}/part-0.parquet", sandbox_table(part))
    days = sorted(frame["event_date"].astype(str).unique())
    resources = {"lake": LakeResource(root=str(store.root)), "lake_processing": LakeProcessingResource()}

    # What the sandbox's blocking gx_suite check does for the partitions of its run.
    outcomes = validate_partitions(store, DATASETS[SANDBOX_TRANSACTIONS.asset_key], [date.fromisoformat(d) for d in days],
                                   QualityBounds(row_count_tolerance=10.0))
    assert [o.day.isoformat() for o in outcomes if not o.success] == [BAD_DAY]
    record_verdicts(store, SANDBOX_TRANSACTIONS, outcomes)

    # A partition rewritten after its check is not trusted either.
    rebuilt = frame[frame["event_date"].astype(str) == REBUILT_DAY]
    store.delete_prefix(SANDBOX_TRANSACTIONS.partition_prefix(REBUILT_DAY))
    store.write_parquet(f"{SANDBOX_TRANSACTIONS.partition_prefix(REBUILT_DAY)}/part-1.parquet", sandbox_table(rebuilt))

    result = dg.materialize([transaction_features], resources=resources)
    [materialization] = result.asset_materializations_for_node("transaction_features")
    excluded = materialization.metadata["excluded_partitions"].value
    assert set(excluded) == {BAD_DAY, REBUILT_DAY}
    assert "expect_column_values_to_be_unique(transaction_id)" in excluded[BAD_DAY]
    assert excluded[REBUILT_DAY] == "rebuilt after its check ran"
    trained_days = set(read_matrix(store)["event_date"].astype(str))
    assert trained_days == set(days) - {BAD_DAY, REBUILT_DAY}
