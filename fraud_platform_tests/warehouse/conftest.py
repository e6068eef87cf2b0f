"""Warehouse test helpers: settings pointing at a crafted lake and a private DuckDB file, and a
materialize of the dbt assets with the real WarehouseDbtResource (real dbt, real DuckDB/Postgres)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.defs.resources import build_resources
from fraud_platform.settings import LakeSettings, PlatformSettings
from fraud_platform_tests.warehouse.lake_fixture import LakeFixture, crafted_fixture, write_fixture


def warehouse_settings(lake_root: Path, duckdb_path: Path, **warehouse: object) -> PlatformSettings:
    base = PlatformSettings.from_env()
    return base.model_copy(
        update={
            "lake": LakeSettings(root=str(lake_root)),
            "warehouse": base.warehouse.model_copy(update={"duckdb_path": str(duckdb_path), **warehouse}),
        }
    )


def materialize_warehouse(settings: PlatformSettings, **kwargs: object) -> dg.ExecuteInProcessResult:
    from fraud_platform.defs.warehouse import warehouse_dbt_assets

    resources = build_resources(settings)
    return dg.materialize(
        [warehouse_dbt_assets],
        resources={"dbt": resources["dbt"], "lake": resources["lake"]},
        raise_on_error=False,
        **kwargs,
    )


def materialization(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetMaterialization:
    [event] = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key == dg.AssetKey(name)
    ]
    return event


@pytest.fixture(scope="module")
def crafted_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LakeFixture]:
    root = tmp_path_factory.mktemp("lake")
    fixture = crafted_fixture()
    write_fixture(root, fixture)
    return root, fixture
