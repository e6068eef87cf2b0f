"""Dagster definitions for the ml domain."""

import dagster as dg

defs = dg.Definitions()
