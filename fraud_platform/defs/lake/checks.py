"""Great Expectations suites (``fraud_platform.quality``) wired as Dagster asset checks.

Checks on processed and sandbox are blocking: they guard training inputs, so a failing partition
stops downstream assets in the same run. Raw checks report without blocking (raw keeps re-deliveries
by design and is owned by ingestion). One factory, so every check reports failures the same way.
"""


import time
from dataclasses import asdict
from datetime import date

import dagster as dg

from fraud_platform.defs.partitions import daily_partitions
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource
from fraud_platform.quality import DATASETS
from fraud_platform.quality.gate import record_verdicts
from fraud_platform.quality.runner import validate_partitions


def check_summary(outcomes: list, days_shown: int = 3, failures_shown: int = 3) -> str:
    """One readable line: which partitions failed and why, saying how many more were left out
    (never cut mid-sentence; the full list is in the check's ``failures`` metadata)."""
    failed = [o for o in outcomes if not o.success]
    if not failed:
        return f"{len(outcomes)} partitions passed"
    parts = []
    for o in failed[:days_shown]:
        text = f"{o.day}: " + ", ".join(f.describe() for f in o.failures[:failures_shown])
        if len(o.failures) > failures_shown:
            text += f" (+{len(o.failures) - failures_shown} more failed expectations)"
        parts.append(text)
    more = f"; +{len(failed) - days_shown} more failed partitions" if len(failed) > days_shown else ""
    return f"{len(failed)} of {len(outcomes)} partitions failed: " + "; ".join(parts) + more + " (all in metadata 'failures')."


def gx_partition_check(dataset: str, blocking: bool) -> dg.AssetChecksDefinition:
    """A check running ``dataset``'s GX suite on every partition of the run."""
    suite = DATASETS[dataset]

    @dg.asset_check(
        asset=dg.AssetKey(dataset),
        name="gx_suite",
        blocking=blocking,
        partitions_def=daily_partitions,
        description=(
            f"GX suite on {suite.zone}/{suite.dataset}: contract columns/types/nullability, value sets, ranges, "
            "times within the partition, row count vs previous partition"
            + (", unique transaction_id" if suite.zone != "raw" else "")
            + ("; fraud rate bounds" if dataset == "sandbox_transactions" else "")
            + (" (blocking: guards training inputs; verdicts kept in the lake so later readers skip failed partitions)." if blocking else ".")
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource, lake_processing: LakeProcessingResource) -> dg.AssetCheckResult:
        days = [date.fromisoformat(key) for key in context.partition_keys]
        store = lake.store()
        started = time.monotonic()
        outcomes = validate_partitions(store, suite, days, lake_processing.bounds())
        if blocking:
            record_verdicts(store, suite.target, outcomes, context.run.run_id)
        failed = [o for o in outcomes if not o.success]
        rows = sum(o.rows for o in outcomes)
        context.log.info(f"GX suite on {dataset}: {len(outcomes)} partitions, {rows:,} rows, "
                         f"{len(failed)} failed, {time.monotonic() - started:.1f}s")
        failures = {o.day.isoformat(): [asdict(f) for f in o.failures] for o in failed}
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=check_summary(outcomes),
            metadata={
                "partitions_checked": len(outcomes),
                "partitions_failed": [o.day.isoformat() for o in failed],
                "rows_checked": rows,
                "expectations_evaluated": sum(o.evaluated for o in outcomes),
                "failures": dg.MetadataValue.json(failures),
                "failing_transaction_ids": sorted({t for o in failed for f in o.failures for t in f.transaction_ids})[:50],
            },
        )

    return _check


RAW_CHECKS = [gx_partition_check("raw_transactions", blocking=False), gx_partition_check("raw_labels", blocking=False)]
LAKE_CHECKS = [gx_partition_check("processed_transactions", blocking=True), gx_partition_check("sandbox_transactions", blocking=True)]
