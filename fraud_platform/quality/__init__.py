"""Great Expectations (GX Core 1.x) suites for the lake zones, free of Dagster so they can run from
checks, notebooks or CI alike. ``suites`` builds the expectations; ``runner`` validates a partition."""

from fraud_platform.quality.runner import FailedExpectation, ValidationOutcome, load_partition_frame, validate_partitions
from fraud_platform.quality.suites import DATASETS, DatasetSuite, PartitionContext, QualityBounds

__all__ = [
    "DATASETS",
    "DatasetSuite",
    "FailedExpectation",
    "PartitionContext",
    "QualityBounds",
    "ValidationOutcome",
    "load_partition_frame",
    "validate_partitions",
]
