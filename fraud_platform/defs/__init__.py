"""Dagster definitions grouped by domain. Each sub-package exports ``defs`` (a ``dg.Definitions``
with its assets, checks, sensors and schedules); ``fraud_platform.definitions`` merges them with the
environment's resources into the one code location."""
