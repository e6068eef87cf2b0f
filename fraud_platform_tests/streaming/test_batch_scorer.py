"""The scorer's online features are the training features: champion snapshot from the lake +
micro-batch give exactly what the batch path computes over the full history."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot, compute_batch_features
from fraud_platform.domain.hashing import entity_key
from fraud_platform.infra.broker import free_port
from fraud_platform.ml.registry import ChampionInfo
from spark_streaming.champion import ActiveModel
from spark_streaming.metrics import StreamMetrics
from spark_streaming.scoring import prediction_records, score_batch
from spark_streaming.source import ARROW_SCHEMA

from .conftest import transaction


def records(txs: list[dict]) -> pa.Table:
    n = len(txs)
    return pa.Table.from_pydict(
        {"key": [None] * n, "value": [json.dumps(t).encode() for t in txs], "topic": ["tx"] * n,
         "partition": [0] * n, "offset": list(range(n)), "timestamp": [0] * n},
        schema=ARROW_SCHEMA,
    )


def as_feature_input(txs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": [t["transaction_id"] for t in txs],
        "customer_key": [entity_key(t["customer_id"]) for t in txs],
        "terminal_id": [t["terminal_id"] for t in txs],
        "amount_eur": [float(t["amount"]) for t in txs],
        "event_time": pd.to_datetime([t["event_time"] for t in txs], utc=True),
    })


def test_scoring_reads_the_online_store_and_gives_the_batch_features(online_store):
    """Snapshot materialised into Redis + the feature pipeline's applied batch = the batch features."""
    start = datetime.now(timezone.utc) - timedelta(days=10)
    history = [transaction(i, when=start + timedelta(minutes=13 * i)) for i in range(800)]
    as_of = start + timedelta(minutes=13 * 800)
    first = [transaction(1000 + i, when=as_of + timedelta(minutes=i)) for i in range(60)]
    second = [transaction(2000 + i, when=as_of + timedelta(minutes=60 + i)) for i in range(60)]
    online_store.materialise(FeatureSnapshot.build(as_feature_input(history), as_of=pd.Timestamp(as_of)))
    seen: list[pd.DataFrame] = []

    def predict(X: pd.DataFrame) -> np.ndarray:
        seen.append(X.copy())
        return np.where(X["amount_eur"] > 220, 0.95, 0.05)

    info = ChampionInfo("m", "7", "models:/m/7", None, 0.5, FEATURE_COLUMNS)
    model = ActiveModel("m", info, predict, 0.0)
    batch = score_batch(0, records(first), model, online_store, "q/0/0", 0.5, 0.9)
    batch.reconcile()
    online_store.apply_transactions(batch.scored)  # what the streaming feature pipeline does
    batch = score_batch(1, records(second), model, online_store, "q/1/0", 0.5, 0.9)
    batch.reconcile()

    expected = compute_batch_features(as_feature_input(history + first + second))[FEATURE_COLUMNS].iloc[800:]
    online = pd.concat(seen, ignore_index=True)
    pd.testing.assert_frame_equal(online.reset_index(drop=True), expected.reset_index(drop=True), atol=1e-9)
    assert batch.scored["feature_snapshot_version"].unique().tolist() == [online_store.state_version()]
    assert set(batch.scored["decision"]) <= {"approve", "block"}
    # the scored rows carry the features the model saw (drift monitoring reads them from the lake)
    np.testing.assert_allclose(batch.scored["customer_tx_count_1d"].to_numpy(), expected["customer_tx_count_1d"].iloc[60:].to_numpy())

    replay = score_batch(1, records(second[:3]), model, online_store, "q/1/0", 0.5, 0.9)  # same task token: claims hold
    assert len(replay.scored) == 3
    again = score_batch(2, records(second[:3]), model, online_store, "q/2/0", 0.5, 0.9)  # re-sent transactions
    assert len(again.scored) == 0
    assert [d.rejection.rule for d in again.dead_letters] == ["duplicate_transaction_id"] * 3


def test_prediction_records_are_the_topic_contract():
    scored = pd.DataFrame({
        "transaction_id": ["tx-1"], "score": [0.25], "decision": ["approve"], "threshold": [0.5],
        "model_name": ["m"], "model_version": ["3"], "feature_snapshot_version": ["s1"],
        "event_time": pd.to_datetime(["2026-01-02T03:04:05.123456Z"], utc=True),
        "processing_time": pd.to_datetime(["2026-01-02T03:04:06Z"], utc=True),
        "reasons": ['["amount 950 EUR, 9.1x the 30-day mean"]'],
    })
    assert json.loads(prediction_records(scored)[0]) == {
        "transaction_id": "tx-1", "score": 0.25, "decision": "approve", "threshold": 0.5, "model_name": "m",
        "model_version": "3", "feature_snapshot_version": "s1", "event_time": "2026-01-02T03:04:05.123456Z",
        "processing_time": "2026-01-02T03:04:06.000000Z", "reasons": ["amount 950 EUR, 9.1x the 30-day mean"],
    }


def test_metrics_endpoint_serves_the_scorer_metrics():
    metrics = StreamMetrics()
    port = free_port()
    metrics.serve(port)
    metrics.latency.observe_many(np.array([0.02, 0.3, 0.3, 4.0]))
    metrics.rows.labels("scored").inc(4)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'fraud_stream_rows_total{outcome="scored"} 4.0' in body
    assert 'fraud_stream_end_to_end_latency_seconds_bucket{le="0.5"} 3.0' in body
    assert "fraud_stream_end_to_end_latency_seconds_count 4.0" in body
    assert metrics.latency.quantile(0.5) == 0.5


def test_challenger_watcher_follows_the_alias_and_is_quiet_without_one(registry):
    """No challenger is the normal case (None, no failure); it appears, moves and goes away with the alias."""
    from mlflow import MlflowClient

    from spark_streaming.champion import ChallengerWatcher

    from .conftest import MODEL_NAME

    failures = []
    watcher = ChallengerWatcher(lambda: MlflowClient(registry.tracking_uri, registry.tracking_uri), MODEL_NAME, "challenger", 60,
                                on_failure=lambda stage, error: failures.append(stage))
    assert watcher.refresh() is False and watcher.info() is None
    registry.client.set_registered_model_alias(MODEL_NAME, "challenger", "2")
    try:
        assert watcher.refresh() is True and watcher.info().version == "2"
        assert watcher.refresh() is False  # unchanged
    finally:
        registry.client.delete_registered_model_alias(MODEL_NAME, "challenger")
    assert watcher.refresh() is True and watcher.info() is None
    assert failures == []


def test_a_loaded_xgboost_model_predicts_on_one_thread() -> None:
    """Each Spark task owns one core: the champion (XGBoost alone or ending a pipeline) must not
    start OpenMP threads on every core (they spun against the other task's), and scores the same."""
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    from spark_streaming.champion import single_threaded

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    y = (X["a"] > 0.5).astype(int)
    for fitted in (XGBClassifier(n_estimators=5, max_depth=2).fit(X, y),
                   Pipeline([("model", XGBClassifier(n_estimators=5, max_depth=2))]).fit(X, y)):
        before = fitted.predict_proba(X)[:, 1]
        single_threaded(fitted)
        estimator = fitted.steps[-1][1] if hasattr(fitted, "steps") else fitted
        config = json.loads(estimator.get_booster().save_config())
        assert estimator.n_jobs == 1
        assert config["learner"]["generic_param"]["nthread"] == "1"
        np.testing.assert_array_equal(fitted.predict_proba(X)[:, 1], before)
