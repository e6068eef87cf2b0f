"""Dagster definitions for the lake domain: processed and sandbox zones (Spark) and the GX checks
guarding raw, processed and sandbox partitions."""

import dagster as dg

from fraud_platform.defs.lake.assets import processed_transactions, sandbox_transactions
from fraud_platform.defs.lake.checks import LAKE_CHECKS, RAW_CHECKS

defs = dg.Definitions(
    assets=[processed_transactions, sandbox_transactions],
    asset_checks=[*RAW_CHECKS, *LAKE_CHECKS],
)
