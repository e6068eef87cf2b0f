"""Jobs named for what they do, their schedules, and the declarative automation applied in one
place. Sensors that request these jobs live with the domain they watch."""

import os

import dagster as dg

from fraud_platform.defs.partitions import daily_partitions

# Whether schedules and sensors start running with a fresh instance (FRAUD_AUTOMATION_DEFAULT_STATUS
# = running | stopped); operators toggle them individually in the UI either way.
AUTOMATION_RUNNING = os.environ.get("FRAUD_AUTOMATION_DEFAULT_STATUS", "running").lower() != "stopped"
SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if AUTOMATION_RUNNING else dg.DefaultScheduleStatus.STOPPED
SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if AUTOMATION_RUNNING else dg.DefaultSensorStatus.STOPPED

RAW_ASSETS = ["raw_transactions", "raw_labels"]
LAKE_ASSETS = ["processed_transactions", "sandbox_transactions"]
MODEL_ASSETS = ["customer_features", "terminal_features", "online_feature_snapshot", "transaction_features", "fraud_model", "model_evaluation", "champion_model"]

ingest_daily = dg.define_asset_job(
    "ingest_daily",
    selection=dg.AssetSelection.assets(*RAW_ASSETS),
    partitions_def=daily_partitions,
    description="Land yesterday's transactions and labels from Kafka into the raw zone.",
)
build_lake_daily = dg.define_asset_job(
    "build_lake_daily",
    selection=dg.AssetSelection.assets(*LAKE_ASSETS),
    partitions_def=daily_partitions,
    description="PySpark processed + sandbox zones for a partition (requested by the new-data sensor).",
)
retrain_model = dg.define_asset_job(
    "retrain_model",
    selection=dg.AssetSelection.assets(*MODEL_ASSETS),
    description="Rebuild feature tables, train, evaluate and (maybe) promote a new champion.",
)

# Daily ingestion → lake → dbt: the schedule lands yesterday; the new-data sensor then requests the
# lake partitions that changed, and the dbt marts follow their sources by themselves (eager).
ingest_daily_schedule = dg.build_schedule_from_partitioned_job(
    ingest_daily, hour_of_day=0, minute_of_hour=30, default_status=SCHEDULE_STATUS
)
weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain",
    job=retrain_model,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=SCHEDULE_STATUS,
    description="Retrain every Monday 03:00 UTC even without drift, so the model sees the newest matured labels.",
)

# eager() waits until no upstream partition is missing; below daily-partitioned assets that never
# happens (today's partition is always missing), so unpartitioned followers drop that clause.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
DAILY = dg.AutomationCondition.on_cron("0 6 * * *", "UTC")
# Assets that follow their upstreams by themselves; everything else runs from jobs and sensors.
AUTOMATION_BY_KEY = {
    "quarantined_transactions": FOLLOW_UPSTREAM,
    "quarantined_labels": FOLLOW_UPSTREAM,
    "feature_drift_report": DAILY,
    "live_model_performance": DAILY,
}
AUTOMATION_BY_GROUP = {"warehouse": FOLLOW_UPSTREAM}


def apply_automation(spec: dg.AssetSpec) -> dg.AssetSpec:
    condition = AUTOMATION_BY_KEY.get(spec.key.to_user_string()) or AUTOMATION_BY_GROUP.get(spec.group_name or "")
    if condition is None or spec.automation_condition is not None:
        return spec
    return spec.replace_attributes(automation_condition=condition)


# Declared explicitly (instead of Dagster's implicit default sensor) so it honours the default status.
automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor", target=dg.AssetSelection.all(), default_status=SENSOR_STATUS,
    description="Evaluates the declarative automation conditions of every asset.",
)

defs = dg.Definitions(
    jobs=[ingest_daily, build_lake_daily, retrain_model],
    schedules=[ingest_daily_schedule, weekly_retrain_schedule],
    sensors=[automation_condition_sensor],
)
