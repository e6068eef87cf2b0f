"""The dbt warehouse as Dagster assets: one `dbt build` per run (models + dbt tests as asset checks),
lineage from the lake assets, and fraud-trend pictures on the KPI mart's materialization."""

from typing import Any, Iterator, Mapping, Sequence

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from fraud_platform.defs.owners import ANALYTICS_ENGINEERING
from fraud_platform.defs.resources import LakeResource, WarehouseDbtResource
from fraud_platform.defs.warehouse.project import ensure_manifest, warehouse_project
from fraud_platform.reports import kpi_report_markdown
from fraud_platform.warehouse import LAKE_SOURCES, load_lake_sources

WAREHOUSE_GROUP = "warehouse"
# Dagster concurrency pool of every run that writes the warehouse; give it limit 1 on the instance
# (`dagster instance concurrency set duckdb_warehouse 1`, or `concurrency: pools: default_limit: 1`
# in dagster.yaml) because DuckDB admits a single writing process.
WAREHOUSE_POOL = "duckdb_warehouse"
KPI_MART = dg.AssetKey("mart_daily_fraud_kpis")
WAITING_FOR_WRITE_LOCK = "Another process is writing the DuckDB warehouse; waiting for its write lock"


class WarehouseTranslator(DagsterDbtTranslator):
    """dbt sources are the lake assets (same names), so lineage runs lake -> warehouse unbroken;
    every dbt model lands in group `warehouse`, owned by analytics engineering."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["name"] in LAKE_SOURCES:
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return WAREHOUSE_GROUP

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        return [ANALYTICS_ENGINEERING]


translator = WarehouseTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _event_asset_key(context: dg.AssetExecutionContext, event: Any) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):
        return context.asset_key_for_output(event.output_name)
    return getattr(event, "asset_key", None)


@dbt_assets(
    manifest=ensure_manifest(),
    project=warehouse_project,
    dagster_dbt_translator=translator,
    pool=WAREHOUSE_POOL,
)
def warehouse_dbt_assets(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource, lake: LakeResource) -> Iterator[Any]:
    """`dbt build` of the selected models and their tests. The KPI mart's events are held back
    until dbt exits, because DuckDB cannot be read while dbt still holds it for writing; then the
    mart's output gets the trend plots and its checks follow it."""
    if dbt.target == "postgres":
        loaded = load_lake_sources(lake.store(), dbt)
        context.log.info(f"Loaded lake sources into Postgres schema {dbt.pg_source_schema}: {loaded}")
    with dbt.write_lock(on_wait=lambda: context.log.info(WAITING_FOR_WRITE_LOCK)):
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        held: list[Any] = []
        for event in invocation.stream():
            if _event_asset_key(context, event) == KPI_MART:
                held.append(event)
            else:
                yield event
        # Wait for dbt to exit, not just to close stdout: only then has it released the DuckDB file.
        succeeded = invocation.is_successful()
        for event in held:
            if isinstance(event, dg.Output):
                report = kpi_report_markdown(dbt.read_relation(KPI_MART.path[-1]))
                event = event.with_metadata({**event.metadata, **{k: dg.MetadataValue.md(v) for k, v in report.items()}})
            yield event
    if not succeeded:
        raise invocation.get_error()
