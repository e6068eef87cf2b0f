"""A verdict follows the platform's label path: outbox -> labels topic (real broker) -> the
ingestion's landing (validated, raw lake) -> the sandbox label (Spark), and through the streaming
feature pipeline (Spark, real Redis) to the online fraud features of the next transaction at that
terminal. A later chargeback overrides an analyst's "legitimate", in the sandbox and online."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
import pandas as pd

from fraud_platform.infra.decision_log import DecisionLog, SQLiteBackend
from fraud_platform.console.labels import LabelPublisher
from fraud_platform.console.store import ConsoleStore
from fraud_platform.domain.hashing import entity_key
from fraud_platform.infra.landing import LandingEngine
from fraud_platform.infra.landing_specs import labels_spec, transactions_spec
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.infra.publish import RateLimitedProducer
from fraud_platform.domain.catalogue import RAW_LABELS, RAW_TRANSACTIONS
from fraud_platform.processing.transform import build_processed, build_sandbox
from fraud_platform.processing.zones import read_partitions
from fraud_platform_tests.streaming.conftest import transaction


def decision_row(event: dict, decision: str = "review") -> dict:
    return {"transaction_id": event["transaction_id"], "decided_at": datetime.now(timezone.utc).isoformat(), "source": "stream",
            "event_time": event["event_time"], "customer_key": entity_key(event["customer_id"]), "terminal_id": event["terminal_id"],
            "amount_eur": event["amount"], "score": 0.8, "decision": decision, "threshold": 0.5, "block_threshold": 0.9,
            "model_name": "m", "model_version": "1", "feature_state_version": "s", "reasons": [], "latency_ms": 1.0,
            "api_key": None, "channel": event["channel"], "country": event["country"], "features": {}}


@pytest.mark.slow
def test_verdicts_reach_the_topic_the_lake_the_sandbox_and_online_features(kafka_settings, tmp_path, spark, online_store):
    topics = kafka_settings.topics
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    # Two alerts at terminal term-3 yesterday (i % 20 == 3); the analyst judges them today.
    fraud, legit = transaction(3, when=yesterday, prefix="fb"), transaction(23, when=yesterday + timedelta(minutes=1), prefix="fb")
    log = DecisionLog(SQLiteBackend(tmp_path / "decisions.sqlite", "decisions"))
    store = ConsoleStore(log)
    log.write([decision_row(fraud), decision_row(legit)])
    store.close_alert(fraud["transaction_id"], "fraud", "card reported stolen", "alice")
    store.close_alert(legit["transaction_id"], "legitimate", "customer confirmed", "bob")
    store.close_alert(transaction(43, prefix="fb")["transaction_id"], "unsure", "", "bob")  # no decision row needed; no label

    publisher = LabelPublisher(store, kafka_settings, retry_seconds=3600)
    try:
        assert publisher.publish_pending() == 2
        assert store.unpublished_labels() == []
        assert publisher.publish_pending() == 0  # acknowledged labels are not sent twice
    finally:
        publisher.close()
        log.close()

    # The transactions and a later chargeback for the "legitimate" one take the ordinary path.
    producer = RateLimitedProducer(kafka_settings)
    producer.send(topics.transactions, [(e["transaction_id"].encode(), orjson.dumps(e)) for e in (fraud, legit)])
    producer.close()

    lake = LocalLakeStore(tmp_path / "lake")
    landed_labels = LandingEngine(lake, kafka_settings, labels_spec(topics)).land()
    assert (landed_labels.valid, landed_labels.dead_lettered) == (2, 0)
    assert LandingEngine(lake, kafka_settings, transactions_spec(topics)).land().valid == 2
    today = datetime.now(timezone.utc).date().isoformat()
    raw_labels = lake.read_partition(RAW_LABELS, today).to_pandas().set_index("transaction_id")
    assert raw_labels.loc[fraud["transaction_id"], "label_type"] == "analyst_confirmed"
    assert bool(raw_labels.loc[fraud["transaction_id"], "is_fraud"]) is True
    assert raw_labels.loc[legit["transaction_id"], "label_type"] == "analyst_legitimate"

    def sandbox() -> pd.DataFrame:
        """The lake's own Spark path: raw partitions -> processed -> sandbox labels."""
        raw_tx, _ = read_partitions(spark, lake, RAW_TRANSACTIONS, [yesterday.date()])
        raw_lb, _ = read_partitions(spark, lake, RAW_LABELS, [yesterday.date(), datetime.now(timezone.utc).date()])
        processed = build_processed(raw_tx, raw_lb, maturity_days=7, processed_at=datetime.now(timezone.utc))
        rows = build_sandbox(processed, raw_lb, 7, {yesterday.date().isoformat(): "train"}).toPandas()
        return rows.set_index("transaction_id")

    sandboxed = sandbox()
    assert sandboxed.loc[fraud["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "analyst_confirmed"]
    assert sandboxed.loc[legit["transaction_id"], ["is_fraud", "label_type"]].tolist() == [0, "analyst_legitimate"]

    # Online: the streaming feature pipeline (wt-11a's, real Spark + Redis) applies the topics; the next
    # transaction at term-3 sees the analyst-confirmed fraud, one before the verdict does not.
    from spark_streaming.feature_pipeline import load_config, parse_args, run as run_features

    config = load_config(parse_args(["--checkpoint", str(tmp_path / "features-checkpoint"), "--available-now", "--trigger-seconds", "0"]))
    run_features(config, store=online_store, spark=spark)

    def probe(i: int, when: datetime) -> pd.Series:
        event = transaction(i, when=when, prefix="fb")
        assert event["terminal_id"] == fraud["terminal_id"]
        frame = pd.DataFrame({"transaction_id": [event["transaction_id"]], "event_time": pd.to_datetime([event["event_time"]], utc=True),
                              "customer_key": [entity_key(event["customer_id"])], "terminal_id": [event["terminal_id"]],
                              "amount_eur": [event["amount"]]})
        return online_store.features(frame).iloc[0]

    verdict_at = datetime.fromisoformat(raw_labels.loc[fraud["transaction_id"], "known_at"].isoformat())
    before, after = probe(63, verdict_at - timedelta(seconds=30)), probe(83, datetime.now(timezone.utc) + timedelta(minutes=1))
    assert (before["terminal_fraud_count_recent_7d"], after["terminal_fraud_count_recent_7d"]) == (0, 1)
    assert after["terminal_days_since_last_fraud"] == 1

    # A chargeback arriving after the analyst said "legitimate" overrides the verdict.
    chargeback_at = datetime.now(timezone.utc)
    producer = RateLimitedProducer(kafka_settings)
    chargeback = {"transaction_id": legit["transaction_id"], "is_fraud": True, "label_type": "chargeback",
                  "known_at": chargeback_at.isoformat().replace("+00:00", "Z"), "fraud_scenario": None}
    producer.send(topics.labels, [(legit["transaction_id"].encode(), orjson.dumps(chargeback))])
    producer.close()
    assert LandingEngine(lake, kafka_settings, labels_spec(topics)).land().valid == 1
    resandboxed = sandbox()
    assert resandboxed.loc[legit["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "chargeback"]
    assert resandboxed.loc[fraud["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "analyst_confirmed"]
    # ... and online too: the terminal now has two known frauds.
    run_features(config, store=online_store, spark=spark)
    assert probe(103, datetime.now(timezone.utc) + timedelta(minutes=2))["terminal_fraud_count_recent_7d"] == 2
