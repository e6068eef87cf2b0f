"""Fixtures for the ML tests: a small simulator run (FDH scenarios, labels arriving 1-4 days late,
fraud rate raised so a few thousand rows hold enough frauds) in the sandbox zone's schema, and one
real MLflow SQLite tracking/registry store per test session."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.domain.splits import SplitConfig
from fraud_platform.infra.lake import LakeStore
from fraud_platform.ml.datasets import sandbox_table, simulated_sandbox_frame
from fraud_platform.ml.tracking import TrackingTarget

SMALL_SPLIT = SplitConfig(train_days=7, validation_days=3, delay_days=3, test_days=4)
SMALL_SEARCH = {"n_estimators": (30, 30), "max_depth": (3, 4)}  # TrainingConfig ranges: small, fast trees


def small_simulation(days: int = 28, seed: int = 42) -> TransactionSimulator:
    return TransactionSimulator(SimulationConfig(
        start=date(2026, 1, 1), days=days, n_customers=400, n_terminals=800, seed=seed,
        fraud_rate=0.03, label_delay_days=4,
    ))


def write_sandbox(store: LakeStore, frame: pd.DataFrame) -> list[str]:
    """``frame`` as sandbox/transactions/date=D/part-0.parquet partitions, passed through the real
    blocking GX suite (whose verdicts feature readers honour); returns the dates."""
    from fraud_platform.domain.catalogue import SANDBOX_TRANSACTIONS
    from fraud_platform.quality import DATASETS, QualityBounds
    from fraud_platform.quality.gate import record_verdicts
    from fraud_platform.quality.runner import validate_partitions

    days = []
    for day, part in frame.groupby("event_date"):
        store.write_parquet(f"{SANDBOX_TRANSACTIONS.partition_prefix(day)}/part-0.parquet", sandbox_table(part))
        days.append(day.isoformat())
    outcomes = validate_partitions(store, DATASETS[SANDBOX_TRANSACTIONS.asset_key], sorted(frame["event_date"].unique()), QualityBounds())
    assert all(o.success for o in outcomes), [o.failures for o in outcomes if not o.success]
    record_verdicts(store, SANDBOX_TRANSACTIONS, outcomes)
    return days


@pytest.fixture(scope="session")
def sandbox_frame() -> pd.DataFrame:
    return simulated_sandbox_frame(small_simulation(), SMALL_SPLIT)


@pytest.fixture(scope="session")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> TrackingTarget:
    """A real SQLite tracking + registry store for the session (schema creation costs seconds)."""
    root: Path = tmp_path_factory.mktemp("mlflow")
    return TrackingTarget(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "artifacts").as_uri(),
                          experiment_name="fraud_tests")
