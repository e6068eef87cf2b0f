"""dbt tests are Dagster asset checks that fail on bad lake data and stop it at staging."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fraud_platform_tests.warehouse.conftest import materialize_warehouse, warehouse_settings
from fraud_platform_tests.warehouse.lake_fixture import crafted_fixture, write_fixture

pytestmark = pytest.mark.slow


def test_duplicate_transaction_id_fails_the_unique_check_and_blocks_the_marts(tmp_path: Path):
    lake_root = tmp_path / "lake"
    write_fixture(lake_root, crafted_fixture())
    # A partition written twice (a retried job that did not replace its output): every id duplicated.
    partition = lake_root / "processed" / "transactions" / "date=2026-03-02"
    pq.write_table(pq.read_table(partition / "part-00000.parquet"), partition / "part-00001.parquet")

    result = materialize_warehouse(warehouse_settings(lake_root, tmp_path / "fraud.duckdb"))

    assert not result.success
    failed = {(e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {("stg_transactions", "unique_stg_transactions_transaction_id")}
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "stg_transactions" in materialized
    assert not materialized & {"fct_transactions", "mart_daily_fraud_kpis"}
