"""Model training: XGBoost with SMOTE vs class weighting vs no resampling, selected by a budgeted,
seeded successive-halving search over FDH prequential folds, tracked in MLflow.

Protocol (docs/ml.md): ``plan_time_splits`` fixes the test window (last days) and the label-delay
gap before it. The final model trains on the ``train_days`` ending ``delay_days`` before the test
window (what would be deployable then); model selection uses prequential folds ending at the same
day, each with its own delay gap, so validation never sees labels from after its cut-off.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from fraud_platform.domain.features import FEATURE_COLUMNS
from fraud_platform.domain.metrics import average_precision
from fraud_platform.domain.splits import Fold, SplitConfig, TimeSplits, day_range, plan_time_splits, prequential_folds

VARIANTS = ("smote", "class_weight", "none")

DEFAULT_SEARCH_SPACE: dict[str, list] = {
    "n_estimators": [100, 200],
    "max_depth": [3, 5, 7],
    "learning_rate": [0.05, 0.1, 0.2],
    "min_child_weight": [1, 5],
    "subsample": [0.8, 1.0],
    "colsample_bytree": [0.7, 1.0],
}


def machine_threads() -> int:
    """Cores this process may use (cgroup/affinity aware where the OS says so)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TrainingConfig:
    split: SplitConfig = SplitConfig(train_days=7, validation_days=7, delay_days=7, test_days=7)
    n_folds: int = 2
    variants: tuple[str, ...] = VARIANTS
    search_space: Mapping[str, Sequence[Any]] = field(default_factory=lambda: dict(DEFAULT_SEARCH_SPACE))
    n_candidates: int = 4  # sampled hyperparameter sets, each tried with every variant
    budget_seconds: float = 90.0  # wall clock for the search; at least one trial always runs
    smote_ratio: float = 0.1  # minority/majority ratio after SMOTE
    # Histogram bins per feature: XGBoost's default 256 quantile bins are several euros wide in the
    # sparse amount tail, too coarse to place a sharp amount cut-off; 4096 keeps fits ~2 s.
    max_bin: int = 4096
    seed: int = 42
    n_jobs: int | None = None  # None = every core of the machine
    features: tuple[str, ...] = tuple(FEATURE_COLUMNS)


@dataclass(frozen=True)
class TrainingPlan:
    splits: TimeSplits
    final_train: tuple[date, date]
    folds: list[Fold]

    def as_dict(self) -> dict:
        return {
            "splits": self.splits.as_dict(),
            "final_train": [d.isoformat() for d in self.final_train],
            "folds": [f.as_dict() for f in self.folds],
        }


def plan_training(days: Sequence[date], config: TrainingConfig) -> TrainingPlan:
    """Test window, final training window and prequential folds for the available days."""
    splits = plan_time_splits(days, config.split)
    if splits.test is None:
        raise ValueError("no days to train on")
    train_end = splits.test[0] - timedelta(days=config.split.delay_days + 1)
    first = min(days)
    if train_end < first:
        raise ValueError(f"not enough days before the test window {splits.test} and its {config.split.delay_days}-day delay")
    train_days = config.split.train_days
    train_start = max(first, train_end - timedelta(days=train_days - 1)) if train_days else first
    folds = prequential_folds(
        days, train_end, train_days=train_days, validation_days=config.split.validation_days,
        delay_days=config.split.delay_days, n_folds=config.n_folds,
    )
    if not folds:  # short history: one fold training on every day before its delay gap
        folds = prequential_folds(
            days, train_end, train_days=None, validation_days=config.split.validation_days,
            delay_days=config.split.delay_days, n_folds=1,
        )
    return TrainingPlan(splits, (train_start, train_end), folds)


def model_input(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The model's input: the feature columns as float64 (one dtype for the MLflow signature)."""
    return frame[list(features)].astype("float64")


def build_pipeline(variant: str, params: Mapping[str, Any], y_train: np.ndarray, config: TrainingConfig):
    """imblearn Pipeline for a variant: SMOTE -> XGB, XGB with scale_pos_weight, or plain XGB."""
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    positives = int(np.sum(y_train))
    negatives = len(y_train) - positives
    xgb_params = dict(params)
    if variant == "class_weight":
        xgb_params["scale_pos_weight"] = negatives / max(positives, 1)
    model = XGBClassifier(
        **xgb_params, tree_method="hist", max_bin=config.max_bin, n_jobs=config.n_jobs or machine_threads(),
        random_state=config.seed, eval_metric="aucpr",
    )
    steps: list = []
    if variant == "smote":
        current = positives / max(negatives, 1)
        steps.append((
            "smote",
            SMOTE(sampling_strategy=max(config.smote_ratio, current), k_neighbors=max(1, min(5, positives - 1)),
                  random_state=config.seed),
        ))
    elif variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    steps.append(("model", model))
    return Pipeline(steps)


def _rows(frame: pd.DataFrame, window: tuple[date, date]) -> pd.DataFrame:
    days = pd.to_datetime(frame["event_date"]).dt.date
    return frame[(days >= window[0]) & (days <= window[1])]


def fit(frame: pd.DataFrame, window: tuple[date, date], variant: str, params: Mapping[str, Any], config: TrainingConfig):
    rows = _rows(frame, window)
    y = rows["is_fraud"].to_numpy(dtype=int)
    if y.sum() < 2:
        raise ValueError(f"fewer than 2 frauds in training window {window}")
    return build_pipeline(variant, params, y, config).fit(model_input(rows, config.features), y)


def predict_scores(model, frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return model.predict_proba(model_input(frame, features))[:, 1]


@dataclass
class Trial:
    variant: str
    params: dict
    fold_ap: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def mean_ap(self) -> float:
        """Mean AP over the folds that could be scored (NaN if none)."""
        scored = [v for v in self.fold_ap.values() if not np.isnan(v)]
        return float(np.mean(scored)) if scored else float("nan")


def search(frame: pd.DataFrame, folds: list[Fold], config: TrainingConfig) -> list[Trial]:
    """Successive halving: every (variant, params) on the most recent fold, the best third on all
    folds. Stops starting trials once ``budget_seconds`` is spent (the first always runs)."""
    from sklearn.model_selection import ParameterSampler

    candidates = list(ParameterSampler(dict(config.search_space), n_iter=config.n_candidates, random_state=config.seed))
    trials = [Trial(v, dict(p)) for p in candidates for v in config.variants]
    if not folds:
        return trials[: len(config.variants)]  # nothing to validate on: defaults, unscored
    started = time.monotonic()

    def run(trial: Trial, fold_index: int) -> bool:
        if any(t.fold_ap for t in trials) and time.monotonic() - started > config.budget_seconds:
            return False
        fold = folds[fold_index]
        tick = time.monotonic()
        try:
            model = fit(frame, fold.train, trial.variant, trial.params, config)
        except ValueError:  # too few frauds in this fold's training window: the fold cannot score
            trial.fold_ap[fold_index] = float("nan")
            return True
        val = _rows(frame, fold.validation)
        trial.fold_ap[fold_index] = average_precision(val["is_fraud"].to_numpy(), predict_scores(model, val, config.features))
        trial.seconds += time.monotonic() - tick
        return True

    for trial in trials:
        if not run(trial, 0):
            break
    scored = sorted((t for t in trials if t.fold_ap), key=lambda t: -np.nan_to_num(t.mean_ap, nan=-1))
    for trial in scored[: max(2, math.ceil(len(scored) / 3))]:
        for i in range(1, len(folds)):
            if not run(trial, i):
                break
    return trials


def best_trial(trials: list[Trial]) -> Trial:
    """Highest mean validation AP among trials evaluated on the most folds (the last rung)."""
    scored = [t for t in trials if t.fold_ap]
    if not scored:
        return trials[0]
    depth = max(len(t.fold_ap) for t in scored)
    finalists = [t for t in scored if len(t.fold_ap) == depth]
    return max(finalists, key=lambda t: np.nan_to_num(t.mean_ap, nan=-1))


def variant_summary(trials: list[Trial]) -> pd.DataFrame:
    """Best validation AP per variant (on the most recent fold, where every variant competed)."""
    rows = []
    for variant in dict.fromkeys(t.variant for t in trials):
        mine = [t for t in trials if t.variant == variant and 0 in t.fold_ap]
        rows.append({
            "variant": variant,
            "trials": len(mine),
            "best_val_ap_recent_fold": max((t.fold_ap[0] for t in mine), default=float("nan")),
            "best_val_ap_mean": max((t.mean_ap for t in mine), default=float("nan")),
            "fit_seconds": sum(t.seconds for t in mine),
        })
    return pd.DataFrame(rows)


@dataclass
class TrainingResult:
    run_id: str
    model_uri: str
    model: Any
    variant: str
    params: dict
    validation_ap: float
    plan: TrainingPlan
    trials: pd.DataFrame
    variants: pd.DataFrame
    features: list[str]
    train_partitions: list[str]
    train_rows: int
    train_frauds: int
    train_seconds: float


def _pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's requirement inference would re-import the model in a subprocess."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("xgboost", "imbalanced-learn", "scikit-learn", "pandas", "numpy", "cloudpickle", "mlflow")]


def train_model(
    matrix: pd.DataFrame,
    config: TrainingConfig,
    *,
    run_name: str = "fraud_model",
    source_partitions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Search, refit the winner on the final training window and log everything to the active
    MLflow experiment (call ``TrackingTarget.activate()`` first). ``matrix`` is the
    ``transaction_features`` table: ids, ``event_date``, ``is_fraud`` and the feature columns."""
    import mlflow
    from mlflow.models import infer_signature

    from fraud_platform.ml.tracking import git_commit

    started = time.monotonic()
    days = sorted(pd.to_datetime(matrix["event_date"]).dt.date.unique())
    plan = plan_training(days, config)
    with mlflow.start_run(run_name=run_name) as run:
        commit = git_commit()
        mlflow.set_tags({**(tags or {}), **({"mlflow.source.git.commit": commit} if commit else {})})
        mlflow.log_params({
            "train_window": "/".join(d.isoformat() for d in plan.final_train),
            "test_window": "/".join(d.isoformat() for d in plan.splits.test),
            "delay_days": config.split.delay_days,
            "n_folds_used": len(plan.folds),
            "n_candidates": config.n_candidates,
            "budget_seconds": config.budget_seconds,
            "smote_ratio": config.smote_ratio,
            "max_bin": config.max_bin,
            "seed": config.seed,
            "n_jobs": config.n_jobs or machine_threads(),
            "n_features": len(config.features),
        })
        trials = search(matrix, plan.folds, config)
        for trial in (t for t in trials if t.fold_ap):
            with mlflow.start_run(run_name=f"trial-{trial.variant}", nested=True):
                mlflow.log_params({"variant": trial.variant, **trial.params})
                mlflow.log_metrics({f"val_ap_fold{i}": ap for i, ap in trial.fold_ap.items()})
                mlflow.log_metrics({"val_ap_mean": trial.mean_ap, "fit_seconds": trial.seconds})
        best = best_trial(trials)
        summary = variant_summary(trials)
        trial_table = pd.DataFrame([
            {"variant": t.variant, **t.params, **{f"val_ap_fold{i}": ap for i, ap in t.fold_ap.items()},
             "val_ap_mean": t.mean_ap, "fit_seconds": t.seconds}
            for t in trials if t.fold_ap
        ])

        model = fit(matrix, plan.final_train, best.variant, best.params, config)
        train_rows = _rows(matrix, plan.final_train)
        sample = model_input(train_rows.head(200), config.features)
        signature = infer_signature(sample, model.predict_proba(sample)[:, 1])
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", signature=signature,
            input_example=sample.head(5), pip_requirements=_pip_requirements(), pyfunc_predict_fn="predict_proba",
        )
        train_partitions = [d.isoformat() for d in day_range(plan.final_train) if d in set(days)]
        mlflow.log_params({"variant": best.variant, **{f"xgb_{k}": v for k, v in best.params.items()}})
        for row in summary.itertuples():
            mlflow.log_metric(f"val_ap_{row.variant}", row.best_val_ap_recent_fold)
        mlflow.log_metrics({
            "val_ap": best.mean_ap,
            "train_rows": len(train_rows),
            "train_frauds": int(train_rows["is_fraud"].sum()),
            "train_seconds": time.monotonic() - started,
        })
        mlflow.log_dict({"features": list(config.features)}, "features.json")
        mlflow.log_dict({"train_partitions": train_partitions, "source_partitions": list(source_partitions or []),
                         "plan": plan.as_dict()}, "data_partitions.json")
        mlflow.log_text(trial_table.to_csv(index=False), "search/trials.csv")
        mlflow.set_tags({"fraud.features": json.dumps(list(config.features)),
                         "fraud.train_partitions": ",".join(train_partitions)})
        return TrainingResult(
            run_id=run.info.run_id,
            model_uri=info.model_uri,
            model=model,
            variant=best.variant,
            params=best.params,
            validation_ap=best.mean_ap,
            plan=plan,
            trials=trial_table,
            variants=summary,
            features=list(config.features),
            train_partitions=train_partitions,
            train_rows=len(train_rows),
            train_frauds=int(train_rows["is_fraud"].sum()),
            train_seconds=time.monotonic() - started,
        )
