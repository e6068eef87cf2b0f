"""New raw data → lake runs for exactly the partitions it changed.

New transactions on day D change processed/sandbox D. Labels that became known on day Q change
the label columns of the transactions of days [Q - maturity, Q], and make partition Q - maturity
mature for the sandbox. Run keys carry the triggering event's storage id, so an event is acted on
once, while a later landing into the same partition triggers again."""

from datetime import date, timedelta

import dagster as dg

from fraud_platform.defs.jobs import SENSOR_STATUS

from fraud_platform.defs.partitions import daily_partitions
from fraud_platform.settings import LakeProcessingSettings

RAW_TRANSACTIONS = dg.AssetKey("raw_transactions")
RAW_LABELS = dg.AssetKey("raw_labels")


def partitions_to_rebuild(transaction_days: dict[str, int], label_days: dict[str, int], maturity_days: int, valid: set[str]) -> dict[str, int]:
    """{partition: triggering storage id} for the lake job (newest trigger per partition)."""
    wanted: dict[str, int] = {}

    def want(day: str, storage_id: int) -> None:
        if day in valid:
            wanted[day] = max(wanted.get(day, 0), storage_id)

    for day, storage_id in transaction_days.items():
        want(day, storage_id)
    for day, storage_id in label_days.items():
        known = date.fromisoformat(day)
        for back in range(maturity_days + 1):
            want((known - timedelta(days=back)).isoformat(), storage_id)
    return wanted


@dg.multi_asset_sensor(
    monitored_assets=[RAW_TRANSACTIONS, RAW_LABELS],
    job_name="build_lake_daily",
    name="lake_on_new_raw_data",
    default_status=SENSOR_STATUS,
    description="Requests build_lake_daily for exactly the partitions new transactions or newly known labels changed.",
)
def lake_on_new_raw_data(context: dg.MultiAssetSensorEvaluationContext):
    transactions = {p: r.storage_id for p, r in context.latest_materialization_records_by_partition(RAW_TRANSACTIONS).items()}
    labels = {p: r.storage_id for p, r in context.latest_materialization_records_by_partition(RAW_LABELS).items()}
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    wanted = partitions_to_rebuild(transactions, labels, LakeProcessingSettings.from_env().label_maturity_days, valid)
    context.advance_all_cursors()
    if not wanted:
        return dg.SkipReason("no new raw partitions")
    return [
        dg.RunRequest(partition_key=day, run_key=f"lake:{day}:{storage_id}", tags={"fraud_platform/trigger": "new_raw_data"})
        for day, storage_id in sorted(wanted.items())
    ]
