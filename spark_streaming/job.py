"""The streaming scorer: Kafka ``transactions`` -> validate -> features -> champion model ->
decision log + ``fraud_predictions`` + alerts + lake ``scored`` zone (+ ``transactions.dlq`` for bad
records), and the ``challenger`` alias in shadow when one exists.

Run with ``python -m spark_streaming`` or ``spark-submit spark_streaming/job.py`` (same flags).
Imports only fraud_platform.domain/infra/settings/ml — never Dagster — so it deploys on its own.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fraud_platform.infra.lake import lake_store_from_settings  # noqa: E402
from fraud_platform.ml.registry import CHALLENGER_ALIAS  # noqa: E402
from fraud_platform.settings import IngestionSettings  # noqa: E402

from spark_streaming.champion import ChallengerWatcher, ModelWatcher, NoChampionError, one_line  # noqa: E402
from spark_streaming.config import StreamConfig  # noqa: E402
from spark_streaming.decisions import ShadowPlan  # noqa: E402
from spark_streaming.executor import TASK_RESULT_SCHEMA, TaskPlan, score_task  # noqa: E402
from spark_streaming.metrics import StreamMetrics  # noqa: E402
from spark_streaming.online import OnlineStoreUnavailable, open_feature_store  # noqa: E402
from spark_streaming.scoring import DECISIONS, review_block  # noqa: E402
from spark_streaming.sinks import DuckDBAlertStore, PostgresAlertStore, StagedAlerts  # noqa: E402
from spark_streaming.source import SOURCE_NAME, KafkaDataSource, kafka_options, owned_partitions  # noqa: E402
from spark_streaming.stopping import StopRequest, await_query  # noqa: E402

log = logging.getLogger("spark_streaming")


class StartupError(RuntimeError):
    """A start-up problem reported as one line with a distinct exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_CONFIG, EXIT_BROKER, EXIT_MODEL, EXIT_ALERTS, EXIT_SPARK, EXIT_QUERY, EXIT_STORE = 2, 3, 4, 5, 6, 1, 7

SCORER_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    # Local checkpoints without .crc side files: two fewer file writes per offset/commit log entry,
    # ~80 ms less per micro-batch on 2 cores. Renames stay atomic (POSIX), other schemes unaffected.
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "org.apache.hadoop.fs.local.RawLocalFs",
    "spark.ui.showConsoleProgress": "false",  # progress bars are noise in a service's log
    # A failed scoring task fails the query (visible, exit 1) instead of being retried for minutes
    # against an unreachable store; the restart replays the batch from the checkpoint.
    "spark.task.maxFailures": "1",
    # Python workers fork from a daemon that has already imported the scoring stack (see module).
    "spark.python.daemon.module": "spark_streaming.worker_daemon",
    # Executor <-> Python worker over Unix domain sockets instead of loopback TCP: the range row
    # a task's source worker hands to its scoring worker is one small write, which waited ~40 ms
    # on TCP (Nagle and delayed ACKs) in every task; ~10 ms now (bench/spark_floor.py).
    "spark.python.unix.domain.socket.enabled": "true",
}


def scorer_spark_conf() -> dict[str, str]:
    """The scorer's Spark settings; executors of a standalone cluster import this project too."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Spark's Python workers merge this with their own PYTHONPATH (the worker's environment).
    return {**SCORER_SPARK_CONF, "spark.executorEnv.PYTHONPATH": project}


def settle_heap() -> None:
    """Move everything built at start-up (Spark, MLflow, the model) out of the cyclic GC's sight.

    The driver's per-batch work is now small, but each collection would still re-scan the start-up
    heap; frozen objects are never collected and live for the whole process anyway.
    """
    gc.collect()
    gc.freeze()


@dataclass
class Components:
    """Everything the driver needs, built and checked before Spark starts."""

    config: StreamConfig
    metrics: StreamMetrics
    watcher: ModelWatcher
    lake: object  # LakeStore: staged alerts are read from it
    alerts: object | None  # the driver's DuckDB store; None when the tasks upsert into PostgreSQL
    kafka: object  # KafkaSettings with the bootstrap resolved for the executors
    store: object  # the online FeatureStore (picklable; each executor worker connects itself)
    challenger: ChallengerWatcher | None = None  # the `challenger` alias, scored in shadow
    decision_log: object | None = None  # DecisionLogTarget the tasks write every decision to

    def close(self) -> None:
        self.watcher.stop()
        if self.challenger is not None:
            self.challenger.stop()
        if self.alerts is not None:
            self.alerts.close()



def build_components(config: StreamConfig, metrics: StreamMetrics | None = None) -> Components:
    """Check broker, registry, online store and alert store, load the champion; StartupError on any failure."""
    metrics = metrics or StreamMetrics()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(config.registry_timeout_seconds))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    kafka = config.platform.kafka
    topics = kafka.topics
    try:
        from fraud_platform.infra.kafka import ensure_topics

        ensure_topics(kafka, [topics.transactions, topics.transactions_dlq, topics.predictions], timeout=10)
        kafka = kafka.model_copy(update={"bootstrap_servers": kafka.resolved_bootstrap()})
    except Exception as error:  # KafkaException, RuntimeError (no broker configured)
        raise StartupError(f"Kafka broker unreachable ({kafka.bootstrap_servers or 'embedded broker'}): {one_line(error)}", EXIT_BROKER) from None

    from mlflow import MlflowClient

    platform = config.platform
    registry_uri = platform.mlflow.resolved_registry_uri

    def on_loaded(model) -> None:
        metrics.model_swaps.inc()
        metrics.model_version.labels(model.model_name).set(float(model.version) if model.version.isdigit() else -1)
        metrics.model_info.info({"model_name": model.model_name, "version": model.version})

    def client_factory():
        return MlflowClient(tracking_uri=platform.mlflow.tracking_uri, registry_uri=registry_uri)

    watcher = ModelWatcher(
        client_factory, platform.mlflow.model_name, config.model_alias, config.model_refresh_seconds,
        on_loaded=on_loaded, on_failure=lambda stage, error: metrics.refresh_failures.labels(stage).inc(),
    )
    import mlflow

    mlflow.set_tracking_uri(platform.mlflow.tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    try:
        watcher.load()
    except NoChampionError as error:
        raise StartupError(f"no model to score with: {error} in registry {registry_uri} (train and promote one first)", EXIT_MODEL) from None
    except Exception as error:
        raise StartupError(f"cannot load the {config.model_alias} of {platform.mlflow.model_name!r} from {registry_uri}: {one_line(error)}", EXIT_MODEL) from None

    try:
        store = open_feature_store(config)
        store.ping()
    except OnlineStoreUnavailable as error:
        raise StartupError(f"online feature store unavailable: {error}", EXIT_STORE) from None
    challenger = ChallengerWatcher(client_factory, platform.mlflow.model_name, CHALLENGER_ALIAS, config.model_refresh_seconds,
                                   on_failure=lambda stage, error: metrics.refresh_failures.labels(f"challenger_{stage}").inc())
    challenger.refresh()
    parts = Components(config=config, metrics=metrics, watcher=watcher, lake=lake_store_from_settings(platform.lake),
                       alerts=None, kafka=kafka, store=store, challenger=challenger, decision_log=decision_log_target())

    if config.alerts_postgres_dsn is not None:
        alerts = PostgresAlertStore(config.alerts_postgres_dsn.get_secret_value(), config.alerts_table)
    else:
        alerts = parts.alerts = DuckDBAlertStore(config.alerts_duckdb_path, config.alerts_table)
    try:
        alerts.ensure_schema()
    except Exception as error:
        raise StartupError(f"alert store unavailable ({alerts.description}): {one_line(error)}", EXIT_ALERTS) from None
    finally:
        if parts.alerts is None:
            alerts.close()  # the tasks connect themselves; the driver needed it for the schema only
    try:  # creates the decision log and its shadow table once, before tasks race to; the tasks connect themselves
        from fraud_platform.ml.shadow import ShadowLog

        backend = parts.decision_log.backend()
        ShadowLog(backend)
        backend.close()
    except Exception as error:
        raise StartupError(f"decision log unavailable ({parts.decision_log.description}): {one_line(error)}", EXIT_ALERTS) from None
    return parts


def decision_log_target():
    """The decision API's decision log (``FRAUD_DECISIONS_*``): API and stream decisions in one table."""
    from fraud_platform.infra.decision_log import DecisionLogTarget
    from fraud_platform.settings import DecisionLogSettings

    return DecisionLogTarget.from_settings(DecisionLogSettings.from_env())


class BatchHandler:
    """The ``foreachBatch`` function: plans the batch, runs it on the executors, keeps the counts.

    Idempotent per batch id: every sink a task writes is keyed by (batch, Kafka partition), so a
    replayed batch overwrites instead of duplicating.
    """

    def __init__(self, parts: Components, query_id: str | None = None) -> None:
        self.parts = parts
        self.query_id = query_id
        self.batches = 0
        self.last_batch_id: int | None = None
        self.dlq_max_message_bytes = IngestionSettings.from_env().dlq_max_message_bytes  # landing's limit, not a second one

    def plan(self, batch_id: int) -> TaskPlan:
        p = self.parts
        cfg = p.config
        model = p.watcher.current()
        review, block = review_block(cfg.review_threshold, cfg.block_threshold, model.info.threshold)
        platform = cfg.platform
        if self.query_id is None:
            self.query_id = checkpoint_query_id(cfg.checkpoint)
        challenger = p.challenger.info() if p.challenger is not None else None
        shadow = None
        if challenger is not None and challenger.version != model.version:  # a promoted challenger is the champion
            shadow = ShadowPlan(challenger, *review_block(cfg.review_threshold, cfg.block_threshold, challenger.threshold))
        return TaskPlan(
            batch_id=batch_id, query_id=self.query_id, model_name=model.model_name, champion=model.info,
            review=review, block=block, kafka=p.kafka, lake=platform.lake, store=p.store,
            alerts_dsn=cfg.alerts_postgres_dsn.get_secret_value() if cfg.alerts_postgres_dsn else None,
            alerts_table=cfg.alerts_table, mlflow_tracking_uri=platform.mlflow.tracking_uri,
            mlflow_registry_uri=platform.mlflow.resolved_registry_uri,
            decision_log=p.decision_log, shadow=shadow, eof_timeout_seconds=cfg.eof_timeout_seconds,
            delivery_timeout_seconds=cfg.delivery_timeout_seconds,
            alerts_table_sql=p.alerts.table_sql() if p.alerts is not None else None,  # read per batch: constraints may change
            dlq_max_message_bytes=self.dlq_max_message_bytes,
        )

    def __call__(self, frame, batch_id: int) -> None:
        # The only thing collected: one row of counts per Kafka partition range.
        self._run(batch_id, lambda plan: [row.asDict() for row in
                                          frame.mapInArrow(partial(score_task, plan), TASK_RESULT_SCHEMA).collect()])

    def process(self, records, batch_id: int) -> None:
        """The same tasks in this process, without Spark (the benchmark's plain-Python reference)."""
        self._run(batch_id, lambda plan: [b.to_pylist()[0] for b in score_task(plan, iter(records.to_batches()))])

    def _run(self, batch_id: int, run_tasks: Callable[[TaskPlan], list[dict]]) -> None:
        started = time.monotonic()
        plan = self.plan(batch_id)
        planned = time.monotonic()
        rows = run_tasks(plan)
        self.complete(plan, rows, started, {"plan": planned - started, "tasks": time.monotonic() - planned})

    def complete(self, plan: TaskPlan, rows: list[dict], started: float, phases: dict[str, float] | None = None) -> None:
        """Sink the driver's share (staged DuckDB alerts), check the counts reconcile, update the
        metrics and log the batch with where its time went (``phases``: seconds before ``complete``)."""
        completing = time.monotonic()
        p = self.parts
        batch_id = plan.batch_id
        alerts = sum(r["alerts"] for r in rows)
        staged = [r["staged_alerts"] for r in rows if r["staged_alerts"]]
        if p.alerts is not None:
            lake_alerts = StagedAlerts(p.lake)
            if staged:  # rows the table refuses were dead-lettered by the tasks' probe (sinks.DuckDBAlertProbe)
                p.alerts.upsert(lake_alerts.read(staged))
            lake_alerts.clear(batch_id)
        m = p.metrics
        totals = {k: sum(r[k] for r in rows) for k in ("rows_in", "scored", "dead_lettered", *DECISIONS)}
        if totals["rows_in"] != totals["scored"] + totals["dead_lettered"]:
            raise RuntimeError(f"batch {batch_id}: {totals['rows_in']} records in but {totals['scored']} scored + {totals['dead_lettered']} dead-lettered")
        m.rows.labels("scored").inc(totals["scored"])
        m.rows.labels("dead_lettered").inc(totals["dead_lettered"])
        for row in rows:
            for rule, count in json.loads(row["dead_letter_rules"]).items():
                m.dead_letters.labels(rule).inc(count)
            m.latency.add_counts(row["latency_counts"], row["latency_sum"])
        for decision in DECISIONS:
            m.decisions.labels(decision).inc(totals[decision])
        m.batches.inc()
        elapsed = time.monotonic() - started
        m.batch_seconds.observe(elapsed)
        self.batches += 1
        self.last_batch_id = batch_id
        phases = {**(phases or {}), "complete": time.monotonic() - completing}
        log.info(
            "batch %d: %d in = %d scored + %d dead-lettered; %d alerts; model %s v%s; %.2fs (%d tasks, slowest %.2fs; %s)",
            batch_id, totals["rows_in"], totals["scored"], totals["dead_lettered"], alerts, plan.model_name,
            plan.champion.version, elapsed, len(rows), max((r["seconds"] for r in rows), default=0.0),
            ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in phases.items()),
        )


_STORE_OUTAGE = re.compile(r"OnlineStoreUnavailable: ([^\n]+)")


def checkpoint_query_id(checkpoint) -> str:
    """The streaming query's id, which Spark keeps in ``<checkpoint>/metadata`` across restarts."""
    try:
        return json.loads((Path(str(checkpoint).removeprefix("file:")) / "metadata").read_text().splitlines()[0])["id"]
    except (OSError, ValueError, KeyError, IndexError):
        return str(checkpoint)  # remote or not yet written: the checkpoint's location is just as stable


def source_frame(spark, config: StreamConfig):
    """The Kafka stream for the scoring tasks: the python source's planned ranges (the tasks read
    the records, ``source.RANGE_SCHEMA``), or the native source's (key, value, topic, partition,
    offset, timestamp) records."""
    kafka = config.platform.kafka
    client = kafka.client_config()
    if config.source == "native":
        try:
            # The context class loader sees jars added with --packages/--jars; Class.forName(name) does not.
            jvm = spark._jvm
            loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
            jvm.java.lang.Class.forName("org.apache.spark.sql.kafka010.KafkaSourceProvider", True, loader)
        except Exception:
            raise StartupError(
                "FRAUD_STREAM_SOURCE=native but the spark-sql-kafka-0-10 connector is not on the classpath; "
                "add it (--packages) or use FRAUD_STREAM_SOURCE=python", EXIT_SPARK,
            ) from None
        reader = spark.readStream.format("kafka").options(**_native_options(client))
    else:
        spark.dataSource.register(KafkaDataSource)
        reader = spark.readStream.format(SOURCE_NAME).options(**kafka_options(client))
        reader = reader.option("eofTimeoutSeconds", str(config.eof_timeout_seconds))
        reader = reader.option("ranges", "true")  # the scoring tasks read their ranges (see source.RANGE_SCHEMA)
    reader = reader.option("startingOffsets", config.starting_offsets)
    reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
    topic = kafka.topics.transactions
    if config.replica_count == 1:
        reader = reader.option("subscribe", topic)
    elif config.source == "native":  # this replica's share as an explicit assignment
        from fraud_platform.infra.kafka import topic_partitions

        owned = owned_partitions(sorted(topic_partitions(kafka, topic)), config.replica_index, config.replica_count)
        reader = reader.option("assign", json.dumps({topic: owned}))
    else:
        reader = reader.option("subscribe", topic).option("replicaIndex", str(config.replica_index))
        reader = reader.option("replicaCount", str(config.replica_count))
    frame = reader.load()
    return frame if config.source == "python" else frame.select("key", "value", "topic", "partition", "offset", "timestamp")


def _native_options(client: dict[str, object]) -> dict[str, str]:
    options = {f"kafka.{k}": str(v) for k, v in client.items() if k not in ("sasl.username", "sasl.password", "client.id")}
    if "sasl.username" in client:
        module = "plain.PlainLoginModule" if client.get("sasl.mechanism", "PLAIN") == "PLAIN" else "scram.ScramLoginModule"
        options["kafka.sasl.jaas.config"] = (
            f'org.apache.kafka.common.security.{module} required username="{client["sasl.username"]}" '
            f'password="{client.get("sasl.password", "")}";'
        )
    return options


def record_progress(metrics: StreamMetrics, progress: dict) -> None:
    """Consumer lag (source latestOffset - endOffset), input rate and the batch's durations, from
    one micro-batch's progress (``StreamingQueryProgress.json()``, parsed)."""
    for source in progress.get("sources", []):
        try:
            latest, end = source.get("latestOffset") or {}, source.get("endOffset") or {}  # JSON objects in the progress JSON
            metrics.consumer_lag.set(sum(max(0, int(v) - int(end.get(p, 0))) for p, v in latest.items()))
        except (ValueError, TypeError, AttributeError):
            pass  # the native source reports nested offsets; lag then comes from Kafka tooling
    metrics.input_rows_per_second.set(progress.get("inputRowsPerSecond") or 0.0)
    # Where a micro-batch's time went outside the tasks (walCommit, latestOffset, addBatch, ...)
    log.info("batch %d durations ms: %s", progress["batchId"], json.dumps(progress.get("durationMs", {}), sort_keys=True))


def add_progress_listener(spark, on_progress: Callable[[dict], None]) -> Callable[[], None]:
    """Call ``on_progress`` with each micro-batch's progress as a dict; returns the remover.

    Not PySpark's ``StreamingQueryListener``: its wrapper rebuilds every event from the JVM object
    with dozens of Py4J calls, which the JVM's listener-bus thread serves one by one - 15-20 % of a
    core at 5k tx/s (2-3 batches a second, measured with ``jcmd Thread.print``). One
    ``progress().json()`` call per event carries the same content.
    """
    from pyspark.java_gateway import ensure_callback_server_started

    class ProgressCallback:  # a Py4J proxy for the JVM interface PySpark's wrapper implements
        def onQueryStarted(self, event) -> None:
            pass

        def onQueryProgress(self, event) -> None:
            on_progress(json.loads(event.progress().json()))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            pass

        class Java:
            implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]

    context = spark.sparkContext
    ensure_callback_server_started(context._gateway)
    listener = context._jvm.org.apache.spark.sql.streaming.PythonStreamingQueryListenerWrapper(ProgressCallback())
    manager = spark._jsparkSession.streams()
    manager.addListener(listener)
    return lambda: manager.removeListener(listener)


def run_cli(program: str, start: Callable[[], object]) -> tuple[int, object | None]:
    """Run a streaming entry point (scorer or feature pipeline): any start-up or query failure
    becomes one line on stderr and its exit code (listed in ``spark_streaming.__main__``)."""
    from fraud_platform.security import MissingSecretError, secure_process_start
    from spark_streaming.config import ConfigError

    try:
        secure_process_start()  # private file modes; no tokenisation key outside local -> no start
        return 0, start()
    except (ConfigError, MissingSecretError) as error:
        message, code = f"configuration error: {error}", EXIT_CONFIG
    except StartupError as error:
        message, code = str(error), error.exit_code
    except RuntimeError as error:
        message, code = str(error), EXIT_QUERY
    print(f"{program}: {message}", file=sys.stderr)
    return code, None


def start_query(spark, config: StreamConfig, handler: BatchHandler):
    """Start the scoring query (checkpointed, named ``fraud_scorer``)."""
    writer = source_frame(spark, config).writeStream.foreachBatch(handler).option("checkpointLocation", str(config.checkpoint))
    writer = writer.queryName("fraud_scorer")
    if config.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{config.trigger_seconds} seconds")
    return writer.start()


class BrokerOutage:
    """Restart policy for a query that failed because the broker did not answer.

    The query restarts from its checkpoint, so the failed micro-batch's offset ranges replay and
    nothing is skipped. Backoff doubles from 1 s to 30 s; after ``budget_seconds`` without a
    committed batch the scorer gives up and exits non-zero. Any other failure is not retried.
    """

    MARKERS = ("BrokerUnavailable", "not delivered within", "_ALL_BROKERS_DOWN", "_TRANSPORT")

    def __init__(self, budget_seconds: float, metrics: StreamMetrics) -> None:
        self.budget_seconds, self.metrics = budget_seconds, metrics
        self.reset()

    def reset(self) -> None:
        self.since: float | None = None
        self.delay = 1.0

    def describe(self, error: BaseException) -> str:
        """The error line that names a broker problem (deep in Spark's wrapped traceback), else the first."""
        lines = [line.strip() for line in str(error).splitlines()]
        found = [line for line in lines if any(m in line for m in self.MARKERS) and not line.startswith(("raise ", "File "))]
        return found[-1][:300] if found else one_line(error)

    def retry(self, error: BaseException, stop_requested) -> bool:
        """Sleep the backoff and return True if the query should restart."""
        if not any(marker in str(error) for marker in self.MARKERS):
            return False
        message = self.describe(error)
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since > self.budget_seconds:
            log.error("broker unavailable for %.0fs (budget FRAUD_STREAM_BROKER_OUTAGE_SECONDS=%.0f); giving up", now - self.since, self.budget_seconds)
            return False
        self.metrics.broker_outages.inc()
        log.warning(
            "broker unavailable (%s); restarting the query from its checkpoint in %.0fs (down %.0fs of %.0fs allowed)",
            message[:300], self.delay, now - self.since, self.budget_seconds,
        )
        deadline = now + self.delay
        while time.monotonic() < deadline and not stop_requested():
            time.sleep(0.2)
        self.delay = min(self.delay * 2, 30.0)
        return True


def run(config: StreamConfig, spark=None, parts: Components | None = None, stop: threading.Event | None = None) -> BatchHandler:
    """Run until the query ends (available-now), ``max_batches`` are done, SIGTERM/SIGINT or ``stop``."""
    parts = parts or build_components(config)
    parts.metrics.serve(config.metrics_port)
    own_spark = spark is None
    if own_spark:
        from fraud_platform.infra.spark import build_spark_session

        spark = build_spark_session("fraud-stream-scorer", master=config.spark_master, conf=scorer_spark_conf())
        spark.sparkContext.setLogLevel("WARN")
    handler = BatchHandler(parts)
    if own_spark:  # this process is the scorer (python -m / spark-submit), not a host embedding it
        settle_heap()
    remove_listener = add_progress_listener(spark, lambda progress: record_progress(parts.metrics, progress))
    parts.watcher.start()
    if parts.challenger is not None:
        parts.challenger.start()
    # Signal handlers only when this process owns Spark (a host embedding the scorer keeps its own).
    stop_requested = StopRequest(stop, config.max_batches, lambda: handler.batches, handle_signals=own_spark)
    try:
        with stop_requested:
            outage = BrokerOutage(config.broker_outage_seconds, parts.metrics)
            while True:
                query = start_query(spark, config, handler)
                batches_at_start = handler.batches
                await_query(query, stop_requested)
                error = query.exception()
                if error is None:
                    break
                store_down = _STORE_OUTAGE.search(str(error))
                if store_down:  # its own exit code: the batch is not committed, a restart replays it
                    raise StartupError(f"online feature store unavailable mid-stream, batch not committed: {store_down.group(1)}", EXIT_STORE)
                if handler.batches > batches_at_start:
                    outage.reset()  # progress since the last restart: a new outage gets a full budget
                if not outage.retry(error, stop_requested):
                    raise RuntimeError(f"streaming query failed: {outage.describe(error)}")
                if stop_requested():
                    break
    finally:
        parts.close()
        remove_listener()
        if own_spark:
            spark.stop()
    return handler


if __name__ == "__main__":
    from spark_streaming.__main__ import main

    sys.exit(main())
