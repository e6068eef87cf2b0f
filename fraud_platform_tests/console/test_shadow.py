"""The challenger in shadow: a real SQLite MLflow registry with a medium champion, a better and a
worse challenger; the API's shadow scorer (real model loading through the alias) scores live
decisions; labels take the real landing path; the Dagster asset reports and gates promotion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import orjson
import pytest

from fraud_platform.infra.decision_log import SQLiteBackend
from fraud_platform.defs.ml.assets import ModelTrainingResource
from fraud_platform.defs.ml.shadow import challenger_shadow_report
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource
from fraud_platform.domain.features import FEATURE_COLUMNS
from fraud_platform.domain.hashing import entity_key
from fraud_platform.infra.landing import LandingEngine
from fraud_platform.infra.landing_specs import labels_spec
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.infra.publish import RateLimitedProducer
from fraud_platform.ml.registry import publish_tags
from fraud_platform.ml.shadow import ShadowLog, ShadowScorer, challenger_holder
from fraud_platform_tests.streaming.conftest import _training_frame

MODEL = "fraud_detector_shadow_test"
AMOUNT_COLUMNS = [c for c in FEATURE_COLUMNS if "amount" in c]


@pytest.fixture(scope="module")
def shadow_registry(tmp_path_factory):
    """v1 medium champion (blind to amounts), v2 better (XGBoost on everything), v3 worse (learnt the labels inverted)."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier

    root = tmp_path_factory.mktemp("shadow-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("shadow-tests", artifact_location=(root / "artifacts").as_uri())
    X, y = _training_frame(2000)
    blind = X.copy()
    blind[AMOUNT_COLUMNS] = 0.0
    models = [("sklearn", LogisticRegression(max_iter=300).fit(blind, y)),
              ("xgboost", XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)),
              ("sklearn", LogisticRegression(max_iter=300).fit(X, 1 - y))]
    for flavor, model in models:
        with mlflow.start_run(experiment_id=experiment):
            getattr(mlflow, flavor).log_model(model, name="model", registered_model_name=MODEL, pip_requirements=[flavor])
    tags = publish_tags({}, features=FEATURE_COLUMNS, threshold=0.5, test_window="t")
    for version in ("1", "2", "3"):
        for key, value in tags.items():
            client.set_model_version_tag(MODEL, version, key, value)
    return uri, root, client, X, y, models[0][1]


def live_decisions(X, champion_model, prefix: str) -> list[dict]:
    """The champion's decisions on 'live' rows, with the feature values it saw (as the API records them)."""
    decided_at = datetime.now(timezone.utc) - timedelta(hours=2)
    scores = champion_model.predict_proba(X.assign(**{c: 0.0 for c in AMOUNT_COLUMNS}))[:, 1]
    return [{"transaction_id": f"{prefix}-{i:06d}", "decided_at": (decided_at + timedelta(seconds=i)).isoformat(), "source": "api",
             "customer_key": entity_key(f"cust-{i % 300}"), "model_version": "1", "score": float(s),
             "decision": "review" if s >= 0.5 else "approve", "features": dict(zip(FEATURE_COLUMNS, row))}
            for i, (s, row) in enumerate(zip(scores, X.to_numpy().tolist()))]


def run_report(uri, root, lake_root, live_evidence: bool = True) -> dg.MaterializeResult:
    result = dg.materialize([challenger_shadow_report], resources={
        "lake": LakeResource(root=str(lake_root)),
        "mlflow": MlflowResource(tracking_uri=uri, registry_uri=uri, artifact_root=(root / "artifacts").as_uri(), model_name=MODEL),
        "ml_training": ModelTrainingResource(require_live_evidence=live_evidence, live_min_labelled=100, live_min_frauds=5),
        "lake_processing": LakeProcessingResource(label_maturity_days=0),
    })
    assert result.success
    return result.asset_materializations_for_node("challenger_shadow_report")[0].metadata


@pytest.mark.slow
def test_better_challenger_is_promoted_on_live_evidence_and_worse_is_not(shadow_registry, kafka_settings, tmp_path, monkeypatch):
    uri, root, client, X, y, champion_model = shadow_registry
    sqlite_path = tmp_path / "decisions.sqlite"
    monkeypatch.setenv("FRAUD_DECISIONS_SQLITE_PATH", str(sqlite_path))
    shadow_log = ShadowLog(SQLiteBackend(sqlite_path, "api_decisions"))
    lake_root = tmp_path / "lake"
    live = X.iloc[-800:].reset_index(drop=True)
    truth = y[-800:]

    def shadow_traffic(prefix: str) -> None:
        holder = challenger_holder(lambda: __import__("mlflow").MlflowClient(uri, uri), MODEL, refresh_seconds=60)
        assert holder.refresh()
        scorer = ShadowScorer(holder, shadow_log, review=None, block=0.9)
        decisions = live_decisions(live, champion_model, prefix)
        scorer.submit(decisions)
        scorer.close()
        assert scorer.scored == len(decisions) and scorer.failures == 0
        # The fraud labels of this traffic arrive the ordinary way: labels topic -> landing -> raw lake.
        producer = RateLimitedProducer(kafka_settings)
        known_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        producer.send(kafka_settings.topics.labels, [
            (d["transaction_id"].encode(), orjson.dumps({"transaction_id": d["transaction_id"], "is_fraud": True, "label_type": "chargeback",
                                                         "known_at": known_at, "fraud_scenario": 1}))
            for d, fraud in zip(decisions, truth) if fraud])
        producer.close()
        assert LandingEngine(LocalLakeStore(lake_root), kafka_settings, labels_spec(kafka_settings.topics)).land().valid == int(truth.sum())

    # A worse challenger: the report shows it below the champion and nothing moves.
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "challenger", "3")
    shadow_traffic("worse")
    worse = run_report(uri, root, lake_root)
    assert worse["challenger_version"].value == "3" and worse["labelled_rows"].value == 800
    assert worse["challenger_average_precision"].value < worse["champion_average_precision"].value
    assert worse["promoted"].value is False
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    # A better challenger: higher live AP, promoted, and the challenger alias is cleared.
    client.set_registered_model_alias(MODEL, "challenger", "2")
    shadow_traffic("better")
    better = run_report(uri, root, lake_root)
    assert better["challenger_version"].value == "2"
    assert better["challenger_average_precision"].value > better["champion_average_precision"].value
    assert better["challenger_card_precision_at_k"].value >= better["champion_card_precision_at_k"].value
    assert 0.0 <= better["agreement"].value <= 1.0 and "plot" in better
    assert better["promoted"].value is True
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert "challenger" not in client.get_registered_model(MODEL).aliases
