"""The features -> fraud_model -> model_evaluation -> champion_model assets, materialised with
Dagster on sandbox Parquet, against a real MLflow SQLite registry."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from fraud_platform.defs.features import feature_snapshot, transaction_features
from fraud_platform.defs.features.assets import LATEST_SNAPSHOT_KEY, read_matrix
from fraud_platform.defs.ml.assets import ModelTrainingResource, champion_model, fraud_model, model_evaluation
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource
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
        "lake_processing": LakeProcessingResource(),
        "mlflow": mlflow,
        "ml_training": ModelTrainingResource(
            train_days=SMALL_SPLIT.train_days, validation_days=SMALL_SPLIT.validation_days,
            delay_days=SMALL_SPLIT.delay_days, test_days=SMALL_SPLIT.test_days, n_folds=2, max_trials=2,
            families=["xgboost", "logistic_regression"], budget_seconds=10_000,
            n_estimators=list(SMALL_SEARCH["n_estimators"]), max_depth=list(SMALL_SEARCH["max_depth"]),
            daily_alert_budget=20, top_k=20,
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
    client = mlflow.client()
    champion = registry.load_champion(client, "fraud_detector")
    assert champion.version == outcome["version"] == "1"
    assert champion.features == FEATURE_COLUMNS
    # Scoring reads features from the online store: the version carries no snapshot location.
    assert not [t for t in client.get_model_version("fraud_detector", champion.version).tags if "snapshot" in t]
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

    # Live-evidence gate: against a weak champion the trained model wins offline, yet champion_model
    # only parks it as `challenger` (scored in shadow; `challenger_shadow_report` promotes it on live AP,
    # fraud_platform_tests/console/test_shadow.py). The assets are invoked directly: no retraining.
    weak = _register_weak_champion(client, matrix, second.output_for_node("fraud_model")["features"], tmp_path)
    gated = ModelTrainingResource(**{**resources["ml_training"].model_dump(), "require_live_evidence": True})
    trained = second.output_for_node("fraud_model")
    evaluation = model_evaluation(lake=resources["lake"], mlflow=mlflow, ml_training=gated, fraud_model=trained).value
    assert evaluation["champion_version"] == weak
    assert evaluation["metrics"]["average_precision"] > evaluation["champion_metrics"]["average_precision"]
    parked = champion_model(lake=resources["lake"], mlflow=mlflow, ml_training=gated, fraud_model=trained, model_evaluation=evaluation).value
    assert (parked["alias"], parked["promoted"]) == ("challenger", False) and "awaiting live evidence" in parked["reason"]
    assert registry.load_champion(client, "fraud_detector").version == weak
    assert registry.load_champion(client, "fraud_detector", registry.CHALLENGER_ALIAS).version == parked["version"]


def _register_weak_champion(client, matrix: pd.DataFrame, features: list[str], tmp_path) -> str:
    """A constant-score model on the same features, registered and aliased `champion`."""
    import mlflow as mlflow_lib
    from sklearn.dummy import DummyClassifier

    weak = DummyClassifier(strategy="prior").fit(matrix[features].astype("float64"), matrix["is_fraud"].astype(int))
    experiment = client.create_experiment("weak-champion", artifact_location=(tmp_path / "weak").as_uri())
    with mlflow_lib.start_run(experiment_id=experiment) as run:
        info = mlflow_lib.sklearn.log_model(weak, name="model", pip_requirements=["scikit-learn"])
    tags = registry.publish_tags({}, features=features, threshold=0.5, test_window="t")
    version = registry.register_version(client, "fraud_detector", info.model_uri, run.info.run_id, tags)
    registry.apply_decision(client, "fraud_detector", version, registry.Decision(True, "a weak champion for the test"))
    return version


def test_explicit_windows_and_rolling_backtest_through_dagster(sandbox_frame, tmp_path):
    """Run config picks the windows; `model_backtest` reports mean ± spread in its metadata."""
    from fraud_platform.defs.ml.assets import model_backtest

    store = LocalLakeStore(tmp_path / "lake")
    write_sandbox(store, sandbox_frame)
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_root=(tmp_path / "artifacts").as_uri(), model_name="fraud_detector")
    resources = {"lake": LakeResource(root=str(store.root)), "lake_processing": LakeProcessingResource(), "mlflow": mlflow, "ml_training": ModelTrainingResource(
        train_days=SMALL_SPLIT.train_days, validation_days=SMALL_SPLIT.validation_days, delay_days=SMALL_SPLIT.delay_days,
        test_days=SMALL_SPLIT.test_days, n_folds=1, max_trials=1, families=["logistic_regression"], balancing=["none"],
        budget_seconds=10_000, daily_alert_budget=20, top_k=20)}
    run_config = {"ops": {
        "fraud_model": {"config": {"test_start": "2026-01-20", "test_days": 3, "train_end": "2026-01-14"}},
        "model_backtest": {"config": {"test_start": "2026-01-21", "test_days": 4, "windows": 2}},
    }}
    result = dg.materialize([transaction_features, fraud_model, model_evaluation, model_backtest],
                            resources=resources, run_config=run_config)
    assert result.success
    trained = result.output_for_node("fraud_model")
    assert trained["train_window"] == ["2026-01-08", "2026-01-14"] and trained["test_window"] == ["2026-01-20", "2026-01-22"]
    assert result.output_for_node("model_evaluation")["test_window"] == ["2026-01-20", "2026-01-22"]
    metadata = result.asset_materializations_for_node("model_backtest")[0].metadata
    assert metadata["windows"].value == 2
    assert 0 < metadata["average_precision_mean"].value <= 1 and metadata["average_precision_std"].value >= 0
    report = metadata["report"].value
    assert "2026-01-21" in report and "2026-01-25" in report and "data:image/png;base64," in report
