"""A verdict follows the platform's label path: outbox -> labels topic (real broker) -> the
ingestion's landing (validated, raw lake) -> the sandbox label (Spark) and the online fraud
features of the next transaction at that terminal (real Redis). A later chargeback overrides an
analyst's "legitimate"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pandas as pd

from fraud_platform.api.decision_log import DecisionLog, SQLiteBackend
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
    chargeback_at = datetime.now(timezone.utc) + timedelta(seconds=5)
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

    labels_table = lake.read_partition(RAW_LABELS, today)
    before = sandbox()
    assert before.loc[fraud["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "analyst_confirmed"]
    assert before.loc[legit["transaction_id"], ["is_fraud", "label_type"]].tolist() == [0, "analyst_legitimate"]

    # A chargeback arriving after the analyst said "legitimate" overrides the verdict.
    producer = RateLimitedProducer(kafka_settings)
    chargeback = {"transaction_id": legit["transaction_id"], "is_fraud": True, "label_type": "chargeback",
                  "known_at": chargeback_at.isoformat().replace("+00:00", "Z"), "fraud_scenario": None}
    producer.send(topics.labels, [(legit["transaction_id"].encode(), orjson.dumps(chargeback))])
    producer.close()
    assert LandingEngine(lake, kafka_settings, labels_spec(topics)).land().valid == 1
    after = sandbox()
    assert after.loc[legit["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "chargeback"]
    assert after.loc[fraud["transaction_id"], ["is_fraud", "label_type"]].tolist() == [1, "analyst_confirmed"]

    # Online: the next transaction at term-3 sees the confirmed fraud once the landed label is applied.
    history = pd.DataFrame({"transaction_id": [fraud["transaction_id"], legit["transaction_id"]],
                            "event_time": pd.to_datetime([fraud["event_time"], legit["event_time"]], utc=True),
                            "customer_key": [entity_key(fraud["customer_id"]), entity_key(legit["customer_id"])],
                            "terminal_id": [fraud["terminal_id"], legit["terminal_id"]],
                            "amount_eur": [fraud["amount"], legit["amount"]]})
    online_store.apply_transactions(history)
    nxt = transaction(63, when=datetime.now(timezone.utc) + timedelta(minutes=1), prefix="fb")
    assert nxt["terminal_id"] == fraud["terminal_id"]
    probe = pd.DataFrame({"transaction_id": [nxt["transaction_id"]], "event_time": pd.to_datetime([nxt["event_time"]], utc=True),
                          "customer_key": [entity_key(nxt["customer_id"])], "terminal_id": [nxt["terminal_id"]], "amount_eur": [nxt["amount"]]})
    assert online_store.features(probe)["terminal_fraud_count_recent_7d"].iat[0] == 0
    analyst_labels = labels_table.to_pandas()
    online_store.apply_labels(analyst_labels[analyst_labels["transaction_id"] == fraud["transaction_id"]])
    features = online_store.features(probe)
    assert features["terminal_fraud_count_recent_7d"].iat[0] == 1
    assert features["terminal_days_since_last_fraud"].iat[0] == 1
