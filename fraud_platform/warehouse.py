"""Dagster-free warehouse plumbing shared by the dbt assets, tests and notebooks: where the dbt
project lives, the env vars its profiles.yml reads, DuckDB's single-writer lock, reading a built
relation back, and loading the lake sources into Postgres for the server target."""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from filelock import FileLock, Timeout

from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, SANDBOX_TRANSACTIONS, Dataset
from fraud_platform.infra.lake import LakeStore
from fraud_platform.settings import LakeSettings, PlatformSettings, WarehouseSettings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"

# dbt source table name (= the Dagster asset key of the lake asset) -> its catalogue entry.
LAKE_SOURCES: dict[str, Dataset] = {d.asset_key: d for d in (PROCESSED_TRANSACTIONS, SANDBOX_TRANSACTIONS)}


def lake_uri(lake: LakeSettings) -> str:
    """Lake root as DuckDB's read_parquet sees it (an S3 root would need the httpfs extension)."""
    if lake.backend == "local":
        return str(Path(lake.root).resolve())
    return f"s3://{lake.bucket}/{lake.root.strip('/')}".rstrip("/")


def dbt_env(warehouse: WarehouseSettings, lake_root_uri: str) -> dict[str, str]:
    """Env vars dbt/profiles.yml and the sources read, resolved from the platform's settings so a
    dbt subprocess never falls back to its relative defaults."""
    env = {
        "FRAUD_DBT_TARGET": warehouse.target,
        "FRAUD_DUCKDB_PATH": str(Path(warehouse.duckdb_path).resolve()),
        "FRAUD_LAKE_ROOT": lake_root_uri,
        "FRAUD_WAREHOUSE_PG_HOST": warehouse.pg_host,
        "FRAUD_WAREHOUSE_PG_PORT": str(warehouse.pg_port),
        "FRAUD_WAREHOUSE_PG_USER": warehouse.pg_user,
        "FRAUD_WAREHOUSE_PG_DATABASE": warehouse.pg_database,
        "FRAUD_WAREHOUSE_PG_SCHEMA": warehouse.pg_schema,
        "FRAUD_WAREHOUSE_PG_SOURCE_SCHEMA": warehouse.pg_source_schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if warehouse.pg_password is not None:
        env["FRAUD_WAREHOUSE_PG_PASSWORD"] = warehouse.pg_password
    return env


def dbt_env_from_settings(settings: PlatformSettings) -> dict[str, str]:
    return dbt_env(settings.warehouse, lake_uri(settings.lake))


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set env vars for the duration of a block (dbt subprocesses inherit the process env)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def duckdb_write_lock(duckdb_path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Serialise writers of one DuckDB file across processes on this host: DuckDB admits a single
    writing process, so a second concurrent `dbt build` would otherwise fail with a lock error.
    (The Dagster pool ``duckdb_warehouse`` queues runs first; this lock also covers instances
    without a pool limit.) ``on_wait`` is called once if another writer holds the lock."""
    path = Path(duckdb_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".write-lock")
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def pg_conninfo(warehouse: WarehouseSettings) -> str:
    from psycopg.conninfo import make_conninfo

    password = warehouse.pg_password
    return make_conninfo(
        host=warehouse.pg_host,
        port=warehouse.pg_port,
        user=warehouse.pg_user,
        dbname=warehouse.pg_database,
        **({"password": password} if password else {}),
    )


def read_relation(name: str, warehouse: WarehouseSettings) -> pd.DataFrame:
    """A model built by dbt, read back from whichever warehouse the target points at."""
    if warehouse.target == "duckdb":
        import duckdb

        with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as con:
            return con.sql(f'select * from main."{name}"').df()
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_conninfo(warehouse)) as conn:
        cursor = conn.execute(sql.SQL("select * from {}.{}").format(sql.Identifier(warehouse.pg_schema), sql.Identifier(name)))
        return pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])


_PG_TYPES = {
    pa.string(): "text",
    pa.float64(): "double precision",
    pa.int32(): "integer",
    pa.int64(): "bigint",
    pa.bool_(): "boolean",
    pa.date32(): "date",
    pa.timestamp("us", tz="UTC"): "timestamptz",
}


def load_lake_sources(store: LakeStore, warehouse: WarehouseSettings) -> dict[str, int]:
    """Postgres target only: replace each source table with the lake's current Parquet, partition by
    partition through COPY, in one transaction (readers see the old or the new data, never half).
    The lake stays the source of truth; these tables are a disposable copy for the server warehouse."""
    import psycopg
    from psycopg import sql

    loaded: dict[str, int] = {}
    with psycopg.connect(pg_conninfo(warehouse)) as conn:
        schema = sql.Identifier(warehouse.pg_source_schema)
        conn.execute(sql.SQL("create schema if not exists {}").format(schema))
        for table_name, dataset in LAKE_SOURCES.items():
            arrow_schema = dataset.schema
            table = sql.Identifier(warehouse.pg_source_schema, table_name)
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_PG_TYPES[f.type])) for f in arrow_schema
            )
            conn.execute(sql.SQL("create table if not exists {} ({})").format(table, columns))
            conn.execute(sql.SQL("truncate table {}").format(table))
            copy = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
                table, sql.SQL(", ").join(sql.Identifier(f.name) for f in arrow_schema)
            )
            rows = 0
            for day in store.partition_dates(dataset):
                partition = store.read_partition(dataset, day, columns=arrow_schema.names)
                if partition is None or partition.num_rows == 0:
                    continue
                buffer = io.BytesIO()
                pa_csv.write_csv(partition, buffer, pa_csv.WriteOptions(include_header=False))
                with conn.cursor().copy(copy) as writer:
                    writer.write(buffer.getvalue())
                rows += partition.num_rows
            loaded[table_name] = rows
    return loaded


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), so dbt runs even when the venv is not on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"
