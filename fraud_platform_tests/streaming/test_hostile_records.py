"""The hostile corpus through the scorer's pure-Python batch scoring and its real sinks: every
record ends in exactly one place (scored row or dead letter with the corpus' rule), and no card
number reaches the scored zone, the alert stores, the DLQ or the predictions topic."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.card_data import contains_pan
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot
from fraud_platform.domain.validation import TransactionValidator
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.infra.kafka import make_producer, read_range
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.registry import ChampionInfo
from fraud_platform.settings import KafkaSettings
from fraud_platform_tests.hostile import hostile_records, pans_in_files, pans_in_topic
from spark_streaming.champion import ActiveModel
from spark_streaming.scoring import score_batch
from spark_streaming.sinks import DuckDBAlertStore, KafkaOutputs, PostgresAlertStore, ScoredLake, alerts_of, create_sql
from spark_streaming.source import ARROW_SCHEMA


def _records(payloads: list[bytes | None]) -> pa.Table:
    n = len(payloads)
    return pa.Table.from_pydict(
        {"key": [f"k{i}".encode() for i in range(n)], "value": payloads, "topic": ["tx"] * n,
         "partition": [0] * n, "offset": list(range(n)), "timestamp": [0] * n},
        schema=ARROW_SCHEMA,
    )


def _blocking_model(online_store) -> ActiveModel:
    """A real online store holding a small history and a model that blocks everything, so every
    scored row is an alert."""
    as_of = pd.Timestamp(datetime(2026, 1, 1, tzinfo=timezone.utc))
    history = pd.DataFrame({
        "transaction_id": ["h1", "h2"], "customer_key": ["c1", "c2"], "terminal_id": ["t1", "t2"],
        "amount_eur": [10.0, 20.0], "event_time": [as_of - timedelta(hours=2), as_of - timedelta(hours=1)],
    })
    online_store.materialise(FeatureSnapshot.build(history, as_of=as_of))
    info = ChampionInfo("m", "1", "models:/m/1", None, 0.5, FEATURE_COLUMNS)
    return ActiveModel("m", info, lambda X: np.full(len(X), 0.99), 0.0)


def test_hostile_corpus_reconciles_in_batch_scoring_and_no_pan_reaches_a_sink(stream_env, pg_dsn, online_store, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    corpus = hostile_records()
    model = _blocking_model(online_store)
    batch = score_batch(0, _records([r.payload for r in corpus]), model, online_store, "hostile/0/0", 0.5, 0.9,
                        TransactionValidator(accept_zero_amount=True))
    batch.reconcile()

    scored = batch.scored["_kafka_offset"].tolist()
    dead = {letter.offset: letter.rejection for letter in batch.dead_letters}
    assert sorted(scored + list(dead)) == list(range(len(corpus)))  # each record in exactly one place
    for offset, record in enumerate(corpus):
        if record.accepted:
            assert offset in scored, record.reason
        else:
            assert (dead[offset].rule, dead[offset].field) == (record.expect, record.field), record.reason
    assert (batch.scored["amount"] == 0).sum() >= 2  # account verifications are scored like any transaction

    # The real sinks: scored zone, both alert stores, predictions and DLQ topics.
    ScoredLake(LocalLakeStore(tmp_path / "lake")).write(batch, partition=0)
    for store in (DuckDBAlertStore(tmp_path / "alerts.duckdb"), PostgresAlertStore(pg_dsn, "hostile.fraud_alerts")):
        store.ensure_schema()
        assert store.upsert(alerts_of(batch)) == len(scored)
        store.close()
    settings = KafkaSettings.from_env()
    topics = settings.topics
    outputs = KafkaOutputs(make_producer(settings), topics.predictions, topics.transactions_dlq, topics.transactions)
    outputs.send_predictions(batch.scored)
    outputs.send_dead_letters(batch.dead_letters)
    outputs.flush()

    assert pans_in_files(tmp_path) == []
    assert pans_in_topic(settings, topics.transactions_dlq) == []
    assert pans_in_topic(settings, topics.predictions) == []
    assert not contains_pan(caplog.text)
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT * FROM hostile.fraud_alerts").fetchall()
    assert len(rows) == len(scored) and not any(contains_pan(str(v)) for row in rows for v in row)

    # The 2 MiB dead letters went out cut to the broker limit, with the original's size and hash.
    letters = [m for chunk, _ in read_range(settings, topics.transactions_dlq, {0: 0, 1: 0}) for m in chunk]
    assert len(letters) == len(dead)
    cut = [parse_dead_letter_headers(m.headers()) for m in letters if len(m.value() or b"") > 900_000 or
           parse_dead_letter_headers(m.headers()).get("truncated")]
    assert len(cut) == 2 and all(int(h["original.size"]) > 2 * 1024 * 1024 and len(h["original.sha256"]) == 64 for h in cut)


def test_a_row_the_duckdb_alert_table_refuses_is_dead_lettered_and_the_rest_is_stored(stream_env, online_store, monkeypatch) -> None:
    """The embedded alert store (DuckDB, written by the driver after the tasks) refuses one row of a
    batch: that row is dead-lettered with the table's error, the rows around it are stored, scored,
    predicted and logged, and the batch is committed. The batch's oversized reject is cut to
    FRAUD_DLQ_MAX_MESSAGE_BYTES, the limit landing uses (not a second, fixed one)."""
    import json
    import sqlite3

    import spark_streaming.executor as executor
    from fraud_platform.infra.decision_log import DecisionLogTarget
    from spark_streaming.config import StreamConfig
    from spark_streaming.job import BatchHandler, Components
    from spark_streaming.metrics import StreamMetrics

    from .conftest import consume_all, transaction

    refused_id = "tx-the-duckdb-refuses"
    valid = [transaction(i) for i in range(6)]
    sent = valid[:3] + [dict(transaction(99), transaction_id=refused_id)] + valid[3:]
    oversized = json.dumps(dict(transaction(98), merchant_category="x" * 50_000)).encode()  # invalid, 50 kB
    records = _records([json.dumps(t).encode() for t in sent] + [oversized])
    monkeypatch.setenv("FRAUD_DLQ_MAX_MESSAGE_BYTES", "16384")

    config = StreamConfig.load({})
    alerts = DuckDBAlertStore(config.alerts_duckdb_path, config.alerts_table)
    # A constraint validation cannot see: the table refuses one id, as a database refuses a row.
    alerts.connection().execute(create_sql(config.alerts_table, double="DOUBLE").replace(
        "reasons TEXT)", f"reasons TEXT, CONSTRAINT duckdb_refuses_one CHECK (transaction_id <> '{refused_id}'))"))
    alerts.ensure_schema()
    model = _blocking_model(online_store)  # every scored row is an alert
    monkeypatch.setitem(executor._MODEL, (model.model_name, model.info.version, model.info.model_uri), model)
    watcher = type("Watcher", (), {"current": lambda self: model, "stop": lambda self: None})()
    parts = Components(config=config, metrics=StreamMetrics(), watcher=watcher, lake=LocalLakeStore(config.platform.lake.root),
                       alerts=alerts, kafka=KafkaSettings.from_env(), store=online_store,
                       decision_log=DecisionLogTarget.from_settings())
    try:
        BatchHandler(parts).process(records, batch_id=0)
        stored = {r[0] for r in alerts.connection().execute(f"SELECT transaction_id FROM {config.alerts_table}").fetchall()}
    finally:
        parts.close()

    ids = {t["transaction_id"] for t in valid}
    assert stored == ids
    letters = {m.key(): m for m in consume_all(stream_env["FRAUD_TOPIC_TRANSACTIONS_DLQ"])}
    assert sorted(letters) == [b"k3", f"k{len(sent)}".encode()]
    cut = letters[f"k{len(sent)}".encode()]
    assert len(cut.value()) <= 16384 and parse_dead_letter_headers(cut.headers())["original.size"] == str(len(oversized))
    assert json.loads(letters[b"k3"].value())["transaction_id"] == refused_id
    headers = parse_dead_letter_headers(letters[b"k3"].headers())
    assert (headers["error.rule"], headers["error.field"]) == ("sink_failed", "alerts")
    assert "duckdb_refuses_one" in headers["error.message"] or "CHECK constraint" in headers["error.message"]
    assert {json.loads(m.value())["transaction_id"] for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"])} == ids
    with sqlite3.connect(stream_env["FRAUD_DECISIONS_SQLITE_PATH"]) as conn:
        assert {r[0] for r in conn.execute("SELECT transaction_id FROM api_decisions")} == ids  # refused: no decision
    assert parts.metrics.value("fraud_stream_dead_letters_total", {"rule": "sink_failed"}) == 1
