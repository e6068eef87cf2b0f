"""Dagster definitions for the warehouse domain: the dbt project (dbt/) on DuckDB or Postgres."""

import dagster as dg

from fraud_platform.defs.warehouse.assets import WAREHOUSE_POOL, warehouse_dbt_assets

defs = dg.Definitions(assets=[warehouse_dbt_assets])

__all__ = ["WAREHOUSE_POOL", "defs", "warehouse_dbt_assets"]
