"""The Dagster instance configurations: deploy/dagster.yaml against a real PostgreSQL server
(a throwaway database, dropped afterwards) and deploy/dagster.local.yaml with SQLite."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.instance.config import PoolGranularity
from dagster._core.run_coordinator import QueuedRunCoordinator
from psycopg import sql

from fraud_platform_tests.deploy._compose import DEPLOY

# The test server: PostgreSQL on this machine (trust auth). Override with the usual PG* vars.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("PGPORT", "5432")
PG_USER = os.environ.get("PGUSER", "postgres")
PG_PASSWORD = os.environ.get("PGPASSWORD", "unused-with-trust-auth")


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname="postgres", autocommit=True, connect_timeout=5,
    )


def _pool_limits_module():
    sys.path.insert(0, str(DEPLOY))
    try:
        import apply_pool_limits
    finally:
        sys.path.remove(str(DEPLOY))
    return apply_pool_limits


@pytest.fixture()
def postgres_database():
    """A fresh database on the real server for one test; dropped (connections closed) after."""
    name = f"fraud_dagster_test_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _admin_connection() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _home_with(tmp_path: Path, config: str) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / config, home / "dagster.yaml")
    return home


@dg.asset(pool="duckdb_warehouse")
def deploy_probe() -> dg.MaterializeResult:
    """A small real asset in the single-writer warehouse pool."""
    return dg.MaterializeResult(metadata={"rows": 3})


def _expected(config: str) -> dict:
    return yaml.safe_load((DEPLOY / config).read_text())


def test_production_instance_on_postgres(tmp_path, monkeypatch, postgres_database):
    for key, value in {
        "DAGSTER_POSTGRES_HOST": PG_HOST, "DAGSTER_POSTGRES_PORT": PG_PORT, "DAGSTER_POSTGRES_DB": postgres_database,
        "DAGSTER_POSTGRES_USER": PG_USER, "DAGSTER_POSTGRES_PASSWORD": PG_PASSWORD,
    }.items():
        monkeypatch.setenv(key, value)
    home = _home_with(tmp_path, "dagster.yaml")
    expected = _expected("dagster.yaml")

    with DagsterInstance.from_config(str(home)) as instance:
        # Storage: all three on Postgres (dagster-postgres).
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        # Queued runs with the configured run and tag limits; run monitoring and retries on.
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        runs = expected["concurrency"]["runs"]
        assert concurrency.run_queue_config.max_concurrent_runs == runs["max_concurrent_runs"] == 4
        tag_limits = {(limit["key"], str(limit.get("value"))): limit["limit"] for limit in concurrency.run_queue_config.tag_concurrency_limits}
        assert tag_limits[("fraud_platform/compute", "spark")] == 2
        assert tag_limits[("dagster/backfill", str({"applyLimitPerUniqueValue": True}))] == 2
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1

        # Named pool limits, applied exactly as the dagster-init service does.
        applied = _pool_limits_module().apply_pool_limits(instance, _pool_limits_module().load_pool_limits())
        assert applied == {"duckdb_warehouse": 1, "kafka_landing": 1}

        result = dg.materialize([deploy_probe], instance=instance)
        assert result.success
        run_id = result.run_id

        # The single-writer limit holds across runs: one slot, taken by the first claimant only.
        storage = instance.event_log_storage
        first = storage.claim_concurrency_slot("duckdb_warehouse", "run-a", "step-a")
        second = storage.claim_concurrency_slot("duckdb_warehouse", "run-b", "step-b")
        assert first.is_claimed and not second.is_claimed
        storage.free_concurrency_slots_for_run("run-a")
        storage.free_concurrency_slots_for_run("run-b")

    # Read back through a new instance (nothing cached in-process) ...
    with DagsterInstance.from_config(str(home)) as reopened:
        assert reopened.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        event = reopened.get_latest_materialization_event(dg.AssetKey("deploy_probe"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization.metadata["rows"].value == 3
        assert reopened.event_log_storage.get_concurrency_info("kafka_landing").slot_count == 1

    # ... and straight from the Postgres tables.
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname=postgres_database) as conn:
        assert conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone() == ("SUCCESS",)
        materializations = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        ).fetchone()[0]
        assert materializations == 1
        limits = dict(conn.execute("SELECT concurrency_key, \"limit\" FROM concurrency_limits").fetchall())
        assert limits["duckdb_warehouse"] == 1 and limits["kafka_landing"] == 1


def test_production_instance_reads_its_connection_from_env_only():
    """No connection detail is written into deploy/dagster.yaml: every field is an env source."""
    postgres_db = _expected("dagster.yaml")["storage"]["postgres"]["postgres_db"]
    assert postgres_db.pop("scheme") == "postgresql+psycopg2"
    assert set(postgres_db) == {"hostname", "port", "db_name", "username", "password"}
    assert all(set(value) == {"env"} for value in postgres_db.values())


def test_local_instance_uses_sqlite_with_the_same_pools(tmp_path):
    home = _home_with(tmp_path, "dagster.local.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        from dagster._core.storage.event_log import SqliteEventLogStorage
        from dagster._core.storage.runs import SqliteRunStorage
        from dagster._core.storage.schedules import SqliteScheduleStorage

        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
        assert isinstance(instance.schedule_storage, SqliteScheduleStorage)
        assert Path(instance.root_directory) == home  # SQLite files under DAGSTER_HOME

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == _expected("dagster.local.yaml")["concurrency"]["runs"]["max_concurrent_runs"]
        assert concurrency.pool_config.default_pool_limit == _expected("dagster.yaml")["concurrency"]["pools"]["default_limit"] == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP

        applied = _pool_limits_module().apply_pool_limits(instance, _pool_limits_module().load_pool_limits())
        assert applied == {"duckdb_warehouse": 1, "kafka_landing": 1}
        result = dg.materialize([deploy_probe], instance=instance)
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("deploy_probe")).run_id == result.run_id
    assert list(home.glob("history/runs.db")) or list(home.rglob("*.db")), "SQLite storage files not created"


def test_local_pool_semantics_match_production():
    local, production = _expected("dagster.local.yaml"), _expected("dagster.yaml")
    assert local["concurrency"]["pools"] == production["concurrency"]["pools"]
    assert local["run_coordinator"] == production["run_coordinator"]
    assert "storage" not in local  # Dagster's SQLite default under DAGSTER_HOME


def test_apply_pool_limits_cli_sets_limits_on_the_instance_in_dagster_home(tmp_path):
    """`python deploy/apply_pool_limits.py` (the command of the dagster-init service)."""
    import subprocess

    home = _home_with(tmp_path, "dagster.local.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "apply_pool_limits.py")], env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "pool duckdb_warehouse: limit 1" in result.stdout
    with DagsterInstance.from_config(str(home)) as instance:
        limits = {limit.name: limit.limit for limit in instance.event_log_storage.get_pool_limits()}
    assert limits == {"duckdb_warehouse": 1, "kafka_landing": 1}
