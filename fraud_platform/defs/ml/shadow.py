"""``challenger_shadow_report``: champion vs challenger on live traffic once labels are known, and
the live-evidence promotion gate (``ModelTrainingResource.require_live_evidence``)."""


from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
from matplotlib.figure import Figure

from fraud_platform.defs.ml.assets import ModelTrainingResource
from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource
from fraud_platform.ml import registry
from fraud_platform.ml.shadow import ShadowLog, live_promotion, shadow_report
from fraud_platform.reports import figure_to_markdown, markdown_table
from fraud_platform.settings import DecisionLogSettings


def shadow_log_from_settings(settings: DecisionLogSettings | None = None) -> ShadowLog:
    """The shadow table beside the decision log, API and stream rows alike (Postgres when configured, else SQLite)."""
    from fraud_platform.infra.decision_log import DecisionLogTarget

    return ShadowLog(DecisionLogTarget.from_settings(settings or DecisionLogSettings.from_env()).backend())


def _labels_since(store, first_day: str) -> pd.DataFrame:
    days = [d for d in store.partition_dates("raw", "labels") if d >= first_day]
    tables = [store.read_partition("raw", "labels", d, columns=["transaction_id", "is_fraud"]) for d in days]
    tables = [t.to_pandas() for t in tables if t is not None]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"transaction_id": [], "is_fraud": []})


def _figure(report) -> Figure:
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    report.metrics[["average_precision", "card_precision_at_k"]].T.plot.bar(ax=ax, rot=0)
    ax.set_ylim(0, 1)
    ax.set_title(f"live: champion v{report.champion_version} vs challenger v{report.challenger_version} ({report.labelled} rows)")
    return fig


@dg.asset(
    group_name="ml", owners=[ML_ENGINEERING], kinds={"mlflow"},
    description="Champion vs challenger on live traffic scored in shadow, on rows whose labels have matured: AP, "
                "card precision@k at the daily alert budget, alert volume, agreement. With require_live_evidence "
                "it promotes the challenger when its live metric beats the champion's.",
)
def challenger_shadow_report(context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource,
                             ml_training: ModelTrainingResource, lake_processing: LakeProcessingResource) -> dg.MaterializeResult:
    client = mlflow.client()
    challenger = registry.load_champion(client, mlflow.model_name, registry.CHALLENGER_ALIAS)
    champion = registry.load_champion(client, mlflow.model_name)
    if challenger is None or (champion is not None and champion.version == challenger.version):
        return dg.MaterializeResult(metadata={"challenger_version": "none", "promoted": False})
    shadow = shadow_log_from_settings().read()
    # the platform's one label-maturity period: only decisions whose labels are final are compared
    cutoff = (datetime.now(timezone.utc) - timedelta(days=lake_processing.label_maturity_days)).isoformat()
    matured = shadow[(shadow["challenger_version"] == challenger.version) & (shadow["decided_at"] <= cutoff)]
    labels = _labels_since(lake.store(), matured["decided_at"].min()[:10]) if len(matured) else pd.DataFrame({"transaction_id": [], "is_fraud": []})
    report = shadow_report(matured, labels, k=ml_training.daily_alert_budget, challenger_version=challenger.version)
    decision = live_promotion(report, ml_training.promotion_metric, ml_training.promotion_margin,
                              ml_training.live_min_labelled, ml_training.live_min_frauds)
    promoted = decision.promote and ml_training.require_live_evidence
    if promoted:
        registry.apply_decision(client, mlflow.model_name, challenger.version, decision)
        client.delete_registered_model_alias(mlflow.model_name, registry.CHALLENGER_ALIAS)  # it is the champion now
        context.log.info("promoted challenger v%s: %s", challenger.version, decision.reason)
    else:
        context.log.info("challenger v%s stays in shadow: %s", challenger.version, decision.reason)
    metadata = {
        "challenger_version": challenger.version, "champion_version": report.champion_version,
        "labelled_rows": report.labelled, "frauds": report.frauds, "agreement": report.agreement,
        "metrics": dg.MetadataValue.md(markdown_table(report.metrics.reset_index(names="model"))),
        "live_decision": decision.reason, "promoted": promoted,
    }
    for who in ("champion", "challenger"):
        for name, value in report.metrics.loc[who].items():
            metadata[f"{who}_{name}"] = float(value)
    if report.labelled:
        metadata["plot"] = dg.MetadataValue.md(figure_to_markdown(_figure(report), "live champion vs challenger"))
    return dg.MaterializeResult(metadata=metadata)
