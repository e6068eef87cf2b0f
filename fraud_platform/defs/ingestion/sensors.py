"""New raw data -> at most two lake runs, each one run over a partition range.

The sensor compares, per daily partition, the newest materialisation of each input with the newest
of each output (storage ids in the event log, so it is stateless and restarts cleanly):

* processed D is stale when raw transactions of D, or labels known on D .. D + maturity, were
  landed after processed D was last built;
* sandbox D is stale when D has matured (``catalogue.is_matured`` against the labels watermark)
  and its processed partition or label window changed after sandbox D was last built.

Matured stale days become ONE run of processed + sandbox over their range; immature stale days ONE
run of processed only (the sandbox would refuse them). A day that matures later is stale for the
sandbox by the same rule and is picked up by itself. Nothing is requested while a lake run is in
flight, and a plan that already ran (successfully or not) is not requested again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Mapping

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from fraud_platform.defs.jobs import SENSOR_STATUS
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource
from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, RAW_LABELS, RAW_TRANSACTIONS, SANDBOX_TRANSACTIONS
from fraud_platform.domain.catalogue import is_matured, label_days

LAKE_JOB = "build_lake_daily"


@dataclass(frozen=True)
class LakePlan:
    """Partition ranges to rebuild: (first, last) or None."""

    with_sandbox: tuple[str, str] | None
    processed_only: tuple[str, str] | None
    stale_processed: tuple[str, ...] = ()
    stale_sandbox: tuple[str, ...] = ()


def _span(days: list[str]) -> tuple[str, str] | None:
    return (min(days), max(days)) if days else None


def plan_lake_runs(
    raw_transactions: Mapping[str, int], raw_labels: Mapping[str, int], processed: Mapping[str, int],
    sandbox: Mapping[str, int], maturity_days: int, reference_time: datetime | None, valid: set[str],
) -> LakePlan:
    """Which partitions need processed and/or sandbox rebuilt, from newest storage ids per partition."""

    def newest_labels(day: str) -> int:
        return max((raw_labels.get(d.isoformat(), 0) for d in label_days(date.fromisoformat(day), maturity_days)), default=0)

    stale_processed, stale_sandbox = [], []
    for day, landed in raw_transactions.items():
        if day not in valid:
            continue
        inputs = max(landed, newest_labels(day))
        if processed.get(day, 0) < inputs:
            stale_processed.append(day)
        if is_matured(date.fromisoformat(day), maturity_days, reference_time):
            if sandbox.get(day, 0) < max(inputs, processed.get(day, 0)) or day in stale_processed:
                stale_sandbox.append(day)
    immature = [d for d in stale_processed if d not in stale_sandbox and
                not is_matured(date.fromisoformat(d), maturity_days, reference_time)]
    return LakePlan(_span(stale_sandbox), _span(immature), tuple(sorted(stale_processed)), tuple(sorted(stale_sandbox)))


def _range_request(kind: str, span: tuple[str, str], assets: list[dg.AssetKey], watermark: int) -> dg.RunRequest:
    start, end = span
    key = hashlib.sha1(f"{kind}:{start}:{end}:{watermark}".encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"lake-{kind}:{start}..{end}:{key}",
        asset_selection=assets,
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end, "fraud_platform/trigger": "new_raw_data"},
    )


@dg.sensor(
    job_name=LAKE_JOB,
    name="lake_on_new_raw_data",
    minimum_interval_seconds=60,
    default_status=SENSOR_STATUS,
    description="Rebuilds the processed/sandbox partitions new raw data or newly matured labels made stale: "
    "at most one single-run range for matured days (processed + sandbox) and one for immature days (processed).",
)
def lake_on_new_raw_data(context: dg.SensorEvaluationContext, lake: LakeResource, lake_processing: LakeProcessingResource):
    instance = context.instance
    in_flight = instance.get_run_ids(dg.RunsFilter(job_name=LAKE_JOB, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
    if in_flight:
        return dg.SkipReason(f"lake run {in_flight[0]} in flight; re-planning after it finishes")

    def newest(asset: str) -> dict[str, int]:
        return dict(instance.get_latest_storage_id_by_partition(dg.AssetKey(asset), dg.DagsterEventType.ASSET_MATERIALIZATION))

    raw_tx, raw_labels = newest(RAW_TRANSACTIONS.asset_key), newest(RAW_LABELS.asset_key)
    processed, sandbox = newest(PROCESSED_TRANSACTIONS.asset_key), newest(SANDBOX_TRANSACTIONS.asset_key)
    from fraud_platform.defs.partitions import daily_partitions

    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=instance))
    reference = lake_processing.policy().reference_time(lake.store())
    plan = plan_lake_runs(raw_tx, raw_labels, processed, sandbox, lake_processing.label_maturity_days, reference, valid)
    watermark = max([*raw_tx.values(), *raw_labels.values(), 0])
    requests = []
    if plan.with_sandbox:
        requests.append(_range_request("sandbox", plan.with_sandbox, [dg.AssetKey(PROCESSED_TRANSACTIONS.asset_key), dg.AssetKey(SANDBOX_TRANSACTIONS.asset_key)], watermark))
    if plan.processed_only:
        requests.append(_range_request("processed", plan.processed_only, [dg.AssetKey(PROCESSED_TRANSACTIONS.asset_key)], watermark))
    if not requests:
        return dg.SkipReason(f"lake up to date ({len(raw_tx)} raw partitions; label reference {reference})")
    context.log.info(f"stale processed {list(plan.stale_processed)}; stale sandbox {list(plan.stale_sandbox)}")
    return requests
