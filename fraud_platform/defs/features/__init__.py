"""Dagster definitions for the features domain."""

import dagster as dg

defs = dg.Definitions()
