"""Processed and sandbox lake zones as daily-partitioned Spark assets.

Both use ``BackfillPolicy.single_run()``: a backfill of N days is one Spark job over N partitions
(one session, one shuffle), not N runs each paying Spark start-up.
"""


from datetime import date

import dagster as dg

from fraud_platform.domain import catalogue
from fraud_platform.defs.owners import DATA_ENGINEERING
from fraud_platform.defs.partitions import daily_partitions
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, SparkResource
from fraud_platform.processing import run_processed, run_sandbox
from fraud_platform.processing.zones import ImmaturePartitionsError, SPLITS_KEY
from fraud_platform.settings import LakeProcessingSettings

RAW_TRANSACTIONS = dg.AssetKey(catalogue.RAW_TRANSACTIONS.asset_key)
RAW_LABELS = dg.AssetKey(catalogue.RAW_LABELS.asset_key)
PROCESSED_TRANSACTIONS = dg.AssetKey(catalogue.PROCESSED_TRANSACTIONS.asset_key)
SANDBOX_TRANSACTIONS = dg.AssetKey(catalogue.SANDBOX_TRANSACTIONS.asset_key)

# Read once at definition time: the label window is part of the asset graph (partition mapping).
# Runs read the same settings through the ``lake_processing`` resource.
PROCESSING = LakeProcessingSettings.from_env()
MATURITY_DAYS = PROCESSING.label_maturity_days

# Labels for partition D land in raw_labels partitions D .. D+maturity (partitioned by known_at).
LABEL_WINDOW = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=MATURITY_DAYS, allow_nonexistent_upstream_partitions=True)


def _column_schema(contract) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type), description=None if f.nullable else "required") for f in contract])


def _days(context: dg.AssetExecutionContext) -> list[date]:
    return [date.fromisoformat(key) for key in context.partition_keys]


def _md(frame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_no rows_")


@dg.asset(
    key=PROCESSED_TRANSACTIONS,
    group_name="lake",
    owners=[DATA_ENGINEERING],
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(RAW_TRANSACTIONS), dg.AssetDep(RAW_LABELS, partition_mapping=LABEL_WINDOW)],
    metadata={"lake_path": f"{catalogue.PROCESSED_TRANSACTIONS.prefix}/date=YYYY-MM-DD/", "dagster/column_schema": _column_schema(catalogue.PROCESSED_TRANSACTIONS.schema)},
    description=(
        "Deduplicated (late Kafka re-deliveries dropped, first landed copy kept), typed transactions with "
        "amount_eur, time features and pseudonymous customer/card keys, joined with the labels that have "
        f"arrived within {MATURITY_DAYS} days. Rebuild a partition to pick up later labels."
    ),
)
def processed_transactions(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource,
                           lake_processing: LakeProcessingResource) -> dg.MaterializeResult:
    run = run_processed(spark.session(), lake.store(), _days(context), lake_processing.label_maturity_days)
    totals = run.totals()
    context.log.info(f"processed {len(run.days)} partitions: {totals}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": totals["processed_rows"],
            **{k: v for k, v in totals.items()},
            "partitions_built": len(run.days),
            "partitions_without_raw": [d.isoformat() for d in run.skipped_days],
            "label_partitions_read": len(run.label_partitions_read),
            "per_partition": _md(run.partitions),
            "preview": _md(run.preview),
        }
    )


@dg.asset(
    key=SANDBOX_TRANSACTIONS,
    group_name="lake",
    owners=[DATA_ENGINEERING],
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(PROCESSED_TRANSACTIONS), dg.AssetDep(RAW_LABELS, partition_mapping=LABEL_WINDOW)],
    metadata={"lake_path": f"{catalogue.SANDBOX_TRANSACTIONS.prefix}/date=YYYY-MM-DD/", "splits_file": SPLITS_KEY, "dagster/column_schema": _column_schema(catalogue.SANDBOX_TRANSACTIONS.schema)},
    description=(
        f"Training input: only partitions whose {MATURITY_DAYS}-day label window has matured "
        f"(reference: {PROCESSING.maturity_reference}), with final is_fraud, matured_at and the time split "
        "from domain.splits.plan_time_splits (plan also in sandbox/transactions/_splits.json)."
    ),
)
def sandbox_transactions(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource,
                         lake_processing: LakeProcessingResource) -> dg.MaterializeResult:
    try:
        run = run_sandbox(spark.session(), lake.store(), _days(context), lake_processing.policy())
    except ImmaturePartitionsError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    totals = run.totals()
    by_split = run.partitions.groupby("split")["rows"].sum().to_dict() if len(run.partitions) else {}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": totals["rows"],
            **totals,
            "rows_by_split": {k: int(v) for k, v in by_split.items()},
            "split_plan": dg.MetadataValue.json(run.splits.as_dict()),
            "maturity_reference_time": run.reference_time.isoformat() if run.reference_time else "none",
            "partitions_without_processed": [d.isoformat() for d in run.skipped_days],
            "per_partition": _md(run.partitions),
            "preview": _md(run.preview),
        }
    )

