"""Reasons come from the model itself: contributions plus bias equal the model's own margin, and
every reason names its feature in words an analyst can read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.ml.explain import contributions, explain, margin, reason_text
from fraud_platform.ml.training import Candidate, TrainingConfig, build_pipeline, model_input


@pytest.fixture(scope="module")
def matrix(sandbox_frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    features = compute_batch_features(sandbox_frame)
    return model_input(features, FEATURE_COLUMNS), sandbox_frame["is_fraud"].to_numpy(dtype=int)


def _fitted(X, y, family: str, balance: str, params: dict):
    return build_pipeline(Candidate(family, balance, params), y, TrainingConfig(n_jobs=1, max_bin=256)).fit(X, y)


@pytest.mark.parametrize(("family", "balance", "params"), [
    ("xgboost", "smote", {"n_estimators": 30, "max_depth": 4}),
    ("xgboost", "class_weight", {"n_estimators": 30, "max_depth": 4}),
    ("lightgbm", "none", {"n_estimators": 30, "num_leaves": 15}),
])
def test_boosted_pipeline_contributions_add_up_to_its_margin(matrix, family, balance, params):
    X, y = matrix
    model = _fitted(X, y, family, balance, params)
    sample = X.sample(200, random_state=1)
    contrib = contributions(model, sample)
    assert contrib.values.shape == (200, len(FEATURE_COLUMNS))
    np.testing.assert_allclose(contrib.margin, margin(model, sample), rtol=1e-5, atol=1e-5)
    # and the margin is the score the pipeline reports
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.margin)), model.predict_proba(sample)[:, 1], rtol=1e-5, atol=1e-6)
    assert np.abs(contrib.values).sum() > 0
    if family == "xgboost":  # the API's tabulated TreeSHAP gives XGBoost's own values, missing values included
        from fraud_platform.ml.serving import ServingModel

        serving = ServingModel(model, FEATURE_COLUMNS)
        assert serving._shap is not None
        rows = sample.to_numpy(dtype="float64")
        rows[::4, [0, 10, 15]] = np.nan
        fast, exact = serving.contributions(rows), contributions(model, pd.DataFrame(rows, columns=FEATURE_COLUMNS))
        np.testing.assert_allclose(fast.values, exact.values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fast.margin, margin(model, pd.DataFrame(rows, columns=FEATURE_COLUMNS)), rtol=1e-5, atol=1e-5)


def test_random_forest_contributions_add_up_to_its_probability(matrix):
    X, y = matrix
    model = _fitted(X, y, "random_forest", "class_weight", {"n_estimators": 20, "max_depth": 6})
    sample = X.sample(200, random_state=2)
    contrib = contributions(model, sample)
    np.testing.assert_allclose(contrib.margin, model.predict_proba(sample)[:, 1], rtol=1e-9, atol=1e-9)
    assert np.abs(contrib.values).sum() > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fit quality is irrelevant here
def test_linear_model_contributions_add_up_to_its_margin(matrix):
    from sklearn.linear_model import LogisticRegression

    X, y = matrix
    model = LogisticRegression(max_iter=300).fit(X, y)
    sample = X.head(50)
    np.testing.assert_allclose(contributions(model, sample).margin, model.decision_function(sample), rtol=1e-9)


def test_top_reasons_are_the_largest_contributions_and_name_their_feature(matrix):
    X, y = matrix
    model = _fitted(X, y, "xgboost", "none", {"n_estimators": 30, "max_depth": 4})
    fraud_rows = X[y == 1].head(20)
    reasons = explain(model, fraud_rows, k=3)
    contrib = contributions(model, fraud_rows)
    assert len(reasons) == 20
    for row, row_reasons in enumerate(reasons):
        assert len(row_reasons) == 3
        strongest = np.sort(np.abs(contrib.values[row]))[::-1][:3]
        np.testing.assert_allclose([abs(r.contribution) for r in row_reasons], strongest)
        for reason in row_reasons:
            assert reason.feature in reason.text
            assert reason.value == fraud_rows.iloc[row][reason.feature]
            assert reason.direction == ("raises" if reason.contribution > 0 else "lowers")


def test_reason_texts_read_like_the_feature_documentation():
    assert reason_text("customer_amount_to_mean_30d", 6.2) == "amount 6.2x this customer's 30-day mean [customer_amount_to_mean_30d]"
    assert reason_text("terminal_fraud_count_recent_28d", 3) == "terminal had 3 confirmed frauds in the last 28 days [terminal_fraud_count_recent_28d]"
    assert reason_text("terminal_fraud_count_7d", 2) == "terminal had 2 confirmed frauds in days 8-14 ago [terminal_fraud_count_7d]"
    assert reason_text("terminal_days_since_last_fraud", 36).startswith("no known fraud at this terminal in the last 35 days")
    assert reason_text("customer_seconds_since_prev", 90).startswith("1.5 min since the customer's previous transaction")
    # every feature of the platform has its own phrase, not the generic fallback
    for feature in FEATURE_COLUMNS:
        assert not reason_text(feature, 1.0).startswith(f"{feature} = "), feature
