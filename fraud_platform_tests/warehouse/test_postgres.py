"""The server-warehouse target: the same dbt project on the real local Postgres, sources loaded
from the lake by the Dagster step, marts equal to the pandas computation."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from fraud_platform.warehouse import pg_conninfo, read_relation
from fraud_platform_tests.warehouse import expected
from fraud_platform_tests.warehouse.conftest import materialization, materialize_warehouse, warehouse_settings

pytestmark = pytest.mark.slow


@pytest.fixture()
def postgres_settings(crafted_lake, tmp_path):
    lake_root, fixture = crafted_lake
    suffix = uuid.uuid4().hex[:8]
    settings = warehouse_settings(
        lake_root,
        tmp_path / "unused.duckdb",
        target="postgres",
        pg_database="test",
        pg_schema=f"wh_test_{suffix}",
        pg_source_schema=f"wh_test_lake_{suffix}",
    )
    yield settings, fixture
    with psycopg.connect(pg_conninfo(settings.warehouse), autocommit=True) as conn:
        for schema in (settings.warehouse.pg_schema, settings.warehouse.pg_source_schema):
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


def test_postgres_target_builds_the_same_marts(postgres_settings):
    settings, fixture = postgres_settings
    result = materialize_warehouse(settings)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert not Path(settings.warehouse.duckdb_path).exists()  # nothing went to DuckDB

    with psycopg.connect(pg_conninfo(settings.warehouse)) as conn:
        loaded = conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier(settings.warehouse.pg_source_schema, "processed_transactions"))
        ).fetchone()[0]
    assert loaded == len(fixture.processed)

    counts = ["transaction_count", "fraud_count", "matured_count"]
    floats = ["amount_eur", "fraud_amount_eur", "fraud_rate"]
    actual = expected.normalise(read_relation("mart_daily_fraud_kpis", settings.warehouse),
                                expected.GRAIN, counts, floats)
    wanted = expected.normalise(expected.daily_kpis(fixture), expected.GRAIN, counts, floats)
    pd.testing.assert_frame_equal(actual, wanted, check_exact=False, rtol=1e-9)
    assert "fraud_trends" in materialization(result, "mart_daily_fraud_kpis").metadata
