"""Dagster definitions for the features domain: feature snapshot, its online materialisation, training matrix."""

import dagster as dg

from fraud_platform.defs.features.assets import feature_snapshot, online_feature_snapshot, transaction_features

defs = dg.Definitions(assets=[feature_snapshot, online_feature_snapshot, transaction_features])
