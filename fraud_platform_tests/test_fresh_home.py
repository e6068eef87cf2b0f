"""Documented commands on a fresh home: `fraud-platform launch` (the `dg launch` wrapper) creates
DAGSTER_HOME and its dagster.yaml, runs without the missing-config or superseded-command
warnings, and records the run in that instance; `fraud-platform backtest` then runs the rolling
backtest asset with explicit windows and per-run training settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.datasets import simulated_sandbox_frame
from fraud_platform_tests.ml.conftest import small_simulation, write_sandbox

pytestmark = pytest.mark.slow


def test_launch_on_a_fresh_dagster_home(tmp_path: Path) -> None:
    home = tmp_path / "platform"
    dagster_home = tmp_path / "not" / "yet" / "dagster"  # nothing exists yet
    write_sandbox(LocalLakeStore(home / "lake"), simulated_sandbox_frame(small_simulation(days=12)))
    env = {**os.environ, "FRAUD_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    env.pop("FRAUD_LAKE_ROOT", None)
    cli = [sys.executable, "-m", "fraud_platform.cli"]
    result = subprocess.run([*cli, "launch", "--assets", "transaction_features"], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (dagster_home / "dagster.yaml").exists()
    output = result.stdout + result.stderr
    assert "No dagster instance configuration file" not in output
    assert "dagster asset materialize" not in output and "superseded" not in output.replace(
        "MultiAssetSensorDefinition` is superseded", "")  # only a code-level notice from the sensors module
    assert LocalLakeStore(home / "lake").parquet_keys("features", "transaction_features")

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS]

    training = ('{"train_days": 3, "validation_days": 2, "delay_days": 2, "test_days": 2, "n_folds": 1, '
                '"families": ["logistic_regression"], "balancing": ["none"], "max_trials": 1, "daily_alert_budget": 20}')
    backtest = subprocess.run([*cli, "backtest", "--test-start", "2026-01-09", "--test-days", "2", "--windows", "2",
                               "--training-config", training], capture_output=True, text=True, env=env, timeout=600)
    assert backtest.returncode == 0, backtest.stderr[-3000:]
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("model_backtest"))
        metadata = event.asset_materialization.metadata
        assert metadata["windows"].value == 2 and "2026-01-11" in metadata["report"].value
