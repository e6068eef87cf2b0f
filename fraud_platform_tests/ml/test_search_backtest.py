"""Backtests by date, the cross-family search and the per-scenario miss report, on small data
against a real MLflow SQLite store."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.domain.metrics import scenario_report, threshold_metrics
from fraud_platform.domain.splits import day_range
from fraud_platform.ml.backtest import backtest_windows, rolling_backtest
from fraud_platform.ml.evaluation import EvaluationConfig, evaluate_model
from fraud_platform.ml.training import FAMILIES, TrainingConfig, TrainingWindows, train_model
from fraud_platform_tests.ml.conftest import SMALL_SEARCH, SMALL_SPLIT

pytestmark = pytest.mark.slow

# The linear floor only, one trial: these tests are about windows, not model quality.
FAST = TrainingConfig(split=SMALL_SPLIT, n_folds=1, families=("logistic_regression",), balancing=("none",),
                      max_trials=1, budget_seconds=10_000)
EVAL = EvaluationConfig(daily_alert_budget=20, top_k=20)


@pytest.fixture(scope="module")
def matrix(sandbox_frame) -> pd.DataFrame:
    keys = ["transaction_id", "event_time", "event_date", "customer_key", "card_key", "terminal_id", "is_fraud",
            "label_known_at", "fraud_scenario"]
    return pd.concat([sandbox_frame[keys], compute_batch_features(sandbox_frame)[FEATURE_COLUMNS]], axis=1)


def test_explicit_windows_train_and_test_on_exactly_those_days(matrix, tracking):
    tracking.activate()
    windows = TrainingWindows(test_start=date(2026, 1, 20), test_days=3, train_start=date(2026, 1, 8),
                              train_end=date(2026, 1, 13))
    result = train_model(matrix, replace(FAST, windows=windows))
    assert result.train_dates == day_range((date(2026, 1, 8), date(2026, 1, 13)))  # the rows' own dates
    assert result.plan.splits.test == (date(2026, 1, 20), date(2026, 1, 22))
    assert result.plan.folds and all(f.validation[1] <= date(2026, 1, 13) for f in result.plan.folds)
    run = tracking.client().get_run(result.run_id)
    assert run.data.params["train_window"] == "2026-01-08/2026-01-13"
    assert run.data.params["test_window"] == "2026-01-20/2026-01-22"
    # Only train_end given: the training window is train_days long, ending there.
    default_start = train_model(matrix, replace(FAST, windows=TrainingWindows(
        test_start=date(2026, 1, 24), test_days=2, train_end=date(2026, 1, 17))))
    assert default_start.train_dates == day_range((date(2026, 1, 11), date(2026, 1, 17)))
    with pytest.raises(ValueError, match="no data in the test window"):
        train_model(matrix, replace(FAST, windows=TrainingWindows(test_start=date(2027, 1, 1))))


def test_rolling_backtest_reports_mean_and_spread_per_window(matrix, tracking):
    tracking.activate()
    windows = backtest_windows(date(2026, 1, 21), test_days=4, steps=2)
    assert [w.test_start for w in windows] == [date(2026, 1, 21), date(2026, 1, 25)]
    report = rolling_backtest(matrix, FAST, windows, EVAL)
    assert list(report.weeks["test_start"]) == ["2026-01-21", "2026-01-25"]
    assert list(report.weeks["train_end"]) == ["2026-01-17", "2026-01-21"]  # delay gap (3 days) before each test
    ap = report.summary.set_index("metric").loc["average_precision"]
    assert ap["mean"] == pytest.approx(report.weeks["average_precision"].mean())
    assert ap["std"] == pytest.approx(report.weeks["average_precision"].std(ddof=1))
    client = tracking.client()
    run = client.get_run(report.run_id)
    assert run.data.metrics["average_precision_mean"] == pytest.approx(ap["mean"])
    assert {"backtest/windows.csv", "backtest/summary.csv", "backtest/metrics.png"} <= {
        a.path for a in client.list_artifacts(report.run_id, "backtest")}
    assert "data:image/png;base64," in report.markdown


def _crafted_linear(days: int = 28, per_day: int = 300, n_features: int = 24, seed: int = 0) -> pd.DataFrame:
    """Fraud = a noisy linear score over many features: a linear model separates it almost
    perfectly, small tree ensembles must approximate a 24-dimensional oblique boundary by steps."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    x = rng.normal(size=(n, n_features))
    score = x @ rng.uniform(0.5, 1.5, n_features) + rng.normal(scale=0.3, size=n)
    y = (score > np.quantile(score, 0.95)).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(n_features)])
    frame["event_date"] = [date(2026, 1, 1) + timedelta(days=i // per_day) for i in range(n)]
    frame["is_fraud"] = y
    return frame


def test_search_returns_the_family_that_wins_on_validation(tracking):
    tracking.activate()
    data = _crafted_linear()
    features = tuple(c for c in data.columns if c.startswith("f"))
    config = TrainingConfig(split=SMALL_SPLIT, n_folds=2, max_trials=len(FAMILIES), budget_seconds=10_000,
                            features=features, balancing=("none",), **SMALL_SEARCH)
    result = train_model(data, config)
    by_family = result.families.set_index("family")["best_val_ap_mean"]
    assert set(by_family.index) == set(FAMILIES)
    assert result.family == "logistic_regression" == by_family.idxmax()
    assert by_family["logistic_regression"] > by_family.drop("logistic_regression").max() + 0.05  # a clear win
    assert isinstance(result.model.named_steps["model"], LogisticRegression)
    assert "logistic_regression/none selected" in result.reason and "runner-up family" in result.reason
    loaded = mlflow.sklearn.load_model(result.model_uri)
    assert isinstance(loaded.named_steps["model"], LogisticRegression)


def test_scenario_report_sums_to_the_totals():
    t0 = pd.Timestamp("2026-01-10", tz="UTC")
    frame = pd.DataFrame({
        "event_time": [t0 + pd.Timedelta(hours=h) for h in range(8)],
        "terminal_id": ["T1", "T1", "T2", "T3", "T4", "T5", "T6", "T7"],
        "card_key": ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"],
        "is_fraud": [1, 1, 1, 1, 0, 0, 1, 0],
        "fraud_scenario": pd.array([1, 1, 2, 3, None, None, None, None], dtype="Int32"),
        "label_known_at": [t0 + pd.Timedelta(days=2)] * 4 + [pd.NaT, pd.NaT, t0 + pd.Timedelta(days=2), pd.NaT],
    })
    # T2 had a fraud known before scoring; c4's card too; T1's first fraud is only known later.
    history = pd.DataFrame({"event_time": [t0 - pd.Timedelta(days=5)] * 2, "terminal_id": ["T2", "T9"],
                            "card_key": ["c0", "c4"], "is_fraud": [1, 1],
                            "label_known_at": [t0 - pd.Timedelta(days=1)] * 2})
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.1, 0.6, 0.0])
    report = scenario_report(frame, scores, 0.5, history).set_index("scenario")
    assert list(report.index) == ["1", "2", "3", "unknown", "all"]
    parts, total = report.drop("all"), report.loc["all"]
    for column in ("frauds", "caught", "missed", "unseen_at_scoring"):
        assert parts[column].sum() == total[column]
    assert parts["precision"].sum() == pytest.approx(total["precision"])
    at = threshold_metrics(frame["is_fraud"].to_numpy(), scores, 0.5)
    assert (total["caught"], total["frauds"]) == (at.tp, at.tp + at.fn)
    assert total["recall"] == pytest.approx(at.recall) and total["precision"] == pytest.approx(at.precision)
    assert report.loc["1", "recall"] == 0.5
    # Unseen: T1 (both rows) and the scenario-less fraud at T6; T2 (terminal) and c4 (card) were known.
    assert (report.loc["1", "unseen_at_scoring"], report.loc["2", "unseen_at_scoring"],
            report.loc["3", "unseen_at_scoring"], total["unseen_at_scoring"]) == (2, 0, 0, 3)


def test_evaluation_reports_misses_per_scenario_consistent_with_its_metrics(matrix, tracking):
    tracking.activate()
    result = train_model(matrix, FAST)
    evaluation = evaluate_model(result.model, FEATURE_COLUMNS, matrix, result.plan.splits.test, EVAL,
                                known_since=result.plan.final_train[0], selection=result.reason)
    scenarios = evaluation.scenarios.set_index("scenario")
    assert len(scenarios) > 2  # the simulator's scenarios are carried to the matrix
    assert scenarios.drop("all")["frauds"].sum() == scenarios.loc["all", "frauds"] == evaluation.metrics["n_frauds"]
    assert scenarios.drop("all")["caught"].sum() == scenarios.loc["all", "caught"] == evaluation.metrics["tp"]
    assert 0 < scenarios.loc["all", "unseen_share"] < 1
    assert "Where the model misses" in evaluation.markdown and result.reason in evaluation.markdown
