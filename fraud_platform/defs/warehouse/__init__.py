"""Dagster definitions for the warehouse domain."""

import dagster as dg

defs = dg.Definitions()
