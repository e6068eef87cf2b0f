"""The scorer's work inside Spark tasks: one task per Kafka partition range of a micro-batch.

``mapInArrow(partial(score_task, plan), TASK_RESULT_SCHEMA)`` runs :func:`score_task` on the
executors: validate, claim ids in the online store (dedupe), read features, score, then every
sink (alerts, lake ``scored/``, ``fraud_predictions``, ``transactions.dlq``). A task returns one
small row of counts per Kafka partition; the driver never sees a record.

Everything a task needs arrives in a picklable :class:`TaskPlan` (a few hundred bytes per
micro-batch). What is expensive to build — the model, the Kafka producer, the lake client, the
PostgreSQL connection — is cached at module level, i.e. once per executor Python worker
(``spark.python.worker.reuse``), and the model cache is keyed by version: when the driver's watcher
sees the ``champion`` alias move, the next plan names the new version and each worker loads it once.
The ``challenger`` (shadow scoring, :mod:`spark_streaming.decisions`) is cached the same way, apart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraud_platform.infra.dead_letters import DEFAULT_MAX_DEAD_LETTER_BYTES
from fraud_platform.infra.decision_log import DecisionLogTarget
from fraud_platform.ml.registry import ChampionInfo
from fraud_platform.settings import KafkaSettings, LakeSettings

from spark_streaming.champion import ActiveModel, load_model, one_line
from spark_streaming.decisions import ShadowPlan, forget_decisions, record_decisions
from spark_streaming.metrics import LATENCY_BUCKETS
from spark_streaming.online import FeatureStore
from spark_streaming.scoring import DECISIONS, ScoredBatch, score_batch

log = logging.getLogger(__name__)

RESULT_ARROW_SCHEMA = pa.schema(
    [("batch_id", pa.int64()), ("kafka_partition", pa.int32()), ("start_offset", pa.int64()), ("end_offset", pa.int64()),
     ("rows_in", pa.int64()), ("scored", pa.int64()), ("dead_lettered", pa.int64()), ("approve", pa.int64()),
     ("review", pa.int64()), ("block", pa.int64()), ("dead_letter_rules", pa.string()),
     ("latency_counts", pa.list_(pa.int64())), ("latency_sum", pa.float64()), ("staged_alerts", pa.string()),
     ("alerts", pa.int64()), ("seconds", pa.float64())]
)
_SPARK_TYPES = {pa.int64(): "long", pa.int32(): "int", pa.string(): "string", pa.float64(): "double", pa.list_(pa.int64()): "array<long>"}
TASK_RESULT_SCHEMA = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in RESULT_ARROW_SCHEMA)


@dataclass(frozen=True)
class TaskPlan:
    """What one micro-batch's tasks need; built on the driver, shipped with the task closure."""

    batch_id: int
    query_id: str  # stable across restarts of one checkpoint: part of the dedupe claim token
    model_name: str
    champion: ChampionInfo
    review: float
    block: float
    kafka: KafkaSettings  # bootstrap already resolved (executors may not see the embedded broker's files)
    lake: LakeSettings
    store: FeatureStore
    alerts_dsn: str | None  # PostgreSQL upserted from the tasks; None = stage for the driver's DuckDB
    alerts_table: str
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    decision_log: DecisionLogTarget | None = None  # every decision upserted here from the tasks
    shadow: ShadowPlan | None = None  # the challenger scoring in shadow, if one is aliased
    eof_timeout_seconds: float = 10.0  # reading a range (``source.read_ranges``) fails after this long without progress
    delivery_timeout_seconds: float = 30.0  # the task fails when its Kafka deliveries take longer (StreamingSettings)
    alerts_table_sql: str | None = None  # the driver's DuckDB alert table (``CREATE TABLE``), probed before staging
    dlq_max_message_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES  # dead letters are cut to this (the broker's limit)


    def token(self, partition: int) -> str:
        return f"{self.query_id}/{self.batch_id}/{partition}"


@dataclass
class TaskResult:
    """Counts of one Kafka partition's range (the only thing that travels back to the driver)."""

    batch: ScoredBatch
    partition: int
    start_offset: int
    end_offset: int
    latency_counts: np.ndarray
    latency_sum: float
    staged_alerts: str | None
    alerts: int
    seconds: float

    def row(self) -> dict:
        batch = self.batch
        counts = batch.counts_by_decision
        rules: dict[str, int] = {}
        for letter in batch.dead_letters:
            rules[letter.rejection.rule] = rules.get(letter.rejection.rule, 0) + 1
        return {
            "batch_id": batch.batch_id, "kafka_partition": self.partition, "start_offset": self.start_offset,
            "end_offset": self.end_offset, "rows_in": batch.rows_in, "scored": len(batch.scored),
            "dead_lettered": len(batch.dead_letters), **{d: counts[d] for d in DECISIONS},
            "dead_letter_rules": json.dumps(rules), "latency_counts": self.latency_counts.tolist(),
            "latency_sum": self.latency_sum, "staged_alerts": self.staged_alerts, "alerts": self.alerts,
            "seconds": self.seconds,
        }


# -- per-worker caches ---------------------------------------------------------------------------
_LOCK = threading.Lock()
_MODEL: dict[tuple, ActiveModel] = {}
_CHALLENGER: dict[tuple, ActiveModel | None] = {}
_CLIENTS: dict[tuple, object] = {}


def worker_model(plan: TaskPlan) -> ActiveModel:
    """The plan's model version, loaded once per worker; an older version is dropped (bounded memory)."""
    return _worker_load(_MODEL, plan, plan.champion)


def worker_challenger(plan: TaskPlan) -> ActiveModel | None:
    """The plan's challenger, loaded once per worker and version; None without one or when it
    does not load (remembered: a broken challenger is not retried every batch, nor fails one)."""
    if plan.shadow is None:
        return None
    try:
        return _worker_load(_CHALLENGER, plan, plan.shadow.challenger)
    except Exception as error:
        log.warning("challenger v%s not loaded, no shadow scoring: %s", plan.shadow.challenger.version, one_line(error))
        with _LOCK:
            _CHALLENGER[(plan.model_name, plan.shadow.challenger.version, plan.shadow.challenger.model_uri)] = None
        return None


def _worker_load(cache: dict, plan: TaskPlan, info: ChampionInfo) -> ActiveModel | None:
    key = (plan.model_name, info.version, info.model_uri)
    with _LOCK:
        if key not in cache:
            import mlflow

            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast, the task fails visibly
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            mlflow.set_tracking_uri(plan.mlflow_tracking_uri)
            mlflow.set_registry_uri(plan.mlflow_registry_uri)
            model = load_model(plan.model_name, info)
            cache.clear()
            cache[key] = model
        return cache[key]


def _client(kind: str, key: object, build):
    with _LOCK:
        if (kind, key) not in _CLIENTS:
            _CLIENTS[(kind, key)] = build()
        return _CLIENTS[(kind, key)]


def close_clients() -> None:
    """Close the clients this worker keeps between tasks (producer, store, alert and decision-log
    connections) while their servers are still up, e.g. at the end of a test session that ran
    tasks in-process: a cached producer would otherwise keep reconnecting to a stopped broker."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def worker_outputs(plan: TaskPlan):
    from fraud_platform.infra.kafka import make_producer
    from spark_streaming.sinks import KafkaOutputs

    topics = plan.kafka.topics
    # Delivery reports only for failures: one Python callback per prediction costs more than scoring it.
    producer = _client("producer", plan.kafka.model_dump_json(),
                       lambda: make_producer(plan.kafka, **{"linger.ms": 5, "delivery.report.only.error": True}))
    return KafkaOutputs(producer, topics.predictions, topics.transactions_dlq, topics.transactions, plan.dlq_max_message_bytes)


def worker_lake(plan: TaskPlan):
    from fraud_platform.infra.lake import lake_store_from_settings

    return _client("lake", plan.lake.model_dump_json(), lambda: lake_store_from_settings(plan.lake))


def worker_alert_store(plan: TaskPlan):
    """PostgreSQL when the tasks upsert the alerts; else the in-memory probe of the driver's DuckDB table."""
    from spark_streaming.sinks import DuckDBAlertProbe, PostgresAlertStore, create_sql

    if plan.alerts_dsn is None:
        table_sql = plan.alerts_table_sql or create_sql(plan.alerts_table, double="DOUBLE")
        return _client("duckdb_probe", (table_sql, plan.alerts_table), lambda: DuckDBAlertProbe(table_sql, plan.alerts_table))
    return _client("postgres", (plan.alerts_dsn, plan.alerts_table), lambda: PostgresAlertStore(plan.alerts_dsn, plan.alerts_table))


def worker_decision_log(plan: TaskPlan):
    return _client("decision_log", plan.decision_log, plan.decision_log.backend)


def worker_shadow_log(plan: TaskPlan):
    from fraud_platform.ml.shadow import ShadowLog

    backend = worker_decision_log(plan)
    return _client("shadow_log", plan.decision_log, lambda: ShadowLog(backend))


# -- the task ---------------------------------------------------------------------------------------
def worker_store(plan: TaskPlan) -> FeatureStore:
    """The plan's store with this worker's open connection (one per worker, not one per task)."""
    return _client("store", repr(plan.store), lambda: plan.store)


def process_range(plan: TaskPlan, records: pa.Table) -> TaskResult:
    """Score one Kafka partition's records and write every sink; usable without Spark (bench)."""
    from spark_streaming.sinks import ScoredLake, StagedAlerts, alerts_of, upsert_isolating

    started = time.monotonic()
    partition = int(records.column("partition")[0].as_py())
    offsets = records.column("offset").to_numpy(zero_copy_only=False)
    model = worker_model(plan)
    batch = score_batch(plan.batch_id, records, model, worker_store(plan), plan.token(partition), plan.review, plan.block)
    if plan.decision_log is not None:  # first: a row the log refuses is dead-lettered before any other sink sees it
        challenger = worker_challenger(plan)
        record_decisions(batch, records, worker_decision_log(plan), plan.shadow, challenger,
                         worker_shadow_log(plan) if challenger is not None else None)

    # PostgreSQL upserted here; for the driver's DuckDB, a probe of its table (the driver upserts
    # the staged rows after every other sink is written, too late for a refused row to leave).
    alerts = alerts_of(batch)
    if plan.alerts_dsn is not None:
        import psycopg

        connection_errors: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
    else:
        connection_errors = ()
    refused = upsert_isolating(worker_alert_store(plan), alerts, connection_errors)
    batch.dead_letter_failed(refused, "alerts", records)
    if refused and plan.decision_log is not None:
        forget_decisions(worker_decision_log(plan), list(refused), worker_shadow_log(plan) if plan.shadow else None)
    alerts = alerts[~alerts["transaction_id"].isin(list(refused))]
    staged = None if plan.alerts_dsn is not None else StagedAlerts(worker_lake(plan)).stage(alerts, plan.batch_id, partition)
    batch.reconcile()
    # Predictions go out before the lake file is written: their Kafka timestamp (the end of the
    # end-to-end latency) no longer waits for the Parquet encoding, and delivery overlaps it. Same
    # guarantees: a failed lake write fails the task, the batch replays and re-sends (at-least-once).
    outputs = worker_outputs(plan)
    outputs.send_dead_letters(batch.dead_letters)
    outputs.send_predictions(batch.scored)
    ScoredLake(worker_lake(plan)).write(batch, partition)
    outputs.flush(plan.delivery_timeout_seconds)
    latency = time.time() - batch.kafka_timestamps_ms / 1000.0
    bounds = np.asarray(LATENCY_BUCKETS, dtype="float64")
    counts = np.bincount(np.searchsorted(bounds, latency, side="left"), minlength=len(bounds) + 1)
    return TaskResult(batch, partition, int(offsets.min()), int(offsets.max()) + 1, counts, float(latency.sum()),
                      staged, len(alerts), time.monotonic() - started)


def score_task(plan: TaskPlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: the task's records (one Kafka range each) in, one count row per range out."""
    chunks = [b for b in batches if b.num_rows]
    if not chunks:
        return
    table = pa.Table.from_batches(chunks)
    if "start_offset" in table.column_names:  # the source planned ranges only: read them here
        from spark_streaming.source import kafka_options, read_ranges

        ranges = read_ranges(kafka_options(plan.kafka.client_config()), table, plan.eof_timeout_seconds)
    else:
        ranges = (table.filter(pc.equal(table.column("partition"), int(partition)))
                  for partition in np.unique(table.column("partition").to_numpy(zero_copy_only=False)))
    for records in ranges:
        yield pa.RecordBatch.from_pylist([process_range(plan, records).row()], schema=RESULT_ARROW_SCHEMA)
