"""Alert upserts are idempotent in PostgreSQL and in the embedded DuckDB store (same semantics)."""

from __future__ import annotations

import duckdb
import pandas as pd
import psycopg
import pytest

from spark_streaming.sinks import ALERT_COLUMNS, DuckDBAlertStore, PostgresAlertStore


def alerts(n: int, score: float, version: str) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame(
        {
            "transaction_id": [f"tx-{i:06d}" for i in range(n)], "event_time": [now] * n,
            "customer_key": ["c"] * n, "card_key": ["k"] * n, "terminal_id": ["t"] * n,
            "amount": [100.0] * n, "currency": ["EUR"] * n, "amount_eur": [100.0] * n,
            "score": [score] * n, "decision": ["review"] * n, "threshold": [0.5] * n,
            "model_name": ["m"] * n, "model_version": [version] * n, "feature_snapshot_version": ["s"] * n,
            "processing_time": [now] * n, "kafka_partition": [0] * n, "kafka_offset": list(range(n)), "batch_id": [3] * n,
            "reasons": ['["amount 950 EUR is 9.1x this customer\'s 30-day mean"]'] * n,
        }
    )[list(ALERT_COLUMNS)]


def check_idempotent(store, count_rows) -> None:
    store.ensure_schema()
    store.ensure_schema()  # re-running start-up is harmless
    assert store.upsert(alerts(50, 0.6, "1")) == 50
    assert store.upsert(alerts(50, 0.7, "2")) == 50  # a replayed batch (e.g. after a restart)
    assert store.upsert(alerts(60, 0.8, "2").iloc[40:]) == 20
    total, distinct, max_score = count_rows()
    assert (total, distinct) == (60, 60)
    assert max_score == pytest.approx(0.8)


def test_postgres_upsert_is_idempotent(pg_dsn):
    store = PostgresAlertStore(pg_dsn, "alerts_test.fraud_alerts")

    def count_rows():
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute("SELECT count(*), count(DISTINCT transaction_id), max(score) FROM alerts_test.fraud_alerts").fetchone()

    try:
        check_idempotent(store, count_rows)
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("SELECT score, model_version FROM alerts_test.fraud_alerts WHERE transaction_id = 'tx-000001'").fetchone()
        assert row == (pytest.approx(0.7), "2")
    finally:
        store.close()


def test_duckdb_upsert_is_idempotent(tmp_path):
    path = tmp_path / "alerts.duckdb"
    store = DuckDBAlertStore(path)

    def count_rows():  # through the store: it holds DuckDB's single-writer lock while open
        return store.connection().execute(
            "SELECT count(*), count(DISTINCT transaction_id), max(score) FROM fraud_alerts").fetchone()

    check_idempotent(store, count_rows)
    store.close()
    with duckdb.connect(str(path), read_only=True) as conn:  # closed store: the file is free again
        assert conn.execute("SELECT count(*), count(DISTINCT transaction_id) FROM fraud_alerts").fetchone() == (60, 60)
