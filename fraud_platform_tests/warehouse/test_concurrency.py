"""DuckDB admits one writing process, yet concurrent warehouse builds must not fail with lock
errors: runs are serialised by the Dagster pool `duckdb_warehouse` (limit 1, as documented for
deployments) and, on an instance without a pool limit, by the dbt resource's file lock. Real
`dagster asset materialize` subprocesses, real dbt, real DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from fraud_platform.defs.warehouse.assets import WAITING_FOR_WRITE_LOCK, WAREHOUSE_POOL
from fraud_platform.warehouse import duckdb_write_lock
from fraud_platform_tests.warehouse.lake_fixture import crafted_fixture, write_fixture

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL_LIMIT_CONFIG = "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"
NO_LIMIT_CONFIG = "telemetry:\n  enabled: false\n"
LOCK_ERRORS = ("Could not set lock", "Conflicting lock")


def start_materialize(tmp_path: Path, instance_config: str, runs: int) -> tuple[list[subprocess.Popen], Path, Path]:
    """Start ``runs`` materializations of the whole warehouse against one lake, one DuckDB file
    and one Dagster instance configured with ``instance_config``."""
    lake_root = tmp_path / "lake"
    write_fixture(lake_root, crafted_fixture())
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_config)
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass  # create the instance's storage once, before the processes race to
    duckdb_path = tmp_path / "warehouse" / "fraud.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FRAUD_LAKE_ROOT": str(lake_root),
        "FRAUD_DUCKDB_PATH": str(duckdb_path),
        "FRAUD_DBT_TARGET": "duckdb",
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "fraud_platform_tests.warehouse.warehouse_location", "--select", "*",
        "--config-json", '{"execution": {"config": {"in_process": {}}}}',
    ]
    processes = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(runs)
    ]
    return processes, dagster_home, duckdb_path


def assert_succeeded(process: subprocess.Popen, output: str) -> None:
    assert process.returncode == 0, output[-4000:]
    assert not any(error in output for error in LOCK_ERRORS), output[-4000:]


def test_two_concurrent_runs_queue_on_the_pool_and_both_succeed(tmp_path: Path):
    processes, dagster_home, duckdb_path = start_materialize(tmp_path, POOL_LIMIT_CONFIG, runs=2)
    outputs = [process.communicate(timeout=900)[0] for process in processes]

    for process, output in zip(processes, outputs):
        assert_succeeded(process, output)
    # One run's step really waited for the other's pool slot.
    assert any(f"Step blocked by limit for pool {WAREHOUSE_POOL}" in output for output in outputs)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert [r.dagster_run.status for r in instance.get_run_records()] == [dg.DagsterRunStatus.SUCCESS] * 2
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        assert con.execute("select count(*) from fct_transactions").fetchone()[0] == len(crafted_fixture().processed)


def test_without_a_pool_limit_a_build_waits_for_another_duckdb_writer(tmp_path: Path):
    """Another process holds the DuckDB file open for writing (and its write lock): the build waits
    for it instead of failing, then succeeds once the writer is done."""
    duckdb_path = tmp_path / "warehouse" / "fraud.duckdb"
    with duckdb_write_lock(duckdb_path), duckdb.connect(str(duckdb_path)) as other_writer:
        other_writer.execute("create table written_by_someone_else as select 1 as x")
        [process], _, _ = start_materialize(tmp_path, NO_LIMIT_CONFIG, runs=1)
        seen = []
        for line in process.stdout:
            seen.append(line)
            if WAITING_FOR_WRITE_LOCK in line:
                break
        else:
            pytest.fail("the build never waited for the write lock:\n" + "".join(seen)[-4000:])
    output = "".join(seen) + process.communicate(timeout=900)[0]

    assert_succeeded(process, output)
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        tables = {row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {"written_by_someone_else", "mart_daily_fraud_kpis"} <= tables
