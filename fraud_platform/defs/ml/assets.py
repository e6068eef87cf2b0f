"""ML assets: ``fraud_model`` (search + train, tracked in MLflow), ``model_evaluation`` (held-out
test window, compared with the champion on the same rows) and ``champion_model`` (register, gate,
promote or park as challenger). The logic lives in ``fraud_platform.ml``; these wrap it."""

import json
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pandas as pd

from fraud_platform.defs.features.assets import read_matrix, read_verdict_rows
from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeResource, MlflowResource
from fraud_platform.domain.metrics import score_shares
from fraud_platform.domain.splits import SplitConfig
from fraud_platform.ml import registry
from fraud_platform.ml.evaluation import EvaluationConfig, evaluate_model, held_out_rows, log_evaluation
from fraud_platform.ml.training import BALANCING, FAMILIES, TrainingConfig, TrainingWindows, model_input, train_model
from fraud_platform.reports import markdown_table


class ModelTrainingResource(dg.ConfigurableResource):
    """Knobs for training, evaluation and promotion (defaults: FDH protocol, 90 s search budget
    across every model family). Documented in docs/ml.md ("Training settings")."""

    train_days: int = 7
    validation_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    n_folds: int = 3
    families: list[str] = list(FAMILIES)
    balancing: list[str] = list(BALANCING)
    max_trials: int = 60
    budget_seconds: float = 90.0
    n_estimators: list[int] = [100, 300]  # [min, max] for the tree families
    max_depth: list[int] = [3, 8]  # [min, max]
    smote_ratio: float = 0.1
    seed: int = 42
    daily_alert_budget: int = 100
    top_k: int = 100
    promotion_metric: str = "average_precision"
    promotion_margin: float = 0.0
    max_latency_ms_per_1k: float = 1000.0
    # Live-evidence gate: a version that wins offline becomes the `challenger` and runs in shadow;
    # `challenger_shadow_report` promotes it once its live metric beats the champion's.
    require_live_evidence: bool = False
    live_min_labelled: int = 100
    live_min_frauds: int = 5
    # The final fit also takes the immature days' rows with an analyst verdict (issue 13, docs/ml.md).
    train_on_verdicts: bool = True

    def training_config(self, windows: TrainingWindows | None = None) -> TrainingConfig:
        return TrainingConfig(
            split=SplitConfig(self.train_days, self.validation_days, self.delay_days, self.test_days),
            windows=windows, n_folds=self.n_folds, families=tuple(self.families), balancing=tuple(self.balancing),
            max_trials=self.max_trials, budget_seconds=self.budget_seconds,
            n_estimators=(min(self.n_estimators), max(self.n_estimators)),
            max_depth=(min(self.max_depth), max(self.max_depth)), smote_ratio=self.smote_ratio, seed=self.seed,
        )

    def evaluation_config(self) -> EvaluationConfig:
        return EvaluationConfig(daily_alert_budget=self.daily_alert_budget, top_k=self.top_k)

    def promotion_policy(self) -> registry.PromotionPolicy:
        return registry.PromotionPolicy(metric=self.promotion_metric, min_improvement=self.promotion_margin,
                                        max_latency_ms_per_1k=self.max_latency_ms_per_1k)


class TrainingWindowConfig(dg.Config):
    """Run config for a backtest by date (all optional; unset = the protocol's last-days windows).
    Dates are YYYY-MM-DD."""

    test_start: str | None = None
    test_days: int | None = None
    train_end: str | None = None
    train_start: str | None = None

    def windows(self) -> TrainingWindows | None:
        day = lambda v: date.fromisoformat(v) if v else None  # noqa: E731
        if not any((self.test_start, self.train_end, self.train_start)):
            return None
        return TrainingWindows(test_start=day(self.test_start), test_days=self.test_days,
                               train_end=day(self.train_end), train_start=day(self.train_start))


_COMMON = dict(group_name="ml", owners=[ML_ENGINEERING])


def _window(value: list[str]) -> tuple[date, date]:
    return date.fromisoformat(value[0]), date.fromisoformat(value[1])


@dg.asset(
    **_COMMON, kinds={"xgboost", "lightgbm", "mlflow"}, deps=[dg.AssetKey("transaction_features")],
    description="Budgeted Optuna search across XGBoost, LightGBM, random forest and logistic regression "
                "(class weighting / SMOTE as options) on prequential folds with the label delay; every "
                "trial and the final model tracked in MLflow. Run config: explicit train/test windows.",
)
def fraud_model(context: dg.AssetExecutionContext, config: TrainingWindowConfig, lake: LakeResource,
                mlflow: MlflowResource, ml_training: ModelTrainingResource) -> dg.Output[dict]:
    store = lake.store()
    matrix = read_matrix(store)
    mlflow.activate()
    partitions = sorted(pd.to_datetime(matrix["event_date"]).dt.date.astype(str).unique())
    # Verdict rows are the freshest labels; an explicit (backtest) window must not see them.
    verdicts = read_verdict_rows(store) if ml_training.train_on_verdicts and config.windows() is None else None
    result = train_model(
        matrix, ml_training.training_config(config.windows()), source_partitions=partitions,
        tags={"dagster.run_id": context.run.run_id, "dagster.asset": "fraud_model"}, verdict_rows=verdicts,
    )
    value = {
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "variant": result.variant,
        "family": result.family,
        "params": {k: (v.item() if hasattr(v, "item") else v) for k, v in result.candidate.params.items()},
        "validation_ap": result.validation_ap,
        "selection": result.reason,
        "features": result.features,
        "test_window": [d.isoformat() for d in result.plan.splits.test],
        "train_window": [d.isoformat() for d in result.plan.final_train],
        "train_partitions": result.train_partitions,
    }
    return dg.Output(value, metadata={
        "mlflow_run_id": result.run_id,
        "model_uri": result.model_uri,
        "variant": result.variant,
        "family": result.family,
        "selection": result.reason,
        "validation_ap": float(result.validation_ap),
        "validation_ap_std": float(result.validation_ap_std),
        "train_rows": result.train_rows,
        "train_frauds": result.train_frauds,
        "train_verdict_rows": result.train_verdict_rows,
        "train_seconds": float(result.train_seconds),
        "train_window": " .. ".join(value["train_window"]),
        "test_window": " .. ".join(value["test_window"]),
        "families": dg.MetadataValue.md(markdown_table(result.families)),
        "search": dg.MetadataValue.md(markdown_table(result.trials, max_rows=50)),
        "plan": dg.MetadataValue.json(result.plan.as_dict()),
    })


def _champion(client, model_name: str, features_available: set[str]) -> tuple[registry.ChampionInfo | None, Any]:
    """Current champion and its model, if its features can be computed on this matrix."""
    info = registry.load_champion(client, model_name)
    if info is None or not set(info.features) <= features_available:
        return info, None
    return info, registry.load_model(info)


@dg.asset(
    **_COMMON, kinds={"mlflow"}, deps=[dg.AssetKey("transaction_features")],
    description="Held-out test window (known-compromised cards removed): AUC, AP, CP@100 per day, "
                "threshold for the daily alert budget, curves, calibration, importance; vs the champion.",
)
def model_evaluation(lake: LakeResource, mlflow: MlflowResource, ml_training: ModelTrainingResource,
                     fraud_model: dict) -> dg.Output[dict]:
    import mlflow as mlflow_lib

    mlflow.activate()
    client = mlflow.client()
    matrix = read_matrix(lake.store())
    model = mlflow_lib.sklearn.load_model(fraud_model["model_uri"])
    info, champ_model = _champion(client, mlflow.model_name, set(matrix.columns))
    champion = (info.version, champ_model, info.features) if champ_model is not None else None
    evaluation = evaluate_model(model, fraud_model["features"], matrix, _window(fraud_model["test_window"]),
                                ml_training.evaluation_config(), champion=champion,
                                known_since=_window(fraud_model["train_window"])[0],
                                selection=fraud_model.get("selection"))
    log_evaluation(client, fraud_model["run_id"], evaluation)
    value = {
        "metrics": evaluation.metrics,
        "champion_version": info.version if info else None,
        "champion_metrics": evaluation.champion.metrics if evaluation.champion else None,
        "champion_comparable": info is None or champ_model is not None,
        "test_window": fraud_model["test_window"],
    }
    m = evaluation.metrics
    return dg.Output(value, metadata={
        "report": dg.MetadataValue.md(evaluation.markdown),
        **{k: float(m[k]) for k in ("auc_roc", "average_precision", "card_precision_at_k", "precision", "recall",
                                     "f1", "threshold")},
        "test_rows": evaluation.test_rows,
        "removed_known_compromised": evaluation.removed_known_compromised,
        "champion_version": info.version if info else "none",
        "vs_champion": dg.MetadataValue.md(markdown_table(evaluation.comparison)),
        "misses_by_scenario": dg.MetadataValue.md(markdown_table(evaluation.scenarios)),
        "selection": fraud_model.get("selection", ""),
    })


@dg.asset(
    **_COMMON, kinds={"mlflow"},
    # Reads the held-out rows of the matrix (the scorer's features come from the online store).
    deps=[dg.AssetKey("transaction_features")],
    description="Registers the trained version and moves the `champion` alias to it only if it beats the "
                "current champion on the same test rows by the margin and passes the sanity gates; "
                "otherwise aliases it `challenger` with the reason. Tags carry what the scorer needs.",
)
def champion_model(lake: LakeResource, mlflow: MlflowResource, ml_training: ModelTrainingResource,
                   fraud_model: dict, model_evaluation: dict) -> dg.Output[dict]:
    import mlflow as mlflow_lib

    mlflow.activate()
    client = mlflow.client()
    policy = ml_training.promotion_policy()
    matrix = read_matrix(lake.store())
    test, _ = held_out_rows(matrix, _window(fraud_model["test_window"]), _window(fraud_model["train_window"])[0])
    model = mlflow_lib.sklearn.load_model(fraud_model["model_uri"])
    gates = registry.sanity_gates(model, model_input(test, fraud_model["features"]), policy)

    current = registry.load_champion(client, mlflow.model_name)
    if current is not None and current.version != model_evaluation["champion_version"]:
        decision = registry.Decision(False, f"champion changed to v{current.version} after evaluation; re-evaluate")
    elif not model_evaluation["champion_comparable"]:
        decision = registry.Decision(False, "champion's features are not in the current matrix; compare manually")
    else:
        decision = registry.decide(model_evaluation["metrics"], model_evaluation["champion_metrics"], gates, policy)
    if decision.promote and current is not None and ml_training.require_live_evidence:
        decision = registry.Decision(False, f"awaiting live evidence in shadow (offline: {decision.reason})")

    tags = registry.publish_tags(
        model_evaluation["metrics"], features=fraud_model["features"],
        threshold=model_evaluation["metrics"]["threshold"], test_window="/".join(fraud_model["test_window"]),
    )
    test_scores = model.predict_proba(model_input(test, fraud_model["features"]))[:, 1]
    tags[registry.TAG_SCORE_SHARES] = json.dumps([round(x, 6) for x in score_shares(test_scores)])  # the console's "training" distribution
    version = registry.register_version(client, mlflow.model_name, fraud_model["model_uri"], fraud_model["run_id"],
                                        {**tags, "fraud.variant": fraud_model["variant"]})
    alias = registry.apply_decision(client, mlflow.model_name, version, decision)
    champion = registry.load_champion(client, mlflow.model_name)
    value = {"version": version, "alias": alias, "promoted": decision.promote, "reason": decision.reason,
             "champion_version": champion.version if champion else None}
    return dg.Output(value, metadata={
        "model_name": mlflow.model_name,
        "version": version,
        "alias": alias,
        "promoted": decision.promote,
        "reason": decision.reason,
        "champion_version": value["champion_version"] or "none",
        "gate_failures": ", ".join(gates.failures) or "none",
        "latency_ms_per_1k": float(gates.latency_ms_per_1k),
        "score_mean": float(gates.score_mean),
    })


class BacktestConfig(dg.Config):
    """Rolling backtest run config: ``windows`` test windows of ``test_days`` from ``test_start``
    (default: as many weeks as fit before the last day, at most 4), each trained up to
    ``train_end`` shifted by the same step (default: the delay gap before each test window)."""

    test_start: str | None = None
    test_days: int = 7
    windows: int = 4
    train_end: str | None = None


@dg.asset(
    **_COMMON, kinds={"mlflow"}, deps=[dg.AssetKey("transaction_features")],
    description="Rolling backtest: search + train + evaluate on several consecutive test windows; mean ± "
                "spread of AUC, AP and CP@k as a table and plot (also in MLflow). Materialise on demand "
                "(`fraud-platform backtest`).",
)
def model_backtest(config: BacktestConfig, lake: LakeResource, mlflow: MlflowResource,
                   ml_training: ModelTrainingResource) -> dg.MaterializeResult:
    from fraud_platform.ml.backtest import backtest_windows, rolling_backtest

    matrix = read_matrix(lake.store())
    mlflow.activate()
    last = pd.to_datetime(matrix["event_date"]).dt.date.max()
    start = date.fromisoformat(config.test_start) if config.test_start else \
        last - timedelta(days=config.windows * config.test_days - 1)
    windows = [w for w in backtest_windows(start, config.test_days, config.windows,
                                           date.fromisoformat(config.train_end) if config.train_end else None)
               if w.test_start <= last]
    if not windows:
        raise dg.Failure(f"no test window starting on or before the last day {last}")
    report = rolling_backtest(matrix, ml_training.training_config(), windows, ml_training.evaluation_config())
    summary = report.summary.set_index("metric")
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(report.markdown),
        "mlflow_run_id": report.run_id,
        "windows": len(report.weeks),
        **{f"{m}_mean": float(summary.loc[m, "mean"]) for m in summary.index},
        **{f"{m}_std": float(summary.loc[m, "std"]) for m in summary.index},
    })
