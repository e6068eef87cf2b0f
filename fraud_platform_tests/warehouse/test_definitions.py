"""The warehouse's Dagster shape, read from the definitions (no dbt run): lineage from the lake
assets, group, owners, pool, dbt tests as checks, and the dbt contract matching the domain's."""

from __future__ import annotations

import json

import dagster as dg
import pytest
import yaml

from fraud_platform.defs import warehouse
from fraud_platform.defs.owners import ANALYTICS_ENGINEERING
from fraud_platform.defs.resources import WarehouseDbtResource, build_resources
from fraud_platform.defs.warehouse.assets import WAREHOUSE_POOL, warehouse_dbt_assets
from fraud_platform.defs.warehouse.project import warehouse_project
from fraud_platform.domain.schema import CHANNELS, COUNTRIES, MERCHANT_CATEGORIES
from fraud_platform.warehouse import DBT_PROJECT_DIR


def test_dbt_sources_are_the_lake_assets():
    deps = warehouse_dbt_assets.asset_deps
    assert deps[dg.AssetKey("stg_transactions")] == {dg.AssetKey("processed_transactions")}
    assert deps[dg.AssetKey("stg_sandbox_transactions")] == {dg.AssetKey("sandbox_transactions")}
    assert deps[dg.AssetKey("fct_transactions")] == {
        dg.AssetKey("stg_transactions"), dg.AssetKey("stg_sandbox_transactions")
    }


def test_models_are_in_group_warehouse_owned_by_analytics_engineering_in_the_duckdb_pool():
    specs = list(warehouse_dbt_assets.specs)
    assert {s.group_name for s in specs} == {"warehouse"}
    assert all(list(s.owners) == [ANALYTICS_ENGINEERING] for s in specs)
    assert warehouse_dbt_assets.op.pool == WAREHOUSE_POOL == "duckdb_warehouse"


def test_every_dbt_test_is_an_asset_check_on_its_model():
    manifest = json.loads(warehouse_project.manifest_path.read_text())
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    checks = {(key.asset_key.path[-1], key.name) for key in warehouse_dbt_assets.check_keys}
    assert len(checks) == len(tests) > 40
    assert ("fct_transactions", "unique_fct_transactions_transaction_id") in checks
    assert ("mart_daily_fraud_kpis", "assert_daily_kpis_reconcile_with_fct") in checks


def test_warehouse_code_location_loads_with_the_platform_resources():
    resources = build_resources()
    assert isinstance(resources["dbt"], WarehouseDbtResource)
    dg.Definitions.validate_loadable(dg.Definitions.merge(warehouse.defs, dg.Definitions(resources=resources)))


def test_accepted_values_match_the_domain_contract():
    """The dbt YAML repeats the domain's enumerations; this keeps them from drifting (and caught
    YAML reading the country code NO as false)."""
    staging = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "_staging.yml").read_text())
    [model] = [m for m in staging["models"] if m["name"] == "stg_transactions"]
    values = {
        column["name"]: test["accepted_values"]["arguments"]["values"]
        for column in model["columns"]
        for test in column.get("data_tests", [])
        if isinstance(test, dict) and "accepted_values" in test
    }
    assert values["channel"] == list(CHANNELS)
    assert set(values["country"]) == set(COUNTRIES) and len(values["country"]) == len(COUNTRIES)
    assert set(values["merchant_category"]) == set(MERCHANT_CATEGORIES)


def test_lineage_joins_the_daily_partitioned_lake_assets_in_one_graph():
    """With the lake's daily-partitioned assets in the same code location, the marts hang below
    them in one asset graph (every partition upstream of the unpartitioned warehouse)."""
    from fraud_platform.defs.partitions import daily_partitions

    lake_assets = [
        dg.AssetSpec(name, group_name="lake", partitions_def=daily_partitions)
        for name in ("processed_transactions", "sandbox_transactions")
    ]
    defs = dg.Definitions(assets=[*lake_assets, warehouse_dbt_assets], resources=build_resources())
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    upstream = graph.get_ancestor_asset_keys(dg.AssetKey("mart_daily_fraud_kpis"))
    assert {dg.AssetKey("processed_transactions"), dg.AssetKey("sandbox_transactions")} <= set(upstream)


@pytest.mark.slow
def test_platform_code_location_wires_the_lake_assets_into_the_warehouse():
    """In the real code location the dbt sources are the lake domain's own daily assets."""
    from fraud_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    for source, staging in (("processed_transactions", "stg_transactions"), ("sandbox_transactions", "stg_sandbox_transactions")):
        lake_asset = graph.get(dg.AssetKey(source))
        assert lake_asset.is_materializable and lake_asset.group_name == "lake"
        assert graph.get(dg.AssetKey(staging)).parent_keys == {dg.AssetKey(source)}
