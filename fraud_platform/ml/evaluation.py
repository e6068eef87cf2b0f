"""Held-out evaluation of a trained model (and of the current champion on the same rows), rendered
as Markdown + PNG and logged to the training run in MLflow.

The test set follows FDH: the test window's transactions minus those on cards whose fraud was
already known before the transaction's day (they would be blocked, not scored). The operating
threshold comes from a daily alert budget applied to the scores alone, so no test label leaks
into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from fraud_platform.domain.metrics import (
    auc_roc,
    average_precision,
    brier,
    calibration_table,
    card_precision_top_k,
    scenario_report,
    threshold_for_alert_budget,
    threshold_metrics,
)
from fraud_platform.ml.training import held_out_rows, predict_scores
from fraud_platform.reports import figure_to_markdown, markdown_table


@dataclass(frozen=True)
class EvaluationConfig:
    daily_alert_budget: int = 100  # transactions a day the fraud team can investigate
    top_k: int = 100  # cards per day for Card Precision@k
    calibration_bins: int = 10


@dataclass
class ScoredEvaluation:
    """Metrics of one model's scores on the test rows."""

    metrics: dict[str, float]
    per_day: pd.DataFrame
    calibration: pd.DataFrame
    scores: np.ndarray = field(repr=False)


@dataclass
class EvaluationReport:
    candidate: ScoredEvaluation
    champion: ScoredEvaluation | None
    champion_version: str | None
    comparison: pd.DataFrame
    importance: pd.DataFrame
    scenarios: pd.DataFrame  # where the model misses, per fraud scenario (see metrics.scenario_report)
    selection: str | None  # why this model family won the search
    test_window: tuple[date, date]
    test_rows: int
    removed_known_compromised: int
    markdown: str
    figure: Any = field(repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return self.candidate.metrics


def evaluate_scores(test: pd.DataFrame, scores: np.ndarray, config: EvaluationConfig) -> ScoredEvaluation:
    y = test["is_fraud"].to_numpy(dtype=int)
    days = pd.to_datetime(test["event_date"]).dt.date.to_numpy()
    threshold = threshold_for_alert_budget(scores, days, config.daily_alert_budget)
    at = threshold_metrics(y, scores, threshold)
    cp, per_day = card_precision_top_k(test.assign(score=scores), config.top_k)
    n_days = max(len(np.unique(days)), 1)
    metrics = {
        "auc_roc": auc_roc(y, scores),
        "average_precision": average_precision(y, scores),
        "card_precision_at_k": cp,
        "threshold": threshold,
        "precision": at.precision,
        "recall": at.recall,
        "f1": at.f1,
        "tp": at.tp,
        "fp": at.fp,
        "fn": at.fn,
        "tn": at.tn,
        "alerts_per_day": (at.tp + at.fp) / n_days,
        "brier": brier(y, scores),
        "n_transactions": len(y),
        "n_frauds": int(y.sum()),
    }
    return ScoredEvaluation(metrics, per_day, calibration_table(y, scores, config.calibration_bins), scores)


def feature_importance(model, features: Sequence[str]) -> pd.DataFrame:
    """Importance per feature, whatever the family: XGBoost gain, LightGBM gain, random-forest
    impurity decrease, |coefficient| on standardised inputs for logistic regression; highest first."""
    estimator = model.named_steps["model"] if hasattr(model, "named_steps") else model
    if hasattr(estimator, "get_booster"):
        gain = estimator.get_booster().get_score(importance_type="gain")
        values = [float(gain.get(f, 0.0)) for f in features]
    elif hasattr(estimator, "feature_importances_"):
        values = [float(v) for v in estimator.feature_importances_]
    else:
        values = [float(v) for v in np.abs(np.ravel(estimator.coef_))]
    frame = pd.DataFrame({"feature": list(features), "gain": values})
    total = frame["gain"].sum()
    frame["share"] = frame["gain"] / total if total > 0 else 0.0
    return frame.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


COMPARED = ("average_precision", "auc_roc", "card_precision_at_k", "precision", "recall", "f1")


def comparison_table(candidate: dict, champion: dict | None) -> pd.DataFrame:
    rows = []
    for name in COMPARED:
        champ = champion.get(name, float("nan")) if champion else float("nan")
        rows.append({"metric": name, "candidate": candidate[name], "champion": champ, "delta": candidate[name] - champ})
    return pd.DataFrame(rows)


def evaluate_model(
    model,
    features: Sequence[str],
    matrix: pd.DataFrame,
    test_window: tuple[date, date],
    config: EvaluationConfig = EvaluationConfig(),
    champion: tuple[str, Any, Sequence[str]] | None = None,
    title: str = "Fraud model evaluation",
    known_since: date | None = None,
    selection: str | None = None,
) -> EvaluationReport:
    """Evaluate ``model`` (and ``champion`` = (version, model, features), if any) on the same rows;
    ``selection`` (the search's reason for this model) is quoted in the report."""
    test, removed = held_out_rows(matrix, test_window, known_since)
    if test.empty:
        raise ValueError(f"no test rows in {test_window}")
    candidate = evaluate_scores(test, predict_scores(model, test, features), config)
    champ_eval = None
    if champion is not None:
        _, champ_model, champ_features = champion
        champ_eval = evaluate_scores(test, predict_scores(champ_model, test, champ_features), config)
    comparison = comparison_table(candidate.metrics, champ_eval.metrics if champ_eval else None)
    importance = feature_importance(model, features)
    days = pd.to_datetime(matrix["event_date"]).dt.date
    scenarios = scenario_report(test, candidate.scores, candidate.metrics["threshold"], matrix[days < test_window[0]])
    figure = render_figure(test, candidate, importance, champ_eval)
    evaluation = EvaluationReport(
        candidate=candidate, champion=champ_eval, champion_version=champion[0] if champion else None,
        comparison=comparison, importance=importance, scenarios=scenarios, selection=selection, test_window=test_window, test_rows=len(test),
        removed_known_compromised=removed, markdown="", figure=figure,
    )
    evaluation.markdown = render_markdown(evaluation, config, title)
    return evaluation


def render_figure(test: pd.DataFrame, candidate: ScoredEvaluation, importance: pd.DataFrame,
                  champion: ScoredEvaluation | None):
    y = test["is_fraud"].to_numpy(dtype=int)
    fig = Figure(figsize=(13, 7.5))
    roc_ax, pr_ax, cal_ax, imp_ax, cp_ax, dist_ax = fig.subplots(2, 3).ravel()
    for name, scored in (("candidate", candidate), ("champion", champion)):
        if scored is None:
            continue
        fpr, tpr, _ = roc_curve(y, scored.scores)
        roc_ax.plot(fpr, tpr, label=f"{name} AUC={scored.metrics['auc_roc']:.3f}")
        precision, recall, _ = precision_recall_curve(y, scored.scores)
        pr_ax.plot(recall, precision, label=f"{name} AP={scored.metrics['average_precision']:.3f}")
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr_ax.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    roc_ax.legend(fontsize=8)
    pr_ax.legend(fontsize=8)
    cal = candidate.calibration
    cal_ax.plot(cal["mean_score"], cal["fraud_rate"], "o-")
    top = max(float(cal["mean_score"].max()), float(cal["fraud_rate"].max()), 1e-3)
    cal_ax.plot([0, top], [0, top], "k:", lw=0.8)
    cal_ax.set(title="Calibration (quantile bins)", xlabel="mean score", ylabel="observed fraud rate")
    head = importance.head(12).iloc[::-1]
    imp_ax.barh(head["feature"], head["share"])
    imp_ax.set(title="Feature importance (gain share)")
    imp_ax.tick_params(axis="y", labelsize=7)
    per_day = candidate.per_day
    cp_ax.bar([str(d)[5:] for d in per_day["day"]], per_day["card_precision"])
    cp_ax.set(title="Card Precision@k per day", ylim=(0, 1))
    cp_ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    bins = np.linspace(0, 1, 41)
    dist_ax.hist(candidate.scores[y == 0], bins=bins, alpha=0.6, density=True, label="legit")
    dist_ax.hist(candidate.scores[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    dist_ax.axvline(candidate.metrics["threshold"], color="k", lw=0.8, ls="--", label="threshold")
    dist_ax.set(title="Score distribution", yscale="log")
    dist_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def render_markdown(evaluation: EvaluationReport, config: EvaluationConfig, title: str) -> str:
    m = evaluation.candidate.metrics
    headline = pd.DataFrame([{k: m[k] for k in ("auc_roc", "average_precision", "card_precision_at_k",
                                                  "precision", "recall", "f1", "threshold", "alerts_per_day")}])
    confusion = pd.DataFrame([{"": "actual fraud", "alert": m["tp"], "no alert": m["fn"]},
                              {"": "actual legit", "alert": m["fp"], "no alert": m["tn"]}])
    champion = f"champion v{evaluation.champion_version}" if evaluation.champion_version else "no champion yet"
    window = " .. ".join(d.isoformat() for d in evaluation.test_window)
    return "\n\n".join([
        f"## {title}",
        f"Test window {window}: {evaluation.test_rows} transactions ({m['n_frauds']} frauds) after removing "
        f"{evaluation.removed_known_compromised} on cards already known compromised. Threshold set for "
        f"{config.daily_alert_budget} alerts/day; Card Precision@{config.top_k}.",
        markdown_table(headline),
        f"### Comparison with {champion} (same rows)",
        markdown_table(evaluation.comparison),
        *([f"### Model selection\n\n{evaluation.selection}"] if evaluation.selection else []),
        "### Confusion matrix at the operating threshold",
        markdown_table(confusion),
        "### Where the model misses (per fraud scenario, at the operating threshold)",
        "`precision` is the scenario's share of all alerts (rows sum to the total); `unseen_share` is the share "
        "of frauds with no known fraud at their terminal or on their card when scored - no model sees those "
        "coming from history.",
        markdown_table(evaluation.scenarios),
        f"### Card Precision@{config.top_k} per day",
        markdown_table(evaluation.candidate.per_day.assign(day=lambda d: d["day"].astype(str)), max_rows=62),
        "### Figures",
        figure_to_markdown(evaluation.figure, "evaluation"),
    ])


def log_evaluation(client, run_id: str, evaluation: EvaluationReport) -> None:
    """Test metrics, report, figure and tables as artifacts of the training run."""
    for name, value in evaluation.candidate.metrics.items():
        client.log_metric(run_id, f"test_{name}", float(value))
    client.log_text(run_id, evaluation.markdown, "evaluation/report.md")
    client.log_figure(run_id, evaluation.figure, "evaluation/figures.png")
    client.log_text(run_id, evaluation.candidate.per_day.to_csv(index=False), "evaluation/card_precision_per_day.csv")
    client.log_text(run_id, evaluation.comparison.to_csv(index=False), "evaluation/champion_comparison.csv")
    client.log_text(run_id, evaluation.importance.to_csv(index=False), "evaluation/feature_importance.csv")
    client.log_text(run_id, evaluation.candidate.calibration.to_csv(index=False), "evaluation/calibration.csv")
    client.log_text(run_id, evaluation.scenarios.to_csv(index=False), "evaluation/misses_by_scenario.csv")
    total = evaluation.scenarios[evaluation.scenarios["scenario"] == "all"]
    if len(total) and not np.isnan(total["unseen_share"].iloc[0]):
        client.log_metric(run_id, "test_unseen_fraud_share", float(total["unseen_share"].iloc[0]))
