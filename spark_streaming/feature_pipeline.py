"""The streaming feature pipeline: Kafka ``transactions`` + ``labels`` -> the online feature store.

``python -m spark_streaming features`` runs one Structured Streaming query (its own checkpoint,
default ``$FRAUD_PLATFORM_HOME/streaming/features-checkpoint``) over both topics. Each micro-batch is
applied to the store by the executors (``mapInArrow`` per Kafka range: validate, build processed
rows, one pipelined store write per chunk); the driver only collects per-partition counts.

Exactly once in effect: the store applies a transaction only if its index entry does not exist yet
and keeps the earliest known time per fraud label, so a micro-batch replayed after a crash (Spark
re-runs the batch whose commit was not written) leaves the store as a clean run would. Labels may
be applied before their transaction (another partition, another task): they wait in the store and
are applied with it. Invalid records are skipped and counted (the scorer dead-letters them and the
ingestion lands them in quarantine; this pipeline only derives state).

Start-up problems print one line and exit with: 2 config, 3 broker, 6 Spark, 7 online store.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_platform.infra.online_store import OnlineFeatureStore, OnlineStoreUnavailable

from spark_streaming import configure_logging
from spark_streaming.champion import one_line
from spark_streaming.config import StreamConfig
from spark_streaming.source import SOURCE_NAME, KafkaDataSource, kafka_options
from spark_streaming.stopping import StopRequest, await_query

log = logging.getLogger("spark_streaming.features")

EXIT_ONLINE_STORE = 7
QUERY_NAME = "fraud_features"
EVENT_COLUMNS = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]
COUNTS_SCHEMA = pa.schema([("topic", pa.string()), ("records", pa.int64()), ("valid", pa.int64()), ("applied", pa.int64())])
COUNTS_DDL = "topic string, records long, valid long, applied long"


def transaction_rows(values: list[bytes | None]) -> pd.DataFrame:
    """The valid transactions among raw Kafka values, in the processed-row shape (the scorer's)."""
    from fraud_platform.domain.batch_validation import validate_transactions

    from spark_streaming.scoring import processed_frame, stream_validator

    return processed_frame(validate_transactions(values, stream_validator()).accepted)


def label_rows(values: list[bytes | None]) -> pd.DataFrame:
    """The valid label events among raw Kafka values: transaction_id, is_fraud, known_at."""
    from fraud_platform.domain.validation import LabelValidator, Rejection

    validator = LabelValidator()
    events = [event for event in map(validator.parse, values) if not isinstance(event, Rejection)]
    return pd.DataFrame({
        "transaction_id": [e.transaction_id for e in events],
        "is_fraud": [e.is_fraud for e in events],
        "known_at": pd.to_datetime([e.known_at for e in events], utc=True),
    })


def apply_records(store: OnlineFeatureStore, topic_kind: str, values: list[bytes | None]) -> tuple[int, int]:
    """Validate raw Kafka values of one topic and apply the valid ones; returns (valid, applied)."""
    if topic_kind == "transactions":
        rows = transaction_rows(values)
        return len(rows), (store.apply_transactions(rows[EVENT_COLUMNS])["applied"] if len(rows) else 0)
    labels = label_rows(values)
    return len(labels), (store.apply_labels(labels)["applied"] if len(labels) else 0)


def partition_applier(store: OnlineFeatureStore, topics: dict[str, str]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: runs in executor Python workers, yields one count row per topic."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts: dict[str, list[int]] = {}
        for batch in batches:
            for topic in pc.unique(batch.column("topic")).to_pylist():
                part = batch.filter(pc.equal(batch.column("topic"), topic))
                valid, applied = apply_records(store, topics[topic], part.column("value").to_pylist())
                total = counts.setdefault(topic, [0, 0, 0])
                total[0] += part.num_rows
                total[1] += valid
                total[2] += applied
        yield pa.RecordBatch.from_pylist(
            [{"topic": t, "records": c[0], "valid": c[1], "applied": c[2]} for t, c in counts.items()], schema=COUNTS_SCHEMA,
        )

    return apply


class FeatureBatchHandler:
    """The ``foreachBatch`` function: the executors apply the batch; the driver sums their counts."""

    def __init__(self, store: OnlineFeatureStore, topics: dict[str, str]) -> None:
        self.applier = partition_applier(store, topics)
        self.batches = 0
        self.last_batch_id: int | None = None
        self.totals: dict[str, list[int]] = {}

    def __call__(self, frame, batch_id: int) -> None:
        started = time.monotonic()
        rows = frame.mapInArrow(self.applier, COUNTS_DDL).collect()
        summary = []
        for row in rows:
            total = self.totals.setdefault(row["topic"], [0, 0, 0])
            for i, name in enumerate(("records", "valid", "applied")):
                total[i] += row[name]
        for topic in sorted({row["topic"] for row in rows}):
            mine = [r for r in rows if r["topic"] == topic]
            summary.append(f"{topic}: {sum(r['records'] for r in mine)} in, {sum(r['valid'] for r in mine)} valid, "
                           f"{sum(r['applied'] for r in mine)} applied")
        self.batches += 1
        self.last_batch_id = batch_id
        log.info("batch %d: %s; %.2fs", batch_id, "; ".join(summary) or "empty", time.monotonic() - started)


def source_frame(spark, config: StreamConfig):
    """Both topics as one stream (the union keeps one offset entry per topic in the checkpoint)."""
    kafka = config.platform.kafka
    spark.dataSource.register(KafkaDataSource)
    options = kafka_options(kafka.client_config())

    def read(topic: str):
        reader = spark.readStream.format(SOURCE_NAME).options(**options).option("subscribe", topic)
        reader = reader.option("eofTimeoutSeconds", str(config.eof_timeout_seconds))
        reader = reader.option("startingOffsets", config.starting_offsets)
        reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
        # Distinct consumer-group ids per topic: the planner's probes of the two topics never share a group.
        reader = reader.option("groupIdPrefix", f"fraud-features-{topic}")
        return reader.load().select("topic", "value")

    return read(kafka.topics.transactions).unionByName(read(kafka.topics.labels))


def check_dependencies(config: StreamConfig, store: OnlineFeatureStore) -> None:
    """Store and broker reachable (and topics present) before Spark starts; StartupError otherwise."""
    from spark_streaming.job import EXIT_BROKER, StartupError

    try:
        store.ping()
    except OnlineStoreUnavailable as error:
        raise StartupError(str(error), EXIT_ONLINE_STORE) from None
    kafka = config.platform.kafka
    try:
        from fraud_platform.infra.kafka import ensure_topics

        ensure_topics(kafka, [kafka.topics.transactions, kafka.topics.labels], timeout=10)
    except Exception as error:  # KafkaException, RuntimeError (no broker configured)
        raise StartupError(f"Kafka broker unreachable ({kafka.bootstrap_servers or 'embedded broker'}): {one_line(error)}", EXIT_BROKER) from None


def run(config: StreamConfig, store: OnlineFeatureStore | None = None, spark=None,
        stop: threading.Event | None = None) -> FeatureBatchHandler:
    """Run until available-now is done, ``max_batches`` are done, SIGTERM/SIGINT or ``stop``."""
    from spark_streaming.job import EXIT_SPARK, SCORER_SPARK_CONF, StartupError

    if store is None:
        try:
            store = OnlineFeatureStore.from_settings(config.platform)
        except OnlineStoreUnavailable as error:
            raise StartupError(str(error), EXIT_ONLINE_STORE) from None
    check_dependencies(config, store)
    topics = config.platform.kafka.topics
    handler = FeatureBatchHandler(store, {topics.transactions: "transactions", topics.labels: "labels"})
    own_spark = spark is None
    if own_spark:
        from fraud_platform.infra.spark import build_spark_session

        try:
            spark = build_spark_session("fraud-feature-pipeline", master=config.spark_master, conf=SCORER_SPARK_CONF)
        except Exception as error:
            raise StartupError(f"cannot start Spark ({config.spark_master}): {one_line(error)}", EXIT_SPARK) from None
        spark.sparkContext.setLogLevel("WARN")
    writer = source_frame(spark, config).writeStream.foreachBatch(handler)
    writer = writer.option("checkpointLocation", str(config.checkpoint)).queryName(QUERY_NAME)
    writer = writer.trigger(availableNow=True) if config.available_now else writer.trigger(processingTime=f"{config.trigger_seconds} seconds")
    query = writer.start()
    # The scorer's stop rule (spark_streaming.stopping): signals handled only when this process owns Spark.
    stop_requested = StopRequest(stop, config.max_batches, lambda: handler.batches, handle_signals=own_spark)
    try:
        with stop_requested:
            await_query(query, stop_requested)
        error = query.exception()
        if error is not None:
            raise RuntimeError(f"feature pipeline query failed: {failure_reason(error)}")
    finally:
        if own_spark:
            spark.stop()
        store.close()
    return handler


def failure_reason(error: BaseException) -> str:
    """One line: the store's own message when a task failed on the store (it is buried in the
    Python traceback Spark wraps), else the error's first line."""
    for line in str(error).splitlines():
        if "OnlineStoreUnavailable: " in line:
            return line.split("OnlineStoreUnavailable: ", 1)[1].strip()[:300]
    return one_line(error)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_streaming features",
                                     description="Apply live transactions and fraud labels to the online feature store.")
    parser.add_argument("--checkpoint", help="Spark checkpoint folder (FRAUD_FEATURES_CHECKPOINT)")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval (FRAUD_STREAM_TRIGGER_SECONDS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="records per topic per micro-batch")
    parser.add_argument("--available-now", action="store_true", default=None, help="process what is in the topics now, then exit")
    parser.add_argument("--max-batches", type=int, help="stop after this many micro-batches")
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], help="where a new checkpoint starts")
    parser.add_argument("--spark-master", help="Spark master (FRAUD_SPARK_MASTER), default local[*]")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> StreamConfig:
    """The scorer's typed config (one place), with this query's own checkpoint (``features_checkpoint``)."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("log_level", "checkpoint")}
    config = StreamConfig.load({**overrides, "features_checkpoint": args.checkpoint})
    return config.model_copy(update={"checkpoint": config.features_checkpoint})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    from spark_streaming.job import run_cli

    code, handler = run_cli("spark_streaming features", lambda: run(load_config(args)))
    if handler is not None:
        log.info("stopped after %d micro-batches (last batch id %s); totals %s", handler.batches, handler.last_batch_id, handler.totals)
    return code
