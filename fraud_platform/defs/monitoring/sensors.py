"""Sensors that retrain the model when the world moves: feature drift past the PSI threshold, or
live average precision decaying below its floor. Cursors are Dagster's asset-sensor cursors
(stored in the instance, so they survive daemon restarts); malformed reports raise, so a broken
sensor shows as a failed tick instead of silently skipping."""

import dagster as dg

from fraud_platform.defs.jobs import SENSOR_STATUS

from fraud_platform.defs.resources import MonitoringResource
from fraud_platform.defs.retraining import training_data_unchanged

TRIGGER_TAG = "fraud_platform/retrain_trigger"
DRIFTING_TAG = "fraud_platform/drifting_features"


def _metadata_value(event: dg.EventLogEntry, name: str):
    materialization = event.asset_materialization
    if materialization is None or name not in materialization.metadata:
        raise ValueError(f"{event.dagster_event.asset_key.to_user_string()} materialization in run {event.run_id} lacks metadata {name!r}")
    return materialization.metadata[name].value


@dg.asset_sensor(
    asset_key=dg.AssetKey("feature_drift_report"),
    job_name="retrain_model",
    name="retrain_on_feature_drift",
    default_status=SENSOR_STATUS,
    description="Requests retrain_model when a drift report shows a feature PSI above the threshold.",
)
def retrain_on_feature_drift(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, monitoring: MonitoringResource):
    max_psi = float(_metadata_value(asset_event, "max_psi"))
    drifting = list(_metadata_value(asset_event, "drifting_features"))
    if max_psi <= monitoring.psi_threshold:
        return dg.SkipReason(f"max PSI {max_psi:.3f} <= threshold {monitoring.psi_threshold}: no drift")
    if (unchanged := training_data_unchanged(context.instance)) is not None:
        return dg.SkipReason(f"max PSI {max_psi:.3f} over threshold but {unchanged}")
    return dg.RunRequest(
        run_key=f"drift:{asset_event.run_id}",
        tags={TRIGGER_TAG: "feature_drift", DRIFTING_TAG: ",".join(drifting)[:4000], "fraud_platform/max_psi": f"{max_psi:.4f}"},
    )


@dg.asset_sensor(
    asset_key=dg.AssetKey("live_model_performance"),
    job_name="retrain_model",
    name="retrain_on_live_performance_decay",
    default_status=SENSOR_STATUS,
    description="Requests retrain_model when the champion's live average precision falls below the floor.",
)
def retrain_on_live_performance_decay(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, monitoring: MonitoringResource):
    materialization = asset_event.asset_materialization
    if materialization is not None and materialization.metadata.get("matured_scored_rows") is not None and materialization.metadata["matured_scored_rows"].value == 0:
        return dg.SkipReason("no matured scored transactions yet")
    live_ap = float(_metadata_value(asset_event, "live_ap"))
    version = str(_metadata_value(asset_event, "model_version"))
    if not live_ap < monitoring.min_live_ap:
        return dg.SkipReason(f"live AP {live_ap:.3f} of version {version} >= floor {monitoring.min_live_ap}")
    if (unchanged := training_data_unchanged(context.instance)) is not None:
        return dg.SkipReason(f"live AP {live_ap:.3f} below floor but {unchanged}")
    return dg.RunRequest(
        run_key=f"live-ap:{asset_event.run_id}",
        tags={TRIGGER_TAG: "live_performance_decay", "fraud_platform/live_ap": f"{live_ap:.4f}", "fraud_platform/model_version": version},
    )
