"""Dagster definitions for the ingestion domain: Kafka → raw and quarantine zones."""

import dagster as dg

from fraud_platform.defs.ingestion.assets import (
    quarantined_labels,
    quarantined_transactions,
    raw_labels,
    raw_transactions,
    reconciliation_checks,
)
from fraud_platform.defs.ingestion.sensors import lake_on_new_raw_data

defs = dg.Definitions(
    assets=[raw_transactions, raw_labels, quarantined_transactions, quarantined_labels],
    asset_checks=reconciliation_checks,
    sensors=[lake_on_new_raw_data],
)
