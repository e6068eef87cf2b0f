"""Drift on comparable windows: one stationary simulation split in two halves shows no drift once
the feature warm-up is excluded; the same data with a shifted amount distribution does."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from fraud_platform.defs.monitoring.assets import feature_drift_report
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource, MonitoringResource
from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, TRANSACTION_FEATURES
from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.datasets import simulated_sandbox_frame

pytestmark = pytest.mark.slow
DAYS = 60
START = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture(scope="module")
def simulation() -> pd.DataFrame:
    sim = TransactionSimulator(SimulationConfig(start=date(2026, 1, 1), days=DAYS, n_customers=300, n_terminals=300, seed=7))
    return simulated_sandbox_frame(sim)


def _lake(root, frame: pd.DataFrame, amount_factor: float, split_day: pd.Timestamp) -> LocalLakeStore:
    store = LocalLakeStore(root)
    training = frame[frame["event_time"] < split_day].reset_index(drop=True)
    matrix = pd.concat([training[["transaction_id", "event_time", "event_date"]], compute_batch_features(training)[FEATURE_COLUMNS]], axis=1)
    for day, part in matrix.groupby("event_date"):
        store.write_parquet(f"{TRANSACTION_FEATURES.partition_prefix(day)}/part-0.parquet", pa.Table.from_pandas(part, preserve_index=False))
    traffic = frame.copy()
    later = traffic["event_time"] >= split_day
    traffic.loc[later, "amount_eur"] *= amount_factor
    traffic = traffic.assign(is_fraud=traffic["is_fraud"].astype("Int32"), processed_at=pd.Timestamp.now(tz="UTC"))
    for day, part in traffic.groupby("event_date"):
        table = pa.Table.from_pandas(part[PROCESSED_TRANSACTIONS.schema.names], schema=PROCESSED_TRANSACTIONS.schema, preserve_index=False)
        store.write_parquet(f"{PROCESSED_TRANSACTIONS.partition_prefix(day)}/part-0.parquet", table)
    return store


@pytest.mark.parametrize(
    "training_days, amount_factor, drifts",
    [(45, 1.0, False), (45, 3.0, True), (30, 1.0, False)],  # 30 days: shorter than the 37-day feature warm-up
    ids=["stationary", "shifted-amounts", "stationary-short-history"],
)
def test_two_halves_of_one_simulation_drift_only_when_shifted(simulation, tmp_path, training_days, amount_factor, drifts):
    store = _lake(tmp_path / "lake", simulation, amount_factor, START + pd.Timedelta(days=training_days))
    resources = {
        "lake": LakeResource(root=str(store.root)),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=(tmp_path / "artifacts").as_uri()),
        "monitoring": MonitoringResource(psi_threshold=0.25, recent_days=7),
        "lake_processing": LakeProcessingResource(),
    }
    result = dg.materialize([feature_drift_report], resources=resources)
    [report] = result.asset_materializations_for_node("feature_drift_report")
    max_psi = report.metadata["max_psi"].value
    assert report.metadata["reference_warmed_up"].value is (training_days > 37)
    assert report.metadata["recent_source"].value == "processed"
    if drifts:
        assert max_psi > 0.25 and "amount_eur" in report.metadata["drifting_features"].value
    else:
        assert max_psi < 0.25, report.metadata["drift_table"].value
