"""The daily partitioning shared by every date-partitioned asset (UTC event dates)."""

import os

import dagster as dg

PARTITIONS_START = os.environ.get("FRAUD_PARTITIONS_START", "2026-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
