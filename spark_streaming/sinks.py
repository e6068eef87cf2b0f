"""Where a scored micro-batch goes, each sink idempotent per batch so a replayed batch (restart
from the checkpoint) leaves no duplicates:

* lake ``scored/transactions/date=D/batch-<batchId>-p<partition>.parquet``: deterministic name, atomic overwrite;
* alerts (review/block): upsert ``ON CONFLICT (transaction_id)`` in PostgreSQL from the executor
  tasks, or staged per (batch, partition) in the lake and upserted by the driver into DuckDB (each
  task first probes its rows against an in-memory copy of the driver's table, so a row DuckDB
  refuses is dead-lettered like one PostgreSQL refuses and the rest of the batch proceeds);
* Kafka ``fraud_predictions`` (key = transaction_id) and ``transactions.dlq``: at-least-once, a
  replay re-sends, consumers dedupe by key / by the ``dlq.source.*`` headers.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.infra.dead_letters import DEFAULT_MAX_DEAD_LETTER_BYTES, dead_letter_message
from fraud_platform.infra.decision_log import create_tables_locked
from fraud_platform.infra.lake import LakeStore, partition_prefix

from spark_streaming.scoring import DeadLetter, ScoredBatch, prediction_records

log = logging.getLogger(__name__)

SCORED_DATASET = "transactions"

ALERT_COLUMNS: dict[str, str] = {
    "transaction_id": "TEXT PRIMARY KEY",
    "event_time": "TIMESTAMPTZ NOT NULL",
    "customer_key": "TEXT NOT NULL",
    "card_key": "TEXT NOT NULL",
    "terminal_id": "TEXT NOT NULL",
    "amount": "DOUBLE PRECISION NOT NULL",
    "currency": "TEXT NOT NULL",
    "amount_eur": "DOUBLE PRECISION NOT NULL",
    "score": "DOUBLE PRECISION NOT NULL",
    "decision": "TEXT NOT NULL",
    "threshold": "DOUBLE PRECISION NOT NULL",
    "model_name": "TEXT NOT NULL",
    "model_version": "TEXT NOT NULL",
    "feature_snapshot_version": "TEXT NOT NULL",
    "processing_time": "TIMESTAMPTZ NOT NULL",
    "kafka_partition": "INTEGER NOT NULL",
    "kafka_offset": "BIGINT NOT NULL",
    "batch_id": "BIGINT NOT NULL",
    "reasons": "TEXT",  # JSON list of readable reasons (fraud_platform.ml.explain); added to older tables
}


def alerts_of(batch: ScoredBatch) -> pd.DataFrame:
    """review/block rows in the alert table's column order."""
    scored = batch.scored
    if scored.empty:
        return pd.DataFrame(columns=list(ALERT_COLUMNS))
    alerts = scored[scored["decision"] != "approve"].rename(
        columns={"_kafka_partition": "kafka_partition", "_kafka_offset": "kafka_offset"}
    )
    alerts = alerts.assign(batch_id=batch.batch_id)
    return alerts[list(ALERT_COLUMNS)].reset_index(drop=True)


def upsert_sql(table: str, placeholder: str) -> str:
    """One upsert statement for both stores: a replayed alert updates in place, never duplicates."""
    cols = list(ALERT_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
    values = ", ".join(placeholder for _ in cols)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values}) ON CONFLICT (transaction_id) DO UPDATE SET {updates}"


def create_sql(table: str, double: str = "DOUBLE PRECISION") -> str:
    cols = ", ".join(f"{c} {t.replace('DOUBLE PRECISION', double)}" for c, t in ALERT_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


class AlertStore(Protocol):
    description: str

    def ensure_schema(self) -> None: ...

    def upsert(self, alerts: pd.DataFrame) -> int: ...


class PostgresAlertStore:
    """Alerts in PostgreSQL (FRAUD_ALERTS_POSTGRES_DSN); table and schema created if missing."""

    def __init__(self, dsn: str, table: str = "fraud_alerts") -> None:
        self.dsn = dsn
        self.table = table
        self.description = f"postgres table {table}"
        self._conn = None

    def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, connect_timeout=10)
        return self._conn

    def ensure_schema(self) -> None:
        # replicas starting together would collide in the catalog despite IF NOT EXISTS: one at a time
        create_tables_locked(self._connection(), self.table, create_sql(self.table),
                             f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS reasons TEXT")

    def upsert(self, alerts: pd.DataFrame) -> int:
        if alerts.empty:
            return 0
        rows = list(alerts.astype(object).where(alerts.notna(), None).itertuples(index=False, name=None))
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(upsert_sql(self.table, "%s"), rows)
        except Exception:
            conn.close()  # a broken connection is rebuilt on the (replayed) next attempt
            raise
        return len(rows)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class DuckDBAlertStore:
    """Embedded default: the same table and upsert in a DuckDB file under FRAUD_PLATFORM_HOME.

    The connection stays open while the scorer runs (opening a DuckDB file costs tens of ms, too
    much per micro-batch), so DuckDB's single-writer lock keeps other processes out until the scorer
    stops; live alert queries are what the PostgreSQL store is for.
    """

    def __init__(self, path: Path, table: str = "fraud_alerts") -> None:
        self.path = Path(path)
        self.table = table
        self.description = f"duckdb {self.path} table {table}"
        self._conn = None

    def connection(self):
        import duckdb

        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = duckdb.connect(str(self.path))
        return self._conn

    def ensure_schema(self) -> None:
        conn = self.connection()
        if "." in self.table:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.table.split('.')[0]}")
        conn.execute(create_sql(self.table, double="DOUBLE"))
        conn.execute(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS reasons TEXT")

    def upsert(self, alerts: pd.DataFrame) -> int:
        if alerts.empty:
            return 0
        duckdb_upsert(self.connection(), self.table, alerts)
        return len(alerts)

    def table_sql(self) -> str:
        """The table's ``CREATE TABLE`` as it is now (its constraints too), for the tasks' probe."""
        schema, _, name = self.table.rpartition(".")
        row = self.connection().execute(
            "SELECT sql FROM duckdb_tables() WHERE table_name = ? AND schema_name = ? AND database_name = current_database()",
            [name, schema or "main"],
        ).fetchall()  # all: DuckDB keeps the connection busy until a result is read to its end
        return row[0][0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def duckdb_upsert(conn, table: str, alerts: pd.DataFrame | pa.Table, on_conflict: bool = True) -> None:
    """The alert upsert in DuckDB (the store's; the tasks' probe inserts into an empty table: no conflict clause)."""
    conn.register("incoming_alerts", alerts)
    try:
        cols = list(ALERT_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM incoming_alerts"
            + (f" ON CONFLICT (transaction_id) DO UPDATE SET {updates}" if on_conflict else "")
        )
    finally:
        conn.unregister("incoming_alerts")


class DuckDBAlertProbe:
    """What the driver's DuckDB alert table would refuse, found inside the task.

    Only the driver may write the DuckDB file (one writer process), after the tasks have written
    every other sink; a row it refused there could no longer leave the batch. So each task inserts
    its alerts first into an in-memory copy of the table (the driver's ``CREATE TABLE``, constraints
    included) and empties it again: a refused row is dead-lettered like one PostgreSQL refuses, and
    only accepted rows are staged. ~5 ms CPU per task with alerts (Arrow in, one thread).
    """

    def __init__(self, table_sql: str, table: str) -> None:
        self.table_sql, self.table = table_sql, table
        self._conn = None

    def upsert(self, alerts: pd.DataFrame) -> int:
        if alerts.empty:
            return 0
        if self._conn is None:
            import duckdb

            conn = duckdb.connect(":memory:", config={"threads": 1})
            if "." in self.table:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.table.rsplit('.', 1)[0]}")
            conn.execute(self.table_sql)
            self._conn = conn
        # A refused statement changes nothing (autocommit); an accepted one is deleted again.
        duckdb_upsert(self._conn, self.table, pa.Table.from_pandas(alerts, preserve_index=False), on_conflict=False)
        self._conn.execute(f"DELETE FROM {self.table}")
        return len(alerts)


class ScoredLake:
    """Scored transactions in the lake, one file per (event date, batch id, Kafka partition).

    The name depends only on what the checkpoint fixes for a batch, so a replayed task overwrites
    its own file and never adds a second copy.
    """

    def __init__(self, store: LakeStore) -> None:
        self.store = store

    @staticmethod
    def key(day: date | str, batch_id: int, partition: int) -> str:
        return f"{partition_prefix('scored', SCORED_DATASET, day)}/batch-{batch_id:012d}-p{partition:04d}.parquet"

    def write(self, batch: ScoredBatch, partition: int) -> list[str]:
        scored = batch.scored
        if scored.empty:
            return []
        # One Arrow conversion for the whole range, split by day only when it spans midnight: a
        # pandas groupby + copy per day cost more than encoding the file.
        table = pa.Table.from_pandas(scored.drop(columns=["event_date"]), preserve_index=False)
        table = table.append_column("batch_id", pa.array(np.full(len(scored), batch.batch_id, dtype="int64")))
        days = pd.DatetimeIndex(scored["event_date"]).asi8  # midnight UTC, ns
        written = []
        for day in np.unique(days):
            on_day = days == day
            rows = table if on_day.all() else table.filter(pa.array(on_day))
            key = self.key(pd.Timestamp(day).date(), batch.batch_id, partition)
            self.store.write_parquet(key, rows)
            written.append(key)
        return written


class StagedAlerts:
    """Alerts for the embedded DuckDB store, staged by executors as one lake file per (batch, partition).

    DuckDB allows one writer process, so tasks never open it: they stage their alerts in the lake
    (deterministic name, a replay overwrites) and the driver upserts the batch's few staged rows.
    """

    PREFIX = "streaming/staged_alerts"

    def __init__(self, store: LakeStore) -> None:
        self.store = store

    def key(self, batch_id: int, partition: int) -> str:
        return f"{self.PREFIX}/batch-{batch_id:012d}/p{partition:04d}.parquet"

    def stage(self, alerts: pd.DataFrame, batch_id: int, partition: int) -> str | None:
        if alerts.empty:
            return None
        key = self.key(batch_id, partition)
        self.store.write_parquet(key, pa.Table.from_pandas(alerts, preserve_index=False))
        return key

    def read(self, keys: list[str]) -> pd.DataFrame:
        table = self.store.read_parquet(keys)
        return table.to_pandas() if table is not None else pd.DataFrame(columns=list(ALERT_COLUMNS))

    def clear(self, batch_id: int) -> None:
        self.store.delete_prefix(f"{self.PREFIX}/batch-{batch_id:012d}")


def upsert_isolating(store, alerts: pd.DataFrame, connection_errors: tuple[type[BaseException], ...]) -> dict[str, str]:
    """Upsert ``alerts``; if the batch is refused, retry row by row and return the refused rows
    (see :func:`write_isolating`)."""
    return write_isolating(lambda rows: store.upsert(alerts.iloc[rows]), alerts["transaction_id"].astype(str).tolist(), connection_errors)


def write_isolating(write: Callable[[slice], object], ids: list[str], connection_errors: tuple[type[BaseException], ...]) -> dict[str, str]:
    """``write(slice)`` the rows of ``ids`` at once; if the sink refuses, row by row.

    Returns ``transaction_id -> error`` for rows the sink refused on their own (e.g. a NUL byte
    PostgreSQL cannot hold), so the caller dead-letters them and the rest proceeds. A lost
    connection (``connection_errors``) is not a record's fault: it propagates and fails the task.
    """
    if not ids:
        return {}
    try:
        write(slice(0, len(ids)))
        return {}
    except connection_errors:
        raise
    except Exception:  # noqa: BLE001 - which record is at fault is found below
        pass
    refused: dict[str, str] = {}
    for i, tx_id in enumerate(ids):
        try:
            write(slice(i, i + 1))
        except connection_errors:
            raise
        except Exception as error:  # noqa: BLE001 - the record's own problem: dead-letter it
            refused[tx_id] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return refused


class KafkaOutputs:
    """Predictions and dead letters through one idempotent producer; ``flush`` raises on any failed delivery."""

    def __init__(self, producer, predictions_topic: str, dlq_topic: str, source_topic: str,
                 max_dead_letter_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES) -> None:
        self.producer = producer
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.source_topic = source_topic
        self.max_dead_letter_bytes = max_dead_letter_bytes  # FRAUD_DLQ_MAX_MESSAGE_BYTES, as landing's
        self._errors: list[str] = []

    def _delivered(self, error, message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")

    def _produce(self, topic: str, **kwargs) -> None:
        while True:
            try:
                self.producer.produce(topic, on_delivery=self._delivered, **kwargs)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.1)

    def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        """PAN-masked, cut to the broker's message size (with original size and SHA-256 headers)."""
        for letter in letters:
            out = dead_letter_message(letter.rejection, letter.value, letter.key, self.source_topic, letter.partition, letter.offset,
                                      self.max_dead_letter_bytes)
            self._produce(self.dlq_topic, key=out.key, value=out.value, headers=out.headers)

    def send_predictions(self, scored: pd.DataFrame) -> None:
        produce, topic, delivered = self.producer.produce, self.predictions_topic, self._delivered
        for tx_id, value in zip(scored["transaction_id"].tolist(), prediction_records(scored)):
            try:  # the common case inline: this loop runs once per scored transaction
                produce(topic, value, tx_id.encode(), on_delivery=delivered)
            except BufferError:
                self._produce(topic, key=tx_id.encode(), value=value)
        self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self.producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise RuntimeError(f"{remaining} Kafka messages not delivered within {timeout:.0f}s")
        if errors:
            raise RuntimeError(f"{len(errors)} Kafka deliveries failed, first: {errors[0]}")
