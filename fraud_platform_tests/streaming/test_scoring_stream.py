"""End to end through real Spark: embedded broker -> python Kafka source -> scorer -> sinks, the
decision log (read back by a real decision API server and its console) and the challenger in shadow."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.card_data import mask_pans_bytes
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.domain.features import FEATURE_COLUMNS
from fraud_platform.infra.decision_log import DecisionLog, SQLiteBackend
from fraud_platform.infra.decision_tables import execute
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.shadow import ShadowLog
from spark_streaming.config import StreamConfig
from spark_streaming.job import build_components, run

from .conftest import MODEL_NAME, consume_all, invalid_records, produce, produce_transactions, transaction, wait_for

pytestmark = pytest.mark.slow


def scored_lake_ids(lake_root) -> list[str]:
    store = LocalLakeStore(lake_root)
    keys = [k for k in store.list("scored/transactions") if k.endswith(".parquet")]
    table = store.read_parquet(keys, columns=["transaction_id"])
    return [] if table is None else table.column("transaction_id").to_pylist()


def decision_log(stream_env) -> DecisionLog:
    """The decision log the scorer wrote (the API's table, in the test's SQLite file)."""
    return DecisionLog(SQLiteBackend(Path(stream_env["FRAUD_DECISIONS_SQLITE_PATH"]), "api_decisions"))


def test_available_now_scores_each_valid_transaction_once_and_dead_letters_the_rest(spark, stream_env, registry_env, online_store_url, tmp_path):
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

    # Every stream decision is in the decision log, as the API writes its own (source "stream").
    log = decision_log(stream_env)
    for p in predictions:
        row = log.get(p["transaction_id"])
        assert (row["source"], row["decision"], row["model_version"]) == ("stream", p["decision"], "1")
        assert row["score"] == pytest.approx(p["score"]) and set(row["features"]) == set(FEATURE_COLUMNS)
        assert [r["text"] for r in row["reasons"]] == p["reasons"]  # the same reasons, in full (feature, value, contribution)
        assert row["event_time"].endswith("+00:00") and row["latency_ms"] >= 0
    assert execute(log.backend, "SELECT count(*), count(DISTINCT transaction_id) FROM api_decisions", fetch=True) == [(len(valid), len(valid))]
    # No challenger aliased: no shadow work.
    assert ShadowLog(log.backend).read().empty

    # A challenger appears: the next batches are scored by it too, in shadow, into the API's shadow table.
    registry_env.client.set_registered_model_alias(MODEL_NAME, "challenger", "2")
    try:
        later = [transaction(i, amount=950.0 if i % 4 == 0 else 35.0, prefix="later") for i in range(80)]
        produce_transactions(later)
        parts = build_components(config)
        run(config, spark=spark, parts=parts)
    finally:
        registry_env.client.delete_registered_model_alias(MODEL_NAME, "challenger")
    shadow = ShadowLog(log.backend).read().set_index("transaction_id")
    assert sorted(shadow.index) == sorted(t["transaction_id"] for t in later)  # none for the batches before it
    assert set(shadow["challenger_version"]) == {"2"} and set(shadow["champion_version"]) == {"1"} and set(shadow["source"]) == {"stream"}
    from spark_streaming.champion import load_predictor

    predict, _ = load_predictor(f"models:/{MODEL_NAME}/2")
    rows = [log.get(t["transaction_id"]) for t in later]
    X = pd.DataFrame([r["features"] for r in rows])[FEATURE_COLUMNS]
    np.testing.assert_allclose(shadow.loc[[r["transaction_id"] for r in rows], "challenger_score"], predict(X), atol=1e-9)
    np.testing.assert_allclose(shadow.loc[[r["transaction_id"] for r in rows], "champion_score"], [r["score"] for r in rows])

    # A real decision API server and its console find a stream-decided transaction.
    from fraud_platform.api.auth import new_key
    from fraud_platform_tests.api.conftest import start_server

    key, entry = new_key("analyst", ("decide", "read"))
    flagged_row = next(r for r in rows if r["decision"] != "approve")
    server = start_server(tmp_path, {
        "MLFLOW_TRACKING_URI": registry_env.tracking_uri, "MLFLOW_REGISTRY_URI": registry_env.tracking_uri, "FRAUD_API_KEYS": entry,
        "FRAUD_CONSOLE_PUBLISH_LABELS": "false"})
    try:
        with server.client(key) as client:
            found = client.get(f"/v1/transactions/{flagged_row['transaction_id']}")
            assert found.status_code == 200, found.text
            body = found.json()
            assert (body["source"], body["decision"], body["model"]["version"]) == ("stream", flagged_row["decision"], "1")
            assert [r["feature"] for r in body["reasons"]] == [r["feature"] for r in flagged_row["reasons"]] and len(body["reasons"]) == 3
        with server.client(follow_redirects=True) as browser:
            assert browser.post("/console/login", data={"api_key": key}).status_code == 200
            queue = browser.get("/console/").text
            assert flagged_row["transaction_id"] in queue  # the stream's alert is in the analysts' queue
            page = browser.get(f"/console/transactions/{flagged_row['transaction_id']}")
            assert page.status_code == 200 and flagged_row["reasons"][0]["feature"] in page.text
    finally:
        server.stop()


def test_progress_listener_reports_each_micro_batch_lag_rate_and_durations(spark, stream_env, tmp_path, caplog):
    """The scorer's progress listener (one Py4J call per event, not PySpark's wrapper) sees every
    micro-batch of a query over the Kafka source, and each batch's progress sets the lag gauge to
    what is left of the topic and logs the batch's durations (what bench/streaming.py reads)."""
    import logging

    from spark_streaming.job import add_progress_listener, record_progress, source_frame
    from spark_streaming.metrics import StreamMetrics

    produce_transactions([transaction(i, prefix="progress") for i in range(40)])
    config = StreamConfig.load({"available_now": True, "max_offsets_per_trigger": 10})
    seen: list[dict] = []
    remove = add_progress_listener(spark, seen.append)
    try:
        query = (source_frame(spark, config).writeStream.format("noop").option("checkpointLocation", str(tmp_path / "checkpoint"))
                 .trigger(availableNow=True).start())
        query.awaitTermination(180)
        batches = query.lastProgress["batchId"] + 1
        wait_for(lambda: len({p["batchId"] for p in seen}) >= batches, "a progress event per micro-batch", 60)
    finally:
        remove()
    assert batches >= 4  # 40 records, at most 10 a micro-batch

    metrics = StreamMetrics()
    lags = []
    with caplog.at_level(logging.INFO, logger="spark_streaming"):
        for progress in sorted(seen, key=lambda p: p["batchId"]):
            record_progress(metrics, progress)
            lags.append(metrics.value("fraud_stream_consumer_lag_records"))
    assert lags[0] == 30 and lags[-1] == 0 and lags == sorted(lags, reverse=True)
    assert metrics.value("fraud_stream_input_rows_per_second") == (seen[-1].get("inputRowsPerSecond") or 0.0)
    logged = [r.getMessage() for r in caplog.records if "durations ms" in r.getMessage()]
    assert len(logged) == len(seen) and all('"triggerExecution"' in line for line in logged)
