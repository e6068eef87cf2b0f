"""Dagster definitions for exploratory analysis: the EDA notebook report."""

import dagster as dg

from fraud_platform.defs.eda.assets import eda_report

defs = dg.Definitions(assets=[eda_report])
