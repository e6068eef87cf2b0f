"""Model training: a budgeted Optuna search across model families (XGBoost, LightGBM, random
forest, logistic regression as the floor) and class-imbalance options (none, class weighting,
SMOTE), selected on several FDH prequential folds by mean validation AP, tracked in MLflow.

Protocol (docs/ml.md): ``plan_time_splits`` fixes the test window (last days, or the explicit
``TrainingWindows``) and the label-delay gap before it. The final model trains on the
``train_days`` ending ``delay_days`` before the test window (what would be deployable then);
model selection uses prequential folds ending at the same day, each with its own delay gap, so
validation never sees labels from after its cut-off. SMOTE is only a candidate: it is used only
when it wins on validation (it fits ~20x slower and blurs sharp amount cut-offs).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from fraud_platform.domain.features import FEATURE_COLUMNS
from fraud_platform.domain.metrics import average_precision, drop_known_compromised
from fraud_platform.domain.splits import Fold, SplitConfig, TimeSplits, day_range, plan_time_splits, prequential_folds

log = logging.getLogger(__name__)

FAMILIES = ("xgboost", "lightgbm", "random_forest", "logistic_regression")
BALANCING = ("none", "class_weight", "smote")
FIT_COST_ORDER = ("logistic_regression", "lightgbm", "xgboost", "random_forest")  # typical fit time, ascending


def machine_threads() -> int:
    """Cores this process may use (cgroup/affinity aware where the OS says so)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cores(sample_seconds: float = 0.5) -> float | None:
    """Cores other processes keep busy right now: two ``/proc/stat`` samples (this process sleeps
    between them, so it is not counted). Not the load average: that lags by a minute, and a fit
    started right after other work (a previous seed's training) saw the machine as busy and took
    one thread. None where ``/proc/stat`` is missing (not Linux)."""
    def sample() -> tuple[float, float]:
        with open("/proc/stat") as stat:
            ticks = [float(x) for x in stat.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total_before, idle_before = sample()
        time.sleep(sample_seconds)
        total_after, idle_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_after - total_before
    if elapsed <= 0:
        return None
    return (1.0 - (idle_after - idle_before) / elapsed) * (os.cpu_count() or 1)


def free_threads() -> int:
    """Cores not already busy with other work (usable cores minus :func:`busy_cores`), at least 1.
    XGBoost and LightGBM run OpenMP threads that spin at every barrier: with more threads than idle
    cores a 70k-row fit took 10-15x the CPU and wall time of a single-threaded one (docs/ml.md), so a
    shared machine gets fewer threads."""
    cores = machine_threads()
    busy = busy_cores()
    if busy is None:
        return cores
    return int(min(cores, max(1, round(cores - busy))))


@dataclass(frozen=True)
class TrainingWindows:
    """Explicit dates for a backtest; unset fields fall back to the protocol (``SplitConfig``).

    ``test_start`` + ``test_days`` fix the test window; ``train_end`` defaults to the day before
    the delay gap; ``train_start`` defaults to ``train_days`` before ``train_end``."""

    test_start: date | None = None
    test_days: int | None = None
    train_end: date | None = None
    train_start: date | None = None


@dataclass(frozen=True)
class TrainingConfig:
    split: SplitConfig = SplitConfig()
    windows: TrainingWindows | None = None
    n_folds: int = 3
    families: tuple[str, ...] = FAMILIES
    balancing: tuple[str, ...] = BALANCING
    max_trials: int = 60  # upper bound on Optuna trials; the wall budget usually ends the search first
    budget_seconds: float = 90.0  # wall clock for the search; at least one trial always runs
    n_estimators: tuple[int, int] = (100, 300)  # tree families' range
    max_depth: tuple[int, int] = (3, 8)
    smote_ratio: float = 0.1  # minority/majority ratio after SMOTE
    # Histogram bins per feature: XGBoost's default 256 quantile bins are several euros wide in the
    # sparse amount tail, too coarse to place a sharp amount cut-off; 4096 keeps fits ~2 s.
    max_bin: int = 4096
    seed: int = 42
    n_jobs: int | None = None  # None = the machine's idle cores when training starts (free_threads)
    features: tuple[str, ...] = tuple(FEATURE_COLUMNS)

    @property
    def threads(self) -> int:
        return self.n_jobs or free_threads()


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
    windows = config.windows or TrainingWindows()
    split = config.split
    if windows.test_start is not None:  # explicit test window (clipped to the data)
        test_end = windows.test_start + timedelta(days=(windows.test_days or split.test_days) - 1)
        present = [d for d in days if windows.test_start <= d <= test_end]
        if not present:
            raise ValueError(f"no data in the test window {windows.test_start} .. {test_end}")
        test = (windows.test_start, max(present))
    else:
        test = plan_time_splits(days, split).test
    if test is None:
        raise ValueError("no days to train on")
    train_end = windows.train_end or test[0] - timedelta(days=split.delay_days + 1)
    if train_end >= test[0]:
        raise ValueError(f"train_end {train_end} must be before the test window {test}")
    first = min(days)
    if train_end < first:
        raise ValueError(f"not enough days before the test window {test} and its {split.delay_days}-day delay")
    train_days = split.train_days
    if windows.train_start is not None:
        train_start = windows.train_start
        train_days = (train_end - train_start).days + 1
    else:
        train_start = max(first, train_end - timedelta(days=train_days - 1)) if train_days else first
    splits = TimeSplits((train_start, train_end), None, test, split.delay_days)
    folds = prequential_folds(
        days, train_end, train_days=train_days, validation_days=split.validation_days,
        delay_days=split.delay_days, n_folds=config.n_folds,
    )
    if not folds:  # short history: one fold training on every day before its delay gap
        folds = prequential_folds(
            days, train_end, train_days=None, validation_days=split.validation_days,
            delay_days=split.delay_days, n_folds=1,
        )
    return TrainingPlan(splits, (train_start, train_end), folds)


def model_input(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The model's input: the feature columns as float64 (one dtype for the MLflow signature)."""
    return frame[list(features)].astype("float64")


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a model family, an imbalance option and the family's parameters."""

    family: str
    balance: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return f"{self.family}/{self.balance}"


def suggest_candidate(trial, config: TrainingConfig) -> Candidate:
    """The search space: family first, then that family's parameters (named per family)."""
    family = trial.suggest_categorical("family", list(config.families))
    balance = trial.suggest_categorical("balance", list(config.balancing))
    lo, hi = config.n_estimators
    depth_lo, depth_hi = config.max_depth
    trees = max(1, (hi - lo) // 4)

    def boosting(prefix: str) -> dict:  # what XGBoost and LightGBM share
        return {
            "n_estimators": trial.suggest_int(f"{prefix}_n_estimators", lo, hi, step=trees),
            "learning_rate": trial.suggest_float(f"{prefix}_learning_rate", 0.03, 0.3, log=True),
            "subsample": trial.suggest_float(f"{prefix}_subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float(f"{prefix}_colsample_bytree", 0.3, 1.0),
        }

    if family == "xgboost":
        params = {**boosting("xgb"), "max_depth": trial.suggest_int("xgb_max_depth", depth_lo, depth_hi),
                  "min_child_weight": trial.suggest_int("xgb_min_child_weight", 1, 10, log=True)}
    elif family == "lightgbm":
        params = {**boosting("lgbm"),
                  "num_leaves": trial.suggest_int("lgbm_num_leaves", 2 ** depth_lo - 1, 2 ** depth_hi - 1, log=True),
                  "min_child_samples": trial.suggest_int("lgbm_min_child_samples", 5, 200, log=True)}
    elif family == "random_forest":
        params = {
            "n_estimators": trial.suggest_int("rf_n_estimators", lo, hi, step=trees),
            "max_depth": trial.suggest_int("rf_max_depth", depth_lo + 2, depth_hi + 8),
            "min_samples_leaf": trial.suggest_int("rf_min_samples_leaf", 1, 20, log=True),
            "max_features": trial.suggest_float("rf_max_features", 0.2, 0.8),
        }
    else:
        params = {"C": trial.suggest_float("lr_C", 1e-3, 10.0, log=True)}
    return Candidate(family, balance, params)


def build_pipeline(candidate: Candidate, y_train: np.ndarray, config: TrainingConfig):
    """imblearn Pipeline: [scaling for the linear floor] -> [SMOTE] -> the family's classifier,
    with class weighting done by the classifier itself."""
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline

    if candidate.family not in FAMILIES:
        raise ValueError(f"unknown model family {candidate.family!r}; expected one of {FAMILIES}")
    if candidate.balance not in BALANCING:
        raise ValueError(f"unknown balancing {candidate.balance!r}; expected one of {BALANCING}")
    positives = int(np.sum(y_train))
    negatives = len(y_train) - positives
    weighted = candidate.balance == "class_weight"
    params = dict(candidate.params)
    threads, seed = config.threads, config.seed
    steps: list = []
    if candidate.family == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(**params, tree_method="hist", max_bin=config.max_bin, n_jobs=threads, random_state=seed,
                              eval_metric="aucpr", **({"scale_pos_weight": negatives / max(positives, 1)} if weighted else {}))
    elif candidate.family == "lightgbm":
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(**params, subsample_freq=1, max_bin=min(config.max_bin, 1023), n_jobs=threads,
                               random_state=seed, verbose=-1, importance_type="gain",
                               **({"scale_pos_weight": negatives / max(positives, 1)} if weighted else {}))
    elif candidate.family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(**params, n_jobs=threads, random_state=seed,
                                       class_weight="balanced_subsample" if weighted else None)
    else:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        steps.append(("scale", StandardScaler()))
        model = LogisticRegression(**params, max_iter=2000, class_weight="balanced" if weighted else None)
    if candidate.balance == "smote":
        current = positives / max(negatives, 1)
        steps.append((
            "smote",
            SMOTE(sampling_strategy=max(config.smote_ratio, current), k_neighbors=max(1, min(5, positives - 1)),
                  random_state=seed),
        ))
    steps.append(("model", model))
    return Pipeline(steps)


def rows_in(frame: pd.DataFrame, window: tuple[date, date]) -> pd.DataFrame:
    days = pd.to_datetime(frame["event_date"]).dt.date
    return frame[(days >= window[0]) & (days <= window[1])]


def held_out_rows(matrix: pd.DataFrame, window: tuple[date, date], known_since: date | None = None
                  ) -> tuple[pd.DataFrame, int]:
    """Rows of ``window`` minus cards known compromised (fraud label known before the row's day,
    counting frauds from ``known_since`` on: FDH uses the training window's start); also returns
    how many rows were removed. The test protocol, and the validation folds' (same population)."""
    days = pd.to_datetime(matrix["event_date"]).dt.date
    rows = matrix[(days >= window[0]) & (days <= window[1])]
    history = matrix[(days < window[0]) & ((days >= known_since) if known_since else True)]
    kept = drop_known_compromised(rows, history)
    return kept, len(rows) - len(kept)


def training_rows(frame: pd.DataFrame, window: tuple[date, date], extra_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The window's rows plus ``extra_rows`` (the verdict-labelled rows of immature days; see
    ``transaction_features``), which are never in a test window or a fold: only the final fit takes them."""
    rows = rows_in(frame, window)
    if extra_rows is None or extra_rows.empty:
        return rows
    extra = extra_rows[rows.columns.intersection(extra_rows.columns)].dropna(axis=1, how="all")  # (pandas' all-NA concat warning)
    return pd.concat([rows, extra], ignore_index=True)


def validation_rows(frame: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    """A fold's validation rows, scored like the test window: cards already known compromised are
    removed (they are blocked, not scored). Without card/label columns (crafted data): every row.

    Keeping them made validation AP ~0.06 higher than test AP on the simulator: ~40 % of the
    validation frauds are repeat frauds on known cards, mostly easy high-amount ones."""
    if not {"card_key", "label_known_at"} <= set(frame.columns):
        return rows_in(frame, fold.validation)
    return held_out_rows(frame, fold.validation, known_since=fold.train[0])[0]


def fit(frame: pd.DataFrame, window: tuple[date, date], candidate: Candidate, config: TrainingConfig,
        extra_rows: pd.DataFrame | None = None):
    rows = training_rows(frame, window, extra_rows)
    y = rows["is_fraud"].to_numpy(dtype=int)
    if y.sum() < 2:
        raise ValueError(f"fewer than 2 frauds in training window {window}")
    return build_pipeline(candidate, y, config).fit(model_input(rows, config.features), y)


def predict_scores(model, frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return model.predict_proba(model_input(frame, features))[:, 1]


@dataclass
class Trial:
    number: int
    candidate: Candidate
    fold_ap: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def variant(self) -> str:
        return self.candidate.variant

    @property
    def mean_ap(self) -> float:
        """Mean AP over the folds that could be scored (NaN if none)."""
        scored = [v for v in self.fold_ap.values() if not np.isnan(v)]
        return float(np.mean(scored)) if scored else float("nan")

    @property
    def std_ap(self) -> float:
        scored = [v for v in self.fold_ap.values() if not np.isnan(v)]
        return float(np.std(scored)) if len(scored) > 1 else 0.0

    def as_row(self) -> dict:
        return {"trial": self.number, "family": self.candidate.family, "balance": self.candidate.balance,
                **{f"val_ap_fold{i}": ap for i, ap in self.fold_ap.items()}, "val_ap_mean": self.mean_ap,
                "val_ap_std": self.std_ap, "fit_seconds": self.seconds,
                "params": json.dumps({k: _plain(v) for k, v in self.candidate.params.items()})}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def score_candidate(frame: pd.DataFrame, folds: list[Fold], candidate: Candidate, config: TrainingConfig) -> dict[int, float]:
    """Validation AP of ``candidate`` on every fold (NaN where the fold's training has < 2 frauds)."""
    result = {}
    for index, fold in enumerate(folds):
        try:
            model = fit(frame, fold.train, candidate, config)
        except ValueError:
            result[index] = float("nan")
            continue
        val = validation_rows(frame, fold)
        result[index] = average_precision(val["is_fraud"].to_numpy(), predict_scores(model, val, config.features))
    return result


def default_candidates(config: TrainingConfig) -> list[dict]:
    """Seed the search with one known-good point per family, cheapest family first, so every
    family (including the linear floor) is compared before the sampler concentrates on the
    promising ones. Points found on the simulator's prequential folds (validation AP with cards
    known compromised removed, seeds 42/1/7; docs/ml.md): deep-ish XGBoost with few trees, and a
    regularised LightGBM (small leaves, large leaf minimum, half the features per tree), which
    beat LightGBM's library defaults by ~0.03 validation AP. Clipped to the configured ranges."""
    lo, hi = config.n_estimators
    depth_lo, depth_hi = config.max_depth
    trees = lambda n: min(max(n, lo), hi)  # noqa: E731
    depth = lambda d: min(max(d, depth_lo), depth_hi)  # noqa: E731
    balance = "none" if "none" in config.balancing else config.balancing[0]
    points = {
        "xgboost": {"xgb_n_estimators": trees(100), "xgb_max_depth": depth(7), "xgb_learning_rate": 0.1,
                    "xgb_min_child_weight": 1, "xgb_subsample": 1.0, "xgb_colsample_bytree": 1.0},
        "lightgbm": {"lgbm_n_estimators": trees(300), "lgbm_num_leaves": min(max(15, 2 ** depth_lo - 1), 2 ** depth_hi - 1),
                     "lgbm_learning_rate": 0.05, "lgbm_min_child_samples": 100, "lgbm_subsample": 0.8,
                     "lgbm_colsample_bytree": 0.5},
        "random_forest": {"rf_n_estimators": trees(100), "rf_max_depth": depth(7) + 7, "rf_min_samples_leaf": 5,
                          "rf_max_features": 0.5},
        "logistic_regression": {"lr_C": 1.0},
    }
    cheapest_first = sorted(config.families, key=lambda f: FIT_COST_ORDER.index(f))  # a tight budget still sees the floor
    return [{"family": f, "balance": balance, **points[f]} for f in cheapest_first]


def search(frame: pd.DataFrame, folds: list[Fold], config: TrainingConfig) -> list[Trial]:
    """Optuna TPE over families x balancing x parameters, each trial scored on every prequential
    fold. The seeded points (one per family, ``default_candidates``) always run, so every family
    is compared however loaded the machine is; then the search goes on until ``max_trials`` or
    until ``budget_seconds`` of wall time (counted from the start) are spent (a running trial
    finishes)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials: list[Trial] = []
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    points = default_candidates(config)
    if not folds:  # nothing to validate on: one unscored trial, the protocol's usual winner first
        points.sort(key=lambda p: p["family"] != "xgboost")
    for point in points:
        study.enqueue_trial(point, skip_if_exists=True)

    def objective(trial) -> float:
        candidate = suggest_candidate(trial, config)
        tick = time.monotonic()
        record = Trial(trial.number, candidate)
        record.fold_ap = score_candidate(frame, folds, candidate, config) if folds else {}
        record.seconds = time.monotonic() - tick
        trials.append(record)
        log.info("trial %d %s: mean AP %.4f (%.1fs)", trial.number, candidate.variant, record.mean_ap, record.seconds)
        return -1.0 if np.isnan(record.mean_ap) else record.mean_ap

    started = time.monotonic()
    if not folds:
        study.optimize(objective, n_trials=1)
        return trials
    seeded = min(len(points), config.max_trials)
    study.optimize(objective, n_trials=seeded)
    remaining = config.budget_seconds - (time.monotonic() - started)
    if config.max_trials > seeded and remaining > 0:
        study.optimize(objective, n_trials=config.max_trials - seeded, timeout=remaining)
    return trials


def best_trial(trials: list[Trial]) -> Trial:
    """Highest mean validation AP across the folds (ties: the faster fit)."""
    return max(trials, key=lambda t: (np.nan_to_num(t.mean_ap, nan=-1), -t.seconds))


def family_summary(trials: list[Trial]) -> pd.DataFrame:
    """Per family: trials run, best mean validation AP with its spread over folds, fit time."""
    rows = []
    for family in dict.fromkeys(t.candidate.family for t in trials):
        mine = [t for t in trials if t.candidate.family == family]
        best = best_trial(mine)
        rows.append({"family": family, "trials": len(mine), "best_balance": best.candidate.balance,
                     "best_val_ap_mean": best.mean_ap, "best_val_ap_std": best.std_ap,
                     "fit_seconds": sum(t.seconds for t in mine)})
    return pd.DataFrame(rows).sort_values("best_val_ap_mean", ascending=False, kind="stable").reset_index(drop=True)


def selection_reason(best: Trial, summary: pd.DataFrame, n_folds: int, seconds: float) -> str:
    """One sentence a reviewer can check: the winner, its score and the runner-up family's."""
    text = (f"{best.variant} selected: mean validation AP {best.mean_ap:.4f} ± {best.std_ap:.4f} over {n_folds} "
            f"prequential fold(s), best of {int(summary['trials'].sum())} trials in {seconds:.0f}s")
    others = summary[summary["family"] != best.candidate.family]
    if len(others):
        runner = others.iloc[0]
        text += (f"; runner-up family {runner['family']} ({runner['best_balance']}) "
                 f"{runner['best_val_ap_mean']:.4f} ± {runner['best_val_ap_std']:.4f}")
    return text + "."


@dataclass
class TrainingResult:
    run_id: str
    model_uri: str
    model: Any
    candidate: Candidate
    validation_ap: float
    validation_ap_std: float
    plan: TrainingPlan
    trials: pd.DataFrame
    families: pd.DataFrame
    reason: str
    features: list[str]
    train_partitions: list[str]
    train_dates: list[date]  # distinct event dates of the rows the final model was fitted on
    train_rows: int
    train_frauds: int
    train_seconds: float
    train_verdict_rows: int = 0  # of train_rows: immature days' rows with an analyst verdict

    @property
    def variant(self) -> str:
        return self.candidate.variant

    @property
    def family(self) -> str:
        return self.candidate.family


def _pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's requirement inference would re-import the model in a subprocess."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("xgboost", "lightgbm", "imbalanced-learn", "scikit-learn", "pandas", "numpy", "cloudpickle", "mlflow")]


def train_model(
    matrix: pd.DataFrame,
    config: TrainingConfig,
    *,
    run_name: str = "fraud_model",
    source_partitions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    verdict_rows: pd.DataFrame | None = None,
) -> TrainingResult:
    """Search, refit the winner on the final training window and log everything to the active
    MLflow experiment (call ``TrackingTarget.activate()`` first; nests under an active run).
    ``matrix`` is the ``transaction_features`` table: ids, ``event_date``, ``is_fraud`` and the
    feature columns. ``verdict_rows`` (same columns, immature days with an analyst verdict) join
    the final fit only: the split plan, folds and test window stay on the matured days."""
    import mlflow
    from mlflow.models import infer_signature

    from fraud_platform.ml.tracking import git_commit

    started = time.monotonic()
    config = replace(config, n_jobs=config.threads)  # sized once (free cores now), logged, used throughout
    days = sorted(pd.to_datetime(matrix["event_date"]).dt.date.unique())
    plan = plan_training(days, config)
    with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None) as run:
        commit = git_commit()
        mlflow.set_tags({**(tags or {}), **({"mlflow.source.git.commit": commit} if commit else {})})
        mlflow.log_params({
            "train_window": "/".join(d.isoformat() for d in plan.final_train),
            "test_window": "/".join(d.isoformat() for d in plan.splits.test),
            "delay_days": config.split.delay_days,
            "n_folds_used": len(plan.folds),
            "families": ",".join(config.families),
            "balancing": ",".join(config.balancing),
            "max_trials": config.max_trials,
            "budget_seconds": config.budget_seconds,
            "smote_ratio": config.smote_ratio,
            "max_bin": config.max_bin,
            "seed": config.seed,
            "n_jobs": config.threads,
            "n_features": len(config.features),
        })
        search_started = time.monotonic()
        trials = search(matrix, plan.folds, config)
        search_seconds = time.monotonic() - search_started
        for trial in trials:
            with mlflow.start_run(run_name=f"trial-{trial.number}-{trial.variant}", nested=True):
                mlflow.log_params({"family": trial.candidate.family, "balance": trial.candidate.balance,
                                   **{k: _plain(v) for k, v in trial.candidate.params.items()}})
                mlflow.log_metrics({f"val_ap_fold{i}": ap for i, ap in trial.fold_ap.items() if not np.isnan(ap)})
                if not np.isnan(trial.mean_ap):
                    mlflow.log_metrics({"val_ap_mean": trial.mean_ap, "val_ap_std": trial.std_ap})
                mlflow.log_metric("fit_seconds", trial.seconds)
        best = best_trial(trials)
        summary = family_summary(trials)
        reason = selection_reason(best, summary, len(plan.folds), search_seconds)
        trial_table = pd.DataFrame([t.as_row() for t in trials])

        model = fit(matrix, plan.final_train, best.candidate, config, verdict_rows)
        train_rows = training_rows(matrix, plan.final_train, verdict_rows)
        n_verdicts = 0 if verdict_rows is None else len(verdict_rows)
        sample = model_input(train_rows.head(200), config.features)
        signature = infer_signature(sample, model.predict_proba(sample)[:, 1])
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", signature=signature,
            input_example=sample.head(5), pip_requirements=_pip_requirements(), pyfunc_predict_fn="predict_proba",
        )
        train_partitions = [d.isoformat() for d in day_range(plan.final_train) if d in set(days)]
        mlflow.log_params({"variant": best.variant, "family": best.candidate.family, "balance": best.candidate.balance,
                           **{f"model_{k}": _plain(v) for k, v in best.candidate.params.items()}})
        for row in summary.itertuples():
            mlflow.log_metric(f"val_ap_{row.family}", row.best_val_ap_mean)
        mlflow.log_metrics({
            "val_ap": best.mean_ap,
            "val_ap_std": best.std_ap,
            "search_trials": len(trials),
            "train_rows": len(train_rows),
            "train_frauds": int(train_rows["is_fraud"].sum()),
            "train_verdict_rows": n_verdicts,
            "train_seconds": time.monotonic() - started,
        })
        mlflow.log_dict({"features": list(config.features)}, "features.json")
        mlflow.log_dict({"train_partitions": train_partitions, "source_partitions": list(source_partitions or []),
                         "plan": plan.as_dict()}, "data_partitions.json")
        mlflow.log_text(trial_table.to_csv(index=False), "search/trials.csv")
        mlflow.log_text(summary.to_csv(index=False), "search/families.csv")
        mlflow.log_text(reason, "search/selection.txt")
        mlflow.set_tags({"fraud.features": json.dumps(list(config.features)),
                         "fraud.train_partitions": ",".join(train_partitions),
                         "fraud.selection": reason})
        return TrainingResult(
            run_id=run.info.run_id,
            model_uri=info.model_uri,
            model=model,
            candidate=best.candidate,
            validation_ap=best.mean_ap,
            validation_ap_std=best.std_ap,
            plan=plan,
            trials=trial_table,
            families=summary,
            reason=reason,
            features=list(config.features),
            train_partitions=train_partitions,
            train_dates=sorted(pd.to_datetime(train_rows["event_date"]).dt.date.unique()),
            train_rows=len(train_rows),
            train_frauds=int(train_rows["is_fraud"].sum()),
            train_seconds=time.monotonic() - started,
            train_verdict_rows=n_verdicts,
        )
