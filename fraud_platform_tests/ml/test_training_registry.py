"""Training, evaluation and promotion against a real MLflow SQLite tracking store and registry."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.ml import registry
from fraud_platform.ml.evaluation import EvaluationConfig, evaluate_model, held_out_rows, log_evaluation
from fraud_platform.ml.tracking import git_commit
from fraud_platform.ml.training import (
    FAMILIES,
    Candidate,
    TrainingConfig,
    build_pipeline,
    model_input,
    predict_scores,
    train_model,
)
from fraud_platform_tests.ml.conftest import SMALL_SEARCH, SMALL_SPLIT

pytestmark = pytest.mark.slow

# A zero budget: the seeded default of every family still runs (they always do), nothing after
# them - one trial per family however fast the machine is. Small trees.
CONFIG = TrainingConfig(split=SMALL_SPLIT, n_folds=2, max_trials=60, budget_seconds=0, **SMALL_SEARCH)
EVAL = EvaluationConfig(daily_alert_budget=20, top_k=20)
MODEL = "fraud_detector_test"


@pytest.fixture(scope="module")
def matrix(sandbox_frame) -> pd.DataFrame:
    keys = ["transaction_id", "event_time", "event_date", "customer_key", "card_key", "terminal_id", "is_fraud",
            "label_known_at", "fraud_scenario"]
    return pd.concat([sandbox_frame[keys], compute_batch_features(sandbox_frame)[FEATURE_COLUMNS]], axis=1)


@pytest.fixture(scope="module")
def trained(matrix, tracking):
    tracking.activate()
    return train_model(matrix, CONFIG, source_partitions=["2026-01-01", "2026-01-28"])


def test_training_logs_a_complete_mlflow_run(trained, tracking, matrix):
    client = tracking.client()
    run = client.get_run(trained.run_id)
    assert run.data.params["variant"] == trained.variant
    assert run.data.params["test_window"] == "2026-01-25/2026-01-28"
    assert run.data.params["train_window"] == "2026-01-15/2026-01-21"  # 7 days ending delay (3) before test
    for family in FAMILIES:
        assert 0 < run.data.metrics[f"val_ap_{family}"] <= 1
    assert run.data.metrics["val_ap"] == pytest.approx(trained.validation_ap)
    assert json.loads(run.data.tags["fraud.features"]) == FEATURE_COLUMNS
    if git_commit():
        assert run.data.tags["mlflow.source.git.commit"] == git_commit()
    artifacts = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"features.json", "data_partitions.json", "search"} <= artifacts
    lineage = mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/data_partitions.json")
    assert lineage["train_partitions"][0] == "2026-01-15" and len(lineage["train_partitions"]) == 7

    trials = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{trained.run_id}'")
    assert {t.data.params["family"] for t in trials} == set(FAMILIES)  # every trial logged
    assert all({"val_ap_fold0", "val_ap_fold1", "val_ap_mean"} <= set(t.data.metrics) for t in trials)
    assert run.data.tags["fraud.selection"] == trained.reason and trained.variant in trained.reason

    # The logged model (cloudpickle, with signature) scores exactly like the in-memory one.
    loaded = mlflow.sklearn.load_model(trained.model_uri)
    info = mlflow.models.get_model_info(trained.model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == FEATURE_COLUMNS
    sample = matrix.tail(500)
    np.testing.assert_allclose(predict_scores(loaded, sample, FEATURE_COLUMNS),
                               predict_scores(trained.model, sample, FEATURE_COLUMNS))


def test_search_picks_the_best_trial_and_reports_every_family(trained):
    assert trained.validation_ap == pytest.approx(trained.trials["val_ap_mean"].max())
    assert set(trained.families["family"]) == set(FAMILIES)
    assert (trained.families["trials"] == 1).all()  # the seeded default of each family, despite the 0 s budget


def test_evaluation_metrics_match_sklearn_and_are_logged(trained, matrix, tracking):
    evaluation = evaluate_model(trained.model, FEATURE_COLUMNS, matrix, trained.plan.splits.test, EVAL)
    rows, removed = held_out_rows(matrix, trained.plan.splits.test)
    assert removed > 0  # cards already known compromised are not scored
    scores = predict_scores(trained.model, rows, FEATURE_COLUMNS)
    assert evaluation.metrics["auc_roc"] == pytest.approx(roc_auc_score(rows["is_fraud"], scores))
    assert evaluation.metrics["average_precision"] == pytest.approx(average_precision_score(rows["is_fraud"], scores))
    assert evaluation.metrics["alerts_per_day"] <= EVAL.daily_alert_budget
    assert "data:image/png;base64," in evaluation.markdown
    client = tracking.client()
    log_evaluation(client, trained.run_id, evaluation)
    assert client.get_run(trained.run_id).data.metrics["test_average_precision"] == pytest.approx(
        evaluation.metrics["average_precision"])
    assert {"evaluation/report.md", "evaluation/figures.png"} <= {
        a.path for a in client.list_artifacts(trained.run_id, "evaluation")}


def _log_worse_model(matrix, tracking):
    """Same pipeline trained on permuted labels: a real but useless model, logged like any other."""
    rows = matrix[pd.to_datetime(matrix["event_date"]).dt.date.between(*trained_window(matrix))]
    y = np.random.default_rng(0).permutation(rows["is_fraud"].to_numpy())
    model = build_pipeline(Candidate("xgboost", "none", {"n_estimators": 20, "max_depth": 3}), y, CONFIG).fit(
        model_input(rows, FEATURE_COLUMNS), y)
    tracking.activate()
    with mlflow.start_run(run_name="worse") as run:
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                        input_example=model_input(rows.head(3), FEATURE_COLUMNS),
                                        pyfunc_predict_fn="predict_proba")
    return model, info.model_uri, run.info.run_id


def trained_window(matrix):
    from fraud_platform.ml.training import plan_training

    return plan_training(sorted(pd.to_datetime(matrix["event_date"]).dt.date.unique()), CONFIG).final_train


def test_worse_model_is_not_promoted_and_champion_alias_stays(trained, matrix, tracking):
    client = tracking.client()
    window = trained.plan.splits.test
    gates = registry.sanity_gates(trained.model, model_input(held_out_rows(matrix, window)[0], FEATURE_COLUMNS))
    first = evaluate_model(trained.model, FEATURE_COLUMNS, matrix, window, EVAL)
    decision = registry.decide(first.metrics, None, gates)
    assert decision.promote and gates.passed
    tags = registry.publish_tags(first.metrics, features=FEATURE_COLUMNS, threshold=first.metrics["threshold"],
                                 test_window="2026-01-25/2026-01-28")
    v1 = registry.register_version(client, MODEL, trained.model_uri, trained.run_id, tags)
    assert registry.apply_decision(client, MODEL, v1, decision) == "champion"

    champion = registry.load_champion(client, MODEL)
    assert (champion.version, champion.model_uri, champion.features) == (v1, trained.model_uri, FEATURE_COLUMNS)
    assert champion.threshold == first.metrics["threshold"]
    champion_model = registry.load_model(champion)

    worse, worse_uri, worse_run = _log_worse_model(matrix, tracking)
    second = evaluate_model(worse, FEATURE_COLUMNS, matrix, window, EVAL,
                            champion=(champion.version, champion_model, champion.features))
    assert second.champion.metrics["average_precision"] == pytest.approx(first.metrics["average_precision"])
    assert second.metrics["average_precision"] < first.metrics["average_precision"]
    worse_gates = registry.sanity_gates(worse, model_input(held_out_rows(matrix, window)[0], FEATURE_COLUMNS))
    decision = registry.decide(second.metrics, second.champion.metrics, worse_gates)
    assert not decision.promote
    v2 = registry.register_version(client, MODEL, worse_uri, worse_run, tags)
    assert registry.apply_decision(client, MODEL, v2, decision) == "challenger"

    assert registry.load_champion(client, MODEL).version == v1
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == v2 and "does not beat champion" in challenger.tags[registry.TAG_REASON]


def test_decide_requires_a_strict_margin_and_sane_scores(matrix):
    sane = registry.GateReport([], 1.0, 0.1, 0.2, 0.01)
    policy = registry.PromotionPolicy(min_improvement=0.01)
    assert not registry.decide({"average_precision": 0.505}, {"average_precision": 0.5}, sane, policy).promote
    assert not registry.decide({"average_precision": 0.5}, {"average_precision": 0.5}, sane).promote
    assert registry.decide({"average_precision": 0.52}, {"average_precision": 0.5}, sane, policy).promote
    # A constant scorer fails the gates even with no champion to beat.
    rows = model_input(matrix.head(3000), FEATURE_COLUMNS)
    constant = DummyClassifier(strategy="prior").fit(rows, matrix["is_fraud"].head(3000))
    gates = registry.sanity_gates(constant, rows)
    assert not gates.passed and "constant scorer" in gates.failures[0]
    assert not registry.decide({"average_precision": 0.9}, None, gates).promote
