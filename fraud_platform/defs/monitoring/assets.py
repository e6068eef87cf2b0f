"""Monitoring assets: what the streaming scorer wrote (observed), feature/score drift against the
training data, and the champion's live performance once labels arrive."""

import dagster as dg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score

from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource, MonitoringResource
from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, RAW_LABELS, SCORED_TRANSACTIONS, TRANSACTION_FEATURES, Dataset
from fraud_platform.domain.catalogue import last_matured_day
from fraud_platform.domain.drift import comparable_window, drift_table, feature_drift, psi
from fraud_platform.domain.features import DEFAULT_CONFIG, compute_batch_features
from fraud_platform.infra.lake import LakeStore
from fraud_platform.ml import registry
from fraud_platform.reports import figure_to_markdown, markdown_table

MONITORING = dict(group_name="monitoring", owners=[ML_ENGINEERING])


def _read_days(store: LakeStore, dataset: Dataset, days: list[str]) -> pd.DataFrame | None:
    table = store.read_days(dataset, days)
    return None if table is None else table.to_pandas()


def _recent_days(store: LakeStore, dataset: Dataset, count: int) -> list[str]:
    return store.partition_dates(dataset)[-count:]


@dg.observable_source_asset(
    name="scored_transactions",
    description="Transactions scored by the separately deployed spark_streaming job "
    "(lake zone scored/transactions/date=…), observed so drift and live performance can follow it.",
    **MONITORING,
)
def scored_transactions(lake: LakeResource) -> dg.ObserveResult:
    store = lake.store()
    keys = store.parquet_keys(SCORED_TRANSACTIONS)
    return dg.ObserveResult(
        data_version=dg.DataVersion(f"{len(keys)}:{keys[-1] if keys else ''}"),
        metadata={"files": len(keys), "dates": dg.MetadataValue.json(store.partition_dates(SCORED_TRANSACTIONS)[-10:])},
    )


def _recent_traffic_features(store: LakeStore, recent_days: int, history_days: int) -> tuple[pd.DataFrame, str]:
    """Features of recent traffic: the ones the scorer scored with (the scored zone carries them, see
    ``catalogue.SCORED_TRANSACTIONS``), else computed from the processed zone with the shared
    feature module (history included so windows are complete)."""
    features = DEFAULT_CONFIG.feature_columns()
    scored_days = _recent_days(store, SCORED_TRANSACTIONS, recent_days)
    if scored_days:
        scored = _read_days(store, SCORED_TRANSACTIONS, scored_days)
        if scored is not None and set(features) <= set(scored.columns) and scored[features].notna().all(axis=None):
            return scored, "scored"
    days = store.partition_dates(PROCESSED_TRANSACTIONS)
    if not days:
        raise dg.Failure("no recent traffic: neither the scored nor the processed zone has data")
    recent = days[-recent_days:]
    first_recent = pd.Timestamp(recent[0], tz="UTC")
    history_start = (first_recent - pd.Timedelta(days=history_days)).date().isoformat()
    frame = _read_days(store, PROCESSED_TRANSACTIONS, [d for d in days if d >= history_start])
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    computed = compute_batch_features(frame)
    computed = computed[frame["event_time"] >= first_recent]
    return computed, "processed"


def _score_drift(mlflow: MlflowResource, reference: pd.DataFrame, recent: pd.DataFrame) -> dict[str, float] | None:
    """PSI between the champion's scores on its training data and the scores it gave recent
    traffic (None when the scorer logged no scores or nothing is published yet)."""
    if "score" not in recent.columns:
        return None
    info = registry.load_champion(mlflow.client(), mlflow.model_name)
    if info is None or not set(info.features) <= set(reference.columns):
        return None
    model = registry.load_model(info, tracking_uri=mlflow.tracking_uri)
    reference_scores = model.predict_proba(reference[info.features].astype("float64"))[:, 1]
    recent_scores = recent["score"].to_numpy(dtype=float)
    return {
        "score_psi": psi(reference_scores, recent_scores),
        "reference_mean_score": float(np.mean(reference_scores)),
        "recent_mean_score": float(np.mean(recent_scores)),
        "champion_version": float(info.version),
    }


def _psi_figure(table: pd.DataFrame, threshold: float) -> Figure:
    fig = Figure(figsize=(7, 0.25 * len(table) + 1.2))
    ax = fig.subplots()
    ordered = table.sort_values("psi")
    colors = ["#c0392b" if v > threshold else "#2980b9" for v in ordered["psi"].fillna(0)]
    ax.barh(ordered["feature"], ordered["psi"].fillna(0), color=colors)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"retrain threshold {threshold}")
    ax.set_xlabel("PSI (recent vs training)")
    ax.legend(loc="lower right")
    return fig


@dg.asset(
    description="Population Stability Index (and KS where it fits) per model feature between the "
    "newest warmed-up days of the training matrix and as many of the last days of traffic, plus drift of the champion's score distribution "
    "when the scorer logged scores. The drift sensor requests retrain_model when max PSI passes the threshold.",
    deps=[TRANSACTION_FEATURES.asset_key, PROCESSED_TRANSACTIONS.asset_key, SCORED_TRANSACTIONS.asset_key],
    kinds={"pandas", "scipy"},
    **MONITORING,
)
def feature_drift_report(
    context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, monitoring: MonitoringResource
) -> dg.MaterializeResult:
    store = lake.store()
    features = DEFAULT_CONFIG.feature_columns()
    reference_keys = store.parquet_keys(TRANSACTION_FEATURES)
    if not reference_keys:
        raise dg.Failure("no training reference: materialise transaction_features first")
    matrix = store.read_parquet(reference_keys, columns=["event_time", *features]).to_pandas()
    reference, warmed_up = comparable_window(matrix, monitoring.recent_days, DEFAULT_CONFIG.history_days())
    # Recent features computed from the lake get as much history as the reference rows had, so a
    # training matrix shorter than the feature warm-up is compared like with like.
    history = DEFAULT_CONFIG.history_days()
    if not warmed_up:
        history = (pd.Timestamp(reference["event_time"].min()).floor("D") - pd.Timestamp(matrix["event_time"].min()).floor("D")).days
        context.log.warning(f"training matrix shorter than the {DEFAULT_CONFIG.history_days()}-day feature warm-up: "
                            f"reference and recent processed traffic both use {history} days of history")
    recent, source = _recent_traffic_features(store, monitoring.recent_days, history)
    table = drift_table(feature_drift(reference, recent, features))
    drifting = table.loc[table["psi"] > monitoring.psi_threshold, "feature"].tolist()
    score = _score_drift(mlflow, reference, recent)
    max_psi = float(table["psi"].max())
    if score is not None:
        max_psi = max(max_psi, score["score_psi"])
        if score["score_psi"] > monitoring.psi_threshold:
            drifting.append("score")
    metadata: dict[str, object] = {
        "max_psi": max_psi,
        "score_drift": dg.MetadataValue.json(score or {"note": "no logged scores or no champion yet"}),
        "drifting_features": dg.MetadataValue.json(drifting),
        "psi_threshold": monitoring.psi_threshold,
        "recent_source": source,
        "reference_rows": len(reference),
        "reference_window": f"{matrix['event_time'].min() if not warmed_up else reference['event_time'].min()} .. {reference['event_time'].max()}",
        "reference_warmed_up": warmed_up,
        "recent_rows": len(recent),
        "drift_table": dg.MetadataValue.md(markdown_table(table, max_rows=40)),
        "psi_plot": dg.MetadataValue.md(figure_to_markdown(_psi_figure(table, monitoring.psi_threshold), "PSI per feature")),
    }
    context.log.info(f"drift vs training: max PSI {metadata['max_psi']:.3f}; drifting {drifting or 'none'} ({source}, {len(recent)} rows)")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    description="The champion's live performance: scored transactions whose label window has "
    "matured, joined with the labels that arrived. AP and recall per model version; the live-"
    "performance sensor requests retraining when they decay past the configured floor.",
    deps=[SCORED_TRANSACTIONS.asset_key, RAW_LABELS.asset_key],
    kinds={"pandas"},
    **MONITORING,
)
def live_model_performance(context: dg.AssetExecutionContext, lake: LakeResource, monitoring: MonitoringResource,
                           lake_processing: LakeProcessingResource) -> dg.MaterializeResult:
    store = lake.store()
    scored_days = store.partition_dates(SCORED_TRANSACTIONS)
    reference = lake_processing.policy().reference_time(store)
    newest = last_matured_day(lake_processing.label_maturity_days, reference).isoformat() if reference else ""
    matured_days = [d for d in scored_days if d <= newest][-monitoring.recent_days:]
    if not matured_days:
        return dg.MaterializeResult(metadata={"matured_scored_rows": 0, "note": "no scored day has matured labels yet"})
    scored = _read_days(store, SCORED_TRANSACTIONS, matured_days).drop_duplicates("transaction_id")
    label_table = store.read_parquet(store.parquet_keys(RAW_LABELS), columns=["transaction_id", "is_fraud"])
    labels = label_table.to_pandas() if label_table is not None else pd.DataFrame(columns=["transaction_id", "is_fraud"])
    frauds = set(labels.loc[labels["is_fraud"].astype(bool), "transaction_id"])
    scored["is_fraud"] = scored["transaction_id"].isin(frauds).astype(int)
    flagged = scored["decision"].isin(["review", "block"])
    rows = []
    for version, part in scored.groupby(scored["model_version"].astype(str)):
        positives = int(part["is_fraud"].sum())
        ap = float(average_precision_score(part["is_fraud"], part["score"])) if 0 < positives < len(part) else float("nan")
        recall = float((flagged[part.index] & (part["is_fraud"] == 1)).sum() / positives) if positives else float("nan")
        rows.append({"model_version": version, "transactions": len(part), "frauds": positives, "live_ap": ap, "live_recall": recall})
    # Registry versions are integers: "10" is newer than "9" (string order says otherwise).
    by_version = pd.DataFrame(rows).sort_values("model_version", key=lambda v: v.astype(int), kind="stable").reset_index(drop=True)
    latest = by_version.iloc[-1]
    context.log.info(f"live performance on {len(scored)} matured scored transactions: {rows}")
    return dg.MaterializeResult(
        metadata={
            "matured_scored_rows": len(scored),
            "live_ap": float(latest["live_ap"]),
            "live_recall": float(latest["live_recall"]),
            "model_version": str(latest["model_version"]),
            "min_live_ap": monitoring.min_live_ap,
            "by_model_version": dg.MetadataValue.md(markdown_table(by_version)),
            "scored_days": dg.MetadataValue.json(matured_days),
        }
    )
