"""Owners shown on every asset in the Dagster UI, one per domain team."""

DATA_ENGINEERING = "team:data-engineering"
ANALYTICS_ENGINEERING = "team:analytics-engineering"
ML_ENGINEERING = "team:ml-engineering"
