"""The lake assets inside Dagster: blocking GX checks stop bad data before the sandbox, a partition
range materialises from the CLI in one run, and the platform-wide definitions carry the freshness
policies and the Spark resource."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.defs.lake.assets import processed_transactions, sandbox_transactions
from fraud_platform.defs.lake.checks import LAKE_CHECKS
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, SparkResource, build_resources
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.settings import PlatformSettings
from fraud_platform_tests.lake.fixtures import D1, land_scenario, tx, write_raw

REPO = Path(__file__).resolve().parents[2]


def test_freshness_policies_are_on_the_asset_specs():
    from fraud_platform.defs.freshness import FRESHNESS_POLICIES
    from fraud_platform.definitions import defs

    graph = defs.get_repository_def().asset_graph
    for key in ("raw_transactions", "raw_labels", "processed_transactions", "sandbox_transactions"):
        assert graph.get(dg.AssetKey(key)).freshness_policy == FRESHNESS_POLICIES[dg.AssetKey(key)]
    marts = [k for k in FRESHNESS_POLICIES if graph.has(k) and k.path[0].startswith(("fct_", "dim_", "mart_"))]
    for key in marts:
        assert graph.get(key).freshness_policy is not None
    assert isinstance(graph.get(dg.AssetKey("processed_transactions")).freshness_policy, dg.FreshnessPolicy)


def test_spark_resource_comes_from_settings(monkeypatch):
    monkeypatch.setenv("FRAUD_SPARK_MASTER", "spark://spark-master:7077")
    monkeypatch.setenv("FRAUD_SPARK_SHUFFLE_PARTITIONS", "8")
    spark = build_resources(PlatformSettings.from_env())["spark"]
    assert isinstance(spark, SparkResource)
    assert (spark.master, spark.shuffle_partitions, spark.ui_enabled) == ("spark://spark-master:7077", 8, False)
    monkeypatch.delenv("FRAUD_SPARK_MASTER")
    assert build_resources(PlatformSettings.from_env())["spark"].master == "local[*]"


def _checks_by_asset(result) -> dict[str, bool]:
    return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_blocking_check_failure_stops_the_sandbox(spark, lake_root, monkeypatch):
    store = LocalLakeStore(lake_root)
    land_scenario(store)
    resources = {"lake": LakeResource(root=str(lake_root)), "spark": SparkResource(master="local[2]"),
                 # the crafted day is half fraud on purpose
                 "lake_processing": LakeProcessingResource(fraud_rate_max=0.6)}
    assets = [processed_transactions, sandbox_transactions, *LAKE_CHECKS]

    good = dg.materialize(assets, partition_key=D1.isoformat(), resources=resources, raise_on_error=False,
                          instance=dg.DagsterInstance.ephemeral())
    assert good.success
    assert _checks_by_asset(good) == {"processed_transactions": True, "sandbox_transactions": True}
    sandbox_files = store.parquet_keys("sandbox", "transactions", D1)
    assert sandbox_files

    write_raw(store, "transactions", D1, [tx("tx666666", "2026-01-05T15:00:00", -5.0)], part="9")  # negative amount
    bad = dg.materialize(assets, partition_key=D1.isoformat(), resources=resources, raise_on_error=False,
                         instance=dg.DagsterInstance.ephemeral())

    assert not bad.success
    materialized = {e.asset_key.to_user_string() for e in bad.get_asset_materialization_events()}
    assert materialized == {"processed_transactions"}  # sandbox never ran
    evaluation = next(e for e in bad.get_asset_check_evaluations() if e.asset_key.to_user_string() == "processed_transactions")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "tx666666" in evaluation.metadata["failing_transaction_ids"].value
    assert "amount_eur" in evaluation.description
    assert store.parquet_keys("sandbox", "transactions", D1) == sandbox_files


@pytest.mark.slow
def test_partition_range_materialises_from_the_cli(tmp_path):
    lake = tmp_path / "lake"
    land_scenario(LocalLakeStore(lake))
    (tmp_path / "dagster").mkdir()
    env = {
        **os.environ,
        "FRAUD_PLATFORM_HOME": str(tmp_path / "home"),
        "FRAUD_LAKE_ROOT": str(lake),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "FRAUD_SPARK_MASTER": "local[2]",
        "FRAUD_DQ_ROW_COUNT_TOLERANCE": "0.9",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "fraud_platform.definitions",
         "--select", "processed_transactions", "--partition-range", "2026-01-05...2026-01-10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RUN_SUCCESS" in proc.stderr
    store = LocalLakeStore(lake)
    assert store.partition_dates("processed", "transactions") == ["2026-01-05", "2026-01-10"]  # days without raw: none
    assert store.read_partition("processed", "transactions", "2026-01-05").num_rows == 6
