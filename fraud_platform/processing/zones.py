"""Reading and writing lake zones with Spark, and the two zone builds (processed, sandbox) with the
statistics the Dagster assets publish. Writes overwrite only the daily partitions being built."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Iterable

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, RAW_LABELS, RAW_TRANSACTIONS, SANDBOX_TRANSACTIONS, Dataset
from fraud_platform.domain.catalogue import label_days as label_window
from fraud_platform.domain.splits import SplitConfig, TimeSplits, plan_time_splits
from fraud_platform.infra.lake import LakeStore, LocalLakeStore
from fraud_platform.processing.maturity import MaturityPolicy, matured_at
from fraud_platform.processing.transform import build_processed, build_sandbox, empty_frame, spark_schema

SPLITS_KEY = f"{SANDBOX_TRANSACTIONS.prefix}/_splits.json"
PREVIEW_COLUMNS = ["transaction_id", "event_time", "customer_key", "amount", "currency", "amount_eur", "channel", "is_fraud", "label_known_at"]


class ImmaturePartitionsError(ValueError):
    """Raised when a sandbox build is asked for partitions whose labels are not final yet."""


def _check_spark(spark: SparkSession, store: LakeStore) -> None:
    tz = spark.conf.get("spark.sql.session.timeZone")
    if tz != "UTC":
        raise ValueError(f"spark.sql.session.timeZone={tz!r}; the lake's daily partitions need 'UTC'")
    if not isinstance(store, LocalLakeStore):
        try:
            spark._jvm.java.lang.Class.forName("org.apache.hadoop.fs.s3a.S3AFileSystem")
        except Exception as error:  # py4j wraps ClassNotFoundException
            raise RuntimeError(
                f"lake backend is S3 ({store.uri()}) but this Spark has no s3a filesystem "
                "(hadoop-aws jar missing). Run Spark from the docker-compose image that bundles "
                "hadoop-aws, or use the local lake backend."
            ) from error


def spark_path(store: LakeStore, key: str) -> str:
    uri = store.uri(key)
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def read_partitions(spark: SparkSession, store: LakeStore, dataset: Dataset, days: Iterable[date]) -> tuple[DataFrame, list[date]]:
    """The existing partitions among ``days`` with a ``_partition_date`` column (from the folder)."""
    existing = set(store.partition_dates(dataset))
    found = sorted({d for d in days if d.isoformat() in existing and store.parquet_keys(dataset, d)})
    if not found:
        return empty_frame(spark, dataset.schema).withColumn("_partition_date", F.lit(None).cast("date")), []
    df = spark.read.schema(spark_schema(dataset.schema)).parquet(*[spark_path(store, dataset.partition_prefix(d)) for d in found])
    return df.withColumn(
        "_partition_date", F.to_date(F.regexp_extract(F.col("_metadata.file_path"), r"date=(\d{4}-\d{2}-\d{2})", 1))
    ), found


def write_partitions(df: DataFrame, store: LakeStore, dataset: Dataset) -> None:
    """Overwrite exactly the event_date partitions present in ``df`` (dynamic partition overwrite)."""
    (
        df.withColumn("date", F.date_format("event_date", "yyyy-MM-dd"))
        .repartition("date")
        .sortWithinPartitions("event_time", "transaction_id")
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .option("compression", "zstd")
        .partitionBy("date")
        .parquet(spark_path(store, dataset.prefix))
    )


def _drop_partitions(store: LakeStore, dataset: Dataset, days: Iterable[date]) -> None:
    for day in days:
        store.delete_prefix(dataset.partition_prefix(day))


def _label_days(days: list[date], maturity_days: int) -> list[date]:
    """Label partitions that can change any of ``days`` (the span between them included)."""
    return sorted({d for day in days for d in label_window(day, maturity_days)})


def _preview(df: DataFrame) -> pd.DataFrame:
    return df.select(*PREVIEW_COLUMNS).orderBy("event_time", "transaction_id").limit(5).toPandas()


@dataclass
class ProcessedRun:
    days: list[date]
    partitions: pd.DataFrame  # one row per built date with raw/processed/dedupe/label counts
    label_partitions_read: list[date]
    skipped_days: list[date] = field(default_factory=list)
    preview: pd.DataFrame = field(default_factory=pd.DataFrame)

    def totals(self) -> dict[str, float]:
        p = self.partitions
        rows = int(p["processed_rows"].sum()) if len(p) else 0
        fraud = int(p["fraud_labels"].sum()) if len(p) else 0
        return {
            "raw_rows": int(p["raw_rows"].sum()) if len(p) else 0,
            "processed_rows": rows,
            "duplicates_removed": int(p["duplicates_removed"].sum()) if len(p) else 0,
            "labelled_rows": int(p["labelled_rows"].sum()) if len(p) else 0,
            "fraud_labels": fraud,
            "fraud_rate": fraud / rows if rows else 0.0,
        }


def run_processed(spark: SparkSession, store: LakeStore, days: list[date], maturity_days: int, processed_at: datetime | None = None) -> ProcessedRun:
    """Build processed/transactions for ``days`` from raw transactions and the labels landed so far."""
    _check_spark(spark, store)
    processed_at = processed_at or datetime.now(timezone.utc)
    raw, found = read_partitions(spark, store, RAW_TRANSACTIONS, days)
    skipped = [d for d in days if d not in found]
    _drop_partitions(store, PROCESSED_TRANSACTIONS, skipped)  # no input any more: no stale output
    if not found:
        return ProcessedRun(days, pd.DataFrame(columns=["date", "raw_rows", "processed_rows", "duplicates_removed", "labelled_rows", "fraud_labels", "fraud_rate"]), [], skipped)
    labels, label_days = read_partitions(spark, store, RAW_LABELS, _label_days(found, maturity_days))
    write_partitions(build_processed(raw, labels, maturity_days, processed_at), store, PROCESSED_TRANSACTIONS)

    raw_counts = raw.groupBy(F.col("_partition_date").alias("date")).agg(F.count("*").alias("raw_rows"))
    written, _ = read_partitions(spark, store, PROCESSED_TRANSACTIONS, found)
    out_counts = written.groupBy(F.col("event_date").alias("date")).agg(
        F.count("*").alias("processed_rows"),
        F.count("is_fraud").alias("labelled_rows"),
        F.sum(F.when(F.col("is_fraud") == 1, 1).otherwise(0)).alias("fraud_labels"),
    )
    stats = raw_counts.join(out_counts, "date", "left").orderBy("date").toPandas()
    stats["duplicates_removed"] = stats["raw_rows"] - stats["processed_rows"]
    stats["fraud_rate"] = (stats["fraud_labels"] / stats["processed_rows"]).round(6)
    stats["date"] = stats["date"].astype(str)
    return ProcessedRun(found, stats, label_days, skipped, _preview(written))


@dataclass
class SandboxRun:
    days: list[date]
    partitions: pd.DataFrame
    splits: TimeSplits
    reference_time: datetime | None
    skipped_days: list[date] = field(default_factory=list)
    preview: pd.DataFrame = field(default_factory=pd.DataFrame)

    def totals(self) -> dict[str, float]:
        p = self.partitions
        rows = int(p["rows"].sum()) if len(p) else 0
        fraud = int(p["fraud_rows"].sum()) if len(p) else 0
        return {"rows": rows, "fraud_rows": fraud, "fraud_rate": fraud / rows if rows else 0.0}


def plan_splits(store: LakeStore, policy: MaturityPolicy, reference_time: datetime | None, split_config: SplitConfig = SplitConfig()) -> TimeSplits:
    """The split plan over every matured processed day in the lake (what training will see)."""
    processed_days = [date.fromisoformat(d) for d in store.partition_dates(PROCESSED_TRANSACTIONS)]
    matured, _ = policy.split_matured(processed_days, reference_time)
    return plan_time_splits(matured, split_config)


def run_sandbox(spark: SparkSession, store: LakeStore, days: list[date], policy: MaturityPolicy, now: datetime | None = None, split_config: SplitConfig = SplitConfig()) -> SandboxRun:
    """Build sandbox/transactions for matured ``days``; refuses immature ones (labels not final)."""
    _check_spark(spark, store)
    reference = policy.reference_time(store, now)
    matured, immature = policy.split_matured(days, reference)
    if immature:
        first = immature[0]
        raise ImmaturePartitionsError(
            f"sandbox partitions not matured yet: {', '.join(d.isoformat() for d in immature)} "
            f"(partition {first} matures at {matured_at(first, policy.maturity_days).isoformat()}, "
            f"{policy.reference} reference is {reference.isoformat() if reference else 'unknown: no labels landed'}; "
            f"label_maturity_days={policy.maturity_days})"
        )
    splits = plan_splits(store, policy, reference, split_config)
    processed, found = read_partitions(spark, store, PROCESSED_TRANSACTIONS, matured)
    skipped = [d for d in days if d not in found]
    _drop_partitions(store, SANDBOX_TRANSACTIONS, skipped)
    if found:
        labels, _ = read_partitions(spark, store, RAW_LABELS, _label_days(found, policy.maturity_days))
        split_by_date = {d.isoformat(): splits.split_of(d) for d in found}
        write_partitions(build_sandbox(processed.drop("_partition_date"), labels, policy.maturity_days, split_by_date), store, SANDBOX_TRANSACTIONS)
    store.write_json(SPLITS_KEY, {
        "splits": splits.as_dict(),
        "maturity_days": policy.maturity_days,
        "maturity_reference": policy.reference,
        "reference_time": reference.isoformat() if reference else None,
        "split_config": json.loads(json.dumps(split_config.__dict__)),
    })
    if not found:
        return SandboxRun(days, pd.DataFrame(columns=["date", "split", "rows", "fraud_rows", "fraud_rate"]), splits, reference, skipped)
    written, _ = read_partitions(spark, store, SANDBOX_TRANSACTIONS, found)
    stats = (
        written.groupBy(F.col("event_date").alias("date"), "split")
        .agg(F.count("*").alias("rows"), F.sum("is_fraud").alias("fraud_rows"))
        .orderBy("date")
        .toPandas()
    )
    stats["fraud_rate"] = (stats["fraud_rows"] / stats["rows"]).round(6)
    stats["date"] = stats["date"].astype(str)
    return SandboxRun(found, stats, splits, reference, skipped, _preview(written))
