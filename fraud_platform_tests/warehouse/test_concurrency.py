"""Two warehouse builds started at the same time both succeed: DuckDB admits one writing process,
so the runs are serialised by the Dagster pool `duckdb_warehouse` (limit 1, as documented for
deployments) and, where an instance has no pool limit, by the resource's file lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.defs.warehouse.assets import WAREHOUSE_POOL
from fraud_platform_tests.warehouse.lake_fixture import crafted_fixture, write_fixture

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL_LIMIT_CONFIG = "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"
NO_LIMIT_CONFIG = "telemetry:\n  enabled: false\n"


@pytest.mark.parametrize("instance_config", [POOL_LIMIT_CONFIG, NO_LIMIT_CONFIG], ids=["pool_limit_1", "no_pool_limit"])
def test_two_concurrent_materializations_both_succeed(tmp_path: Path, instance_config: str):
    lake_root = tmp_path / "lake"
    write_fixture(lake_root, crafted_fixture())
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_config)
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass  # create the instance's storage once, before two processes race to

    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FRAUD_LAKE_ROOT": str(lake_root),
        "FRAUD_DUCKDB_PATH": str(tmp_path / "warehouse" / "fraud.duckdb"),
        "FRAUD_DBT_TARGET": "duckdb",
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "fraud_platform_tests.warehouse.warehouse_location", "--select", "*",
    ]
    runs = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]

    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-4000:]
        assert "Could not set lock" not in output and "Conflicting lock" not in output
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records()
        assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 2
        if instance_config == POOL_LIMIT_CONFIG:
            assert instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).slot_count == 1
