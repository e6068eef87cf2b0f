"""Spark transformations raw -> processed -> sandbox. Pure DataFrame -> DataFrame functions; I/O
lives in ``zones``. Every output is conformed to its pyarrow contract in ``domain.schema``."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Mapping

import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from fraud_platform.domain.catalogue import DERIVED_COLUMNS, derive_processed_rows
from fraud_platform.domain.schema import PROCESSED_TRANSACTIONS_SCHEMA, SANDBOX_TRANSACTIONS_SCHEMA

# Order that decides which copy of a re-delivered record wins: first landed, then Kafka position.
ARRIVAL_ORDER = ("_ingested_at", "_kafka_topic", "_kafka_partition", "_kafka_offset", "_batch_id")
LABEL_COLUMNS = ("is_fraud", "label_type", "label_known_at", "fraud_scenario")


def _fail(message: Column) -> Column:
    return F.raise_error(message)


def dedupe_transactions(raw: DataFrame) -> DataFrame:
    """One row per transaction_id: the copy that landed first wins (late re-deliveries dropped)."""
    window = Window.partitionBy("transaction_id").orderBy(*ARRIVAL_ORDER)
    return raw.withColumn("_arrival_rank", F.row_number().over(window)).filter("_arrival_rank = 1").drop("_arrival_rank")


def matured_at_col(event_date: Column, maturity_days: int) -> Column:
    """``catalogue.matured_at`` as a column (session time zone is UTC, checked in ``zones``)."""
    return F.date_add(event_date, 1 + maturity_days).cast("timestamp")


_DERIVED_SCHEMA = pa.schema([PROCESSED_TRANSACTIONS_SCHEMA.field(name).with_nullable(True) for name in DERIVED_COLUMNS])


def _derive_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for raw in batches:
        rows = derive_processed_rows(raw, partition_dates=raw["_partition_date"])
        rows["event_date"] = rows["event_date"].dt.date
        yield rows


def normalise_transactions(raw: DataFrame) -> DataFrame:
    """Typed, trimmed, reporting-currency transactions with time features and pseudonymous keys:
    the catalogue's ``derive_processed_rows`` run on the executors (the same function the streaming
    scorer calls), so lake and stream cannot disagree on a row.

    ``raw`` must carry ``_partition_date`` (the raw folder's date); a record filed under another
    date than its event_time is a landing bug and fails the run, naming the record.
    """
    return raw.mapInPandas(_derive_batches, from_arrow_schema(_DERIVED_SCHEMA))


def label_outcomes(transactions: DataFrame, labels: DataFrame, maturity_days: int) -> DataFrame:
    """Per transaction, the label outcome known within its partition's maturity window.

    A label counts when ``event_time <= known_at < matured_at``. If any counted label says fraud the
    outcome is the earliest fraud label (so ``label_known_at`` is when fraud first became known),
    otherwise the earliest legit label. Duplicate label deliveries collapse here.

    Analyst verdicts (``analyst_confirmed`` / ``analyst_legitimate``, from the console) are labels
    like any other, so a chargeback overrides an analyst verdict: chargebacks always say fraud, and
    fraud beats legit, so "legitimate" followed by a chargeback is fraud from the chargeback's
    ``known_at`` on; "fraud" confirmed by an analyst stays fraud from the verdict's time (the earlier
    knowledge is the point of the feedback loop). At equal ``known_at`` a chargeback ranks first.
    """
    window = Window.partitionBy("transaction_id").orderBy(
        F.col("is_fraud").desc(), F.col("known_at"), (F.col("label_type") != "chargeback"), *[F.col(c) for c in ARRIVAL_ORDER]
    )
    keys = transactions.select("transaction_id", "event_time", matured_at_col(F.col("event_date"), maturity_days).alias("_cutoff"))
    counted = keys.join(labels.withColumn("transaction_id", F.trim("transaction_id")), "transaction_id").filter(
        (F.col("known_at") >= F.col("event_time")) & (F.col("known_at") < F.col("_cutoff"))
    )
    return (
        counted.withColumn("_rank", F.row_number().over(window))
        .filter("_rank = 1")
        .select(
            "transaction_id",
            F.col("is_fraud").cast("int").alias("is_fraud"),
            "label_type",
            F.col("known_at").alias("label_known_at"),
            F.col("fraud_scenario").cast("int").alias("fraud_scenario"),
        )
    )


def conform(df: DataFrame, contract: pa.Schema) -> DataFrame:
    """Exactly ``contract``: its column order, types and nullability.

    Required columns are guarded with an error naming the column and transaction; the frame is then
    re-typed on the JVM (no Python round trip) so Parquet files carry the contract's nullability.
    """
    spark = df.sparkSession
    target = from_arrow_schema(contract)
    columns = []
    for field in target.fields:
        col = F.col(field.name).cast(field.dataType)
        if not field.nullable:
            col = F.coalesce(col, _fail(F.concat(F.lit(f"{field.name} is null for transaction_id="),
                                                 F.coalesce(F.col("transaction_id").cast("string"), F.lit("<null>")))).cast(field.dataType))
        columns.append(col.alias(field.name))
    typed = df.select(*columns)
    jschema = spark._jvm.org.apache.spark.sql.types.DataType.fromJson(target.json())
    return DataFrame(spark._jsparkSession.createDataFrame(typed._jdf.rdd(), jschema), spark)


def build_processed(raw_transactions: DataFrame, raw_labels: DataFrame, maturity_days: int, processed_at: datetime) -> DataFrame:
    """Processed zone rows: deduplicated, normalised transactions plus the labels that have arrived."""
    transactions = normalise_transactions(dedupe_transactions(raw_transactions))
    outcomes = label_outcomes(transactions, raw_labels, maturity_days)
    joined = transactions.join(outcomes, "transaction_id", "left").withColumn("processed_at", F.lit(processed_at).cast("timestamp"))
    return conform(joined, PROCESSED_TRANSACTIONS_SCHEMA)


def build_sandbox(processed: DataFrame, raw_labels: DataFrame, maturity_days: int, split_by_date: Mapping[str, str]) -> DataFrame:
    """Sandbox rows for matured partitions: labels re-joined from raw within the maturity window (so a
    processed partition built before its labels arrived still gets final labels), ``is_fraud`` final."""
    base = processed.drop(*LABEL_COLUMNS, "processed_at")
    outcomes = label_outcomes(base, raw_labels, maturity_days)
    splits = F.create_map(*[F.lit(x) for pair in sorted(split_by_date.items()) for x in pair])
    day = F.date_format("event_date", "yyyy-MM-dd")
    joined = (
        base.join(outcomes, "transaction_id", "left")
        .withColumn("is_fraud", F.coalesce(F.col("is_fraud"), F.lit(0)))
        .withColumn("matured_at", matured_at_col(F.col("event_date"), maturity_days))
        .withColumn("split", F.when(splits[day].isNotNull(), splits[day]).otherwise(
            _fail(F.concat(F.lit("no split planned for event_date="), day))))
    )
    return conform(joined, SANDBOX_TRANSACTIONS_SCHEMA)


def spark_schema(contract: pa.Schema):
    """Spark read schema for a pyarrow contract (all nullable: Spark file sources ignore nullability)."""
    return from_arrow_schema(pa.schema([f.with_nullable(True) for f in contract]))


def empty_frame(spark: SparkSession, contract: pa.Schema) -> DataFrame:
    return spark.createDataFrame([], spark_schema(contract))
