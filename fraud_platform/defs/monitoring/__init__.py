"""Dagster definitions for the monitoring domain: scored traffic, drift, live performance."""

import dagster as dg

from fraud_platform.defs.monitoring.assets import feature_drift_report, live_model_performance, scored_transactions
from fraud_platform.defs.monitoring.sensors import retrain_on_feature_drift, retrain_on_live_performance_decay

defs = dg.Definitions(
    assets=[scored_transactions, feature_drift_report, live_model_performance],
    sensors=[retrain_on_feature_drift, retrain_on_live_performance_decay],
)
