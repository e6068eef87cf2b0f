"""Dagster definitions for the features domain: online snapshot and training matrix."""

import dagster as dg

from fraud_platform.defs.features.assets import customer_features, terminal_features, transaction_features

defs = dg.Definitions(assets=[customer_features, terminal_features, transaction_features])
