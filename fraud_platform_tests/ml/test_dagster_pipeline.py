"""The features -> fraud_model -> model_evaluation -> champion_model assets, materialised with
Dagster on sandbox Parquet, against a real MLflow SQLite registry."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from fraud_platform.defs.features import feature_snapshot, transaction_features
from fraud_platform.defs.features.assets import LATEST_SNAPSHOT_KEY, read_matrix
from fraud_platform.defs.ml.assets import ModelTrainingResource, champion_model, fraud_model, model_evaluation
from fraud_platform.defs.resources import LakeResource, MlflowResource
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml import registry
from fraud_platform_tests.ml.conftest import SMALL_SEARCH, SMALL_SPLIT, write_sandbox

pytestmark = pytest.mark.slow

FEATURE_ASSETS = [feature_snapshot, transaction_features]
ML_ASSETS = [fraud_model, model_evaluation, champion_model]


def test_features_train_evaluate_promote_then_keep_champion(sandbox_frame, tmp_path):
    store = LocalLakeStore(tmp_path / "lake")
    days = write_sandbox(store, sandbox_frame)
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_root=(tmp_path / "artifacts").as_uri(), model_name="fraud_detector")
    resources = {
        "lake": LakeResource(root=str(store.root)),
        "mlflow": mlflow,
        "ml_training": ModelTrainingResource(
            train_days=SMALL_SPLIT.train_days, validation_days=SMALL_SPLIT.validation_days,
            delay_days=SMALL_SPLIT.delay_days, test_days=SMALL_SPLIT.test_days, n_candidates=1,
            budget_seconds=10_000, n_estimators=SMALL_SEARCH["n_estimators"], max_depth=SMALL_SEARCH["max_depth"],
            learning_rate=SMALL_SEARCH["learning_rate"], daily_alert_budget=20, top_k=20,
        ),
    }
    first = dg.materialize([*FEATURE_ASSETS, *ML_ASSETS], resources=resources)
    assert first.success

    matrix = read_matrix(store)
    assert len(matrix) == len(sandbox_frame) and set(FEATURE_COLUMNS) <= set(matrix.columns)
    assert store.partition_dates("features", "transaction_features") == days
    latest = store.read_json(LATEST_SNAPSHOT_KEY)
    snapshot = FeatureSnapshot.read(store, latest["key"])
    assert snapshot.version == latest["version"]
    assert snapshot.as_of == pd.Timestamp(days[-1], tz="UTC") + pd.Timedelta(days=1)

    evaluation = first.output_for_node("model_evaluation")
    assert evaluation["champion_version"] is None and 0 < evaluation["metrics"]["average_precision"] <= 1
    outcome = first.output_for_node("champion_model")
    assert outcome["promoted"] and outcome["alias"] == "champion"
    client = mlflow.target().client()
    champion = registry.load_champion(client, "fraud_detector")
    assert champion.version == outcome["version"] == "1"
    assert champion.features == FEATURE_COLUMNS and champion.snapshot_version == latest["version"]
    assert champion.threshold == evaluation["metrics"]["threshold"]
    report = first.asset_materializations_for_node("model_evaluation")[0].metadata["report"].value
    assert "data:image/png;base64," in report

    # Same data, same seed: an identical model does not strictly beat the champion -> challenger.
    second = dg.materialize(ML_ASSETS, resources=resources)
    assert second.success
    again = second.output_for_node("model_evaluation")
    assert again["champion_version"] == "1"
    assert again["metrics"]["average_precision"] == pytest.approx(again["champion_metrics"]["average_precision"])
    outcome = second.output_for_node("champion_model")
    assert (outcome["version"], outcome["alias"], outcome["promoted"]) == ("2", "challenger", False)
    assert registry.load_champion(client, "fraud_detector").version == "1"
