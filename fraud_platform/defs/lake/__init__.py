"""Dagster definitions for the lake domain."""

import dagster as dg

defs = dg.Definitions()
