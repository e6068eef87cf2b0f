"""Pure Spark transformations for the processed and sandbox lake zones (no Dagster here, so the same
code runs from assets, benchmarks and tests)."""

from fraud_platform.processing.maturity import MaturityPolicy, labels_watermark, matured_at
from fraud_platform.processing.transform import build_processed, build_sandbox, dedupe_transactions
from fraud_platform.processing.zones import (
    ProcessedRun,
    SandboxRun,
    run_processed,
    run_sandbox,
)

__all__ = [
    "MaturityPolicy",
    "ProcessedRun",
    "SandboxRun",
    "build_processed",
    "build_sandbox",
    "dedupe_transactions",
    "labels_watermark",
    "matured_at",
    "run_processed",
    "run_sandbox",
]
