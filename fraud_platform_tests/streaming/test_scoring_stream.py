"""End to end through real Spark: embedded broker -> python Kafka source -> scorer -> sinks."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from fraud_platform.domain.card_data import mask_pans_bytes
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.infra.lake import LocalLakeStore
from spark_streaming.config import StreamConfig
from spark_streaming.job import build_components, run

from .conftest import MODEL_NAME, consume_all, invalid_records, produce, produce_transactions, transaction

pytestmark = pytest.mark.slow


def scored_lake_ids(lake_root) -> list[str]:
    store = LocalLakeStore(lake_root)
    keys = [k for k in store.list("scored/transactions") if k.endswith(".parquet")]
    table = store.read_parquet(keys, columns=["transaction_id"])
    return [] if table is None else table.column("transaction_id").to_pylist()


def test_available_now_scores_each_valid_transaction_once_and_dead_letters_the_rest(spark, stream_env, registry_env):
    valid = [transaction(i, amount=950.0 if i % 10 == 0 else 20.0 + i % 50) for i in range(300)]
    produce_transactions(valid)
    bad = invalid_records()
    resent = valid[3]
    produce([(b"k-bad", value) for value, _, _ in bad] + [(resent["card_token"].encode(), json.dumps(resent).encode())])

    config = StreamConfig.load({"available_now": True})
    parts = build_components(config)
    handler = run(config, spark=spark, parts=parts)
    assert handler.batches >= 1

    predictions = [json.loads(m.value()) for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"])]
    ids = [p["transaction_id"] for p in predictions]
    assert sorted(ids) == sorted(t["transaction_id"] for t in valid)
    for p in predictions:
        assert set(p) == {"transaction_id", "score", "decision", "threshold", "model_name", "model_version",
                          "feature_snapshot_version", "event_time", "processing_time", "reasons"}
        assert p["model_name"] == MODEL_NAME and p["model_version"] == "1"
        expected = "block" if p["score"] >= 0.9 else "review" if p["score"] >= 0.5 else "approve"
        assert p["decision"] == expected
        assert (len(p["reasons"]) == 3) == (expected != "approve")  # top-3 readable reasons for alerts only
    by_id = {p["transaction_id"]: p for p in predictions}
    assert by_id[valid[10]["transaction_id"]]["decision"] != "approve"  # 950 EUR
    assert by_id[valid[1]["transaction_id"]]["decision"] == "approve"  # 21 EUR

    lake_ids = scored_lake_ids(stream_env["FRAUD_LAKE_ROOT"])
    assert sorted(lake_ids) == sorted(ids)

    letters = consume_all(stream_env["FRAUD_TOPIC_TRANSACTIONS_DLQ"])
    reasons = {m.value(): parse_dead_letter_headers(m.headers()) for m in letters}
    assert len(letters) == len(bad) + 1
    for value, rule, field in bad:
        value = mask_pans_bytes(value)  # dead letters never hold a full card number
        assert reasons[value]["error.rule"] == rule
        assert reasons[value]["error.field"] == (field or "")
        assert reasons[value]["source.topic"] == stream_env["FRAUD_TOPIC_TRANSACTIONS"]
    duplicate = reasons[json.dumps(resent).encode()]
    assert duplicate["error.rule"] == "duplicate_transaction_id" and duplicate["error.value"] == resent["transaction_id"]

    with duckdb.connect(stream_env["FRAUD_STREAM_ALERTS_DUCKDB_PATH"], read_only=True) as conn:
        alerts = conn.execute("SELECT transaction_id, decision, model_version, reasons FROM fraud_alerts").df()
    assert all(len(json.loads(r)) == 3 for r in alerts["reasons"])
    flagged = sorted(i for i, p in by_id.items() if p["decision"] != "approve")
    assert sorted(alerts["transaction_id"]) == flagged and len(flagged) >= 30

    metrics = parts.metrics
    assert metrics.value("fraud_stream_rows_total", {"outcome": "scored"}) == len(valid)
    assert metrics.value("fraud_stream_rows_total", {"outcome": "dead_lettered"}) == len(bad) + 1
    assert metrics.value("fraud_stream_end_to_end_latency_seconds_count") == len(valid)
    assert metrics.value("fraud_stream_model_version", {"model_name": MODEL_NAME}) == 1
