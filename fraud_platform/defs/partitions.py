"""The daily partitioning shared by every date-partitioned asset (UTC event dates)."""

import dagster as dg

from fraud_platform.settings import OrchestrationSettings

PARTITIONS_START = OrchestrationSettings.from_env().partitions_start

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
