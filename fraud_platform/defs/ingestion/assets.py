"""Landing assets: Kafka topics → raw zone (validated) and dead-letter topics → quarantine zone.

Kafka is not addressable by event date, so materialising any daily partition of ``raw_*`` lands
everything the topic holds beyond the last committed manifest (see infra.landing for the
exactly-once protocol) and reports the requested partitions. Other dates that received rows in the
same run are recorded as runtime materializations, so the UI and sensors see every new partition.
Re-materialising a partition is idempotent: nothing new is consumed twice.
"""


from typing import Callable

import dagster as dg

from fraud_platform.defs.owners import DATA_ENGINEERING
from fraud_platform.defs.partitions import daily_partitions
from fraud_platform.defs.resources import KafkaResource, LakeResource
from fraud_platform.infra.landing import LandingEngine, LandingResult, LandingSpec
from fraud_platform.infra.landing_specs import labels_spec, quarantine_spec, transactions_spec
from fraud_platform.infra.lake import LakeStore
from fraud_platform.reports import markdown_table
from fraud_platform.settings import TopicNames

PREVIEW_ROWS = 5


def _preview(store: LakeStore, spec: LandingSpec, day: str | None) -> str:
    keys = store.parquet_keys(spec.zone, spec.dataset, day)[:1]
    table = store.read_parquet(keys)
    if table is None or table.num_rows == 0:
        return "_no rows_"
    frame = table.slice(0, PREVIEW_ROWS).to_pandas()
    frame = frame[[c for c in frame.columns if not c.startswith("_") and c not in ("original_value", "original_key")]]
    return markdown_table(frame, max_rows=PREVIEW_ROWS)


def _landing_metadata(result: LandingResult) -> dict[str, object]:
    return {
        "consumed_this_run": result.consumed,
        "landed_this_run": result.valid,
        "dead_lettered_this_run": result.dead_lettered,
        "rejections_by_rule": dg.MetadataValue.json(result.rejections_by_rule),
        "offset_ranges_this_run": dg.MetadataValue.json(result.ranges),
        "batches_this_run": [b.batch_id for b in result.batches],
        "orphan_files_removed": len(result.orphans_removed),
    }


def _partition_metadata(engine: LandingEngine, days: list[str]) -> dict[str, object]:
    """Rows and the offset ranges that fed the given days, from the committed manifests."""
    store, spec = engine.store, engine.spec
    tables = {d: store.read_partition(spec.zone, spec.dataset, d, columns=[spec.dedupe_columns[0]]) for d in days}
    rows = {d: table.num_rows if table is not None else 0 for d, table in tables.items()}
    offsets = {
        m.batch_id: m.ranges for m in engine.manifests() if any(d in m.rows_by_date for d in days)
    }
    return {
        "dagster/row_count": sum(rows.values()),
        "rows_by_date": dg.MetadataValue.json(rows),
        "offset_ranges_by_batch": dg.MetadataValue.json(offsets),
        "preview": dg.MetadataValue.md(_preview(store, spec, days[0]) if days else "_no rows_"),
        "path": dg.MetadataValue.path(store.uri(f"{spec.zone}/{spec.dataset}")),
    }


def landing_asset(
    name: str,
    spec_for: Callable[[TopicNames], LandingSpec],
    description: str,
    partitioned: bool,
    deps: list[str] | None = None,
) -> dg.AssetsDefinition:
    """Build a landing asset: one implementation for raw and quarantine datasets."""

    @dg.asset(
        name=name,
        group_name="ingestion",
        description=description,
        owners=[DATA_ENGINEERING],
        kinds={"kafka", "parquet"},
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool="kafka_landing",
        deps=deps,
    )
    def _landing(context: dg.AssetExecutionContext, lake: LakeResource, kafka: KafkaResource) -> dg.MaterializeResult:
        engine = LandingEngine(lake.store(), kafka, spec_for(kafka.topics))
        result = engine.land()
        context.log.info(
            f"{name}: consumed {result.consumed} = {result.valid} landed + {result.dead_lettered} dead-lettered "
            f"{result.rejections_by_rule}; offsets {result.ranges}; rows by date {result.rows_by_date}"
        )
        if partitioned:
            days = list(context.partition_keys)
            for other in sorted(set(result.rows_by_date) - set(days)):
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key, partition=other,
                        description="Landed by a run for another partition (Kafka is read in offset order).",
                        metadata={"dagster/row_count": result.rows_by_date[other], "landing_run": context.run.run_id},
                    )
                )
        else:  # report what this run landed, or the newest day when it landed nothing
            days = sorted(result.rows_by_date) or engine.store.partition_dates(engine.spec.zone, engine.spec.dataset)[-1:]
        return dg.MaterializeResult(metadata={**_landing_metadata(result), **_partition_metadata(engine, days)})

    return _landing


raw_transactions = landing_asset(
    "raw_transactions",
    transactions_spec,
    "Card transactions from the `transactions` topic that passed schema and business validation, "
    "landed exactly once as daily Parquet (raw/transactions/date=…) with Kafka lineage columns. "
    "Rejected records go to `transactions.dlq` with their reason.",
    partitioned=True,
)
raw_labels = landing_asset(
    "raw_labels",
    labels_spec,
    "Fraud outcomes (chargebacks/confirmations) from the `labels` topic, partitioned by the date "
    "they became known (raw/labels/date=…). They arrive days after the transaction, as in real card fraud.",
    partitioned=True,
)
quarantined_transactions = landing_asset(
    "quarantined_transactions",
    lambda topics: quarantine_spec(topics, "transactions"),
    "Every transaction rejected on ingestion (from `transactions.dlq`): original bytes, rule, field, "
    "value, message and source offset. Nothing is dropped: consumed = landed + quarantined.",
    partitioned=False,
    deps=["raw_transactions"],
)
quarantined_labels = landing_asset(
    "quarantined_labels",
    lambda topics: quarantine_spec(topics, "labels"),
    "Every label rejected on ingestion (from `labels.dlq`), with its reason and source offset.",
    partitioned=False,
    deps=["raw_labels"],
)


def reconcile_manifests(engine: LandingEngine) -> tuple[list[str], dict[str, object]]:
    """Problems found comparing what the lake holds with the Kafka offsets each batch committed.

    Per committed batch: its files exist, the rows in them (Parquet footers) plus its dead letters
    equal the offset span it consumed, and its ranges continue where the previous batch stopped.
    A deleted or truncated landed file therefore fails the check, naming batch and file."""
    problems: list[str] = []
    ends: dict[str, int] = {}
    totals = {"batches": 0, "offset_span": 0, "rows_in_lake": 0, "dead_lettered": 0}
    for m in sorted(engine.manifests(), key=lambda m: m.batch_id):
        span = sum(end - start for start, end in m.ranges.values())
        written = 0
        for key in m.files:
            if engine.store.exists(key):
                written += engine.store.parquet_rows(key)
            else:
                problems.append(f"batch {m.batch_id}: landed file {key} is missing")
        if written + m.dead_lettered != span:
            problems.append(f"batch {m.batch_id}: {written} rows in the lake + {m.dead_lettered} dead-lettered != "
                            f"offset span {span} ({m.ranges})")
        for p, (start, end) in sorted(m.ranges.items()):
            if p in ends and start != ends[p]:
                problems.append(f"batch {m.batch_id}: partition {p} starts at {start}, previous batch ended at {ends[p]}")
            ends[p] = end
        totals = {"batches": totals["batches"] + 1, "offset_span": totals["offset_span"] + span,
                  "rows_in_lake": totals["rows_in_lake"] + written, "dead_lettered": totals["dead_lettered"] + m.dead_lettered}
    return problems, {**totals, "end_offsets": ends}


def _reconciliation_check(asset: dg.AssetsDefinition, spec_for: Callable[[TopicNames], LandingSpec]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="offsets_reconcile",
        description="Every consumed record is in the lake or dead-lettered exactly once: per committed batch, "
        "rows actually in its files + dead letters = its Kafka offset span, files exist, and batch offset "
        "ranges are contiguous with no overlap.",
    )
    def _check(lake: LakeResource, kafka: KafkaResource) -> dg.AssetCheckResult:
        engine = LandingEngine(lake.store(), kafka, spec_for(kafka.topics))
        problems, totals = reconcile_manifests(engine)
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems[:3]) or None,
            metadata={**{k: v for k, v in totals.items() if k != "end_offsets"}, "consumed": totals["offset_span"],
                      "end_offsets": dg.MetadataValue.json(totals["end_offsets"]), "problems": dg.MetadataValue.json(problems[:20])},
        )

    return _check


reconciliation_checks = [
    _reconciliation_check(raw_transactions, transactions_spec),
    _reconciliation_check(raw_labels, labels_spec),
]
