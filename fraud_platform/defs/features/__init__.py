"""Dagster definitions for the features domain: online snapshot and training matrix."""

import dagster as dg

from fraud_platform.defs.features.assets import online_feature_snapshot, transaction_features

defs = dg.Definitions(assets=[online_feature_snapshot, transaction_features])
