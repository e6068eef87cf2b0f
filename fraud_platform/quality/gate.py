"""The verdicts of blocking checks, kept next to the data so readers in *other* runs honour them.

A blocking Dagster check only stops downstream steps of its own run; features and training run
later, in their own runs. So each check records per partition whether it passed, and for which
files. A reader takes a partition only when its verdict passed *for the files there now*: a failed,
never-checked or rebuilt-since-checked partition is left out, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from fraud_platform.domain.catalogue import Dataset
from fraud_platform.infra.lake import LakeStore
from fraud_platform.quality.runner import ValidationOutcome


def _verdict_key(dataset: Dataset, day: str) -> str:
    return f"{dataset.quality_prefix}/date={day}.json"


def record_verdicts(store: LakeStore, dataset: Dataset, outcomes: list[ValidationOutcome], check_run: str | None = None) -> None:
    for outcome in outcomes:
        day = outcome.day.isoformat()
        store.write_json(_verdict_key(dataset, day), {
            "passed": outcome.success,
            "files": store.parquet_keys(dataset, day),
            "failures": [f.describe() for f in outcome.failures][:10],
            "checked_at": datetime.now(timezone.utc).isoformat(),
            "check_run": check_run,
        })


@dataclass
class GatedPartitions:
    passed: list[str]
    excluded: dict[str, str]  # day -> why it is left out


def gated_partitions(store: LakeStore, dataset: Dataset) -> GatedPartitions:
    """Partitions of ``dataset`` whose blocking check passed on exactly the files present now."""
    passed: list[str] = []
    excluded: dict[str, str] = {}
    for day in store.partition_dates(dataset):
        key = _verdict_key(dataset, day)
        if not store.exists(key):
            excluded[day] = "never checked"
            continue
        verdict = store.read_json(key)
        if verdict["files"] != store.parquet_keys(dataset, day):
            excluded[day] = "rebuilt after its check ran"
        elif not verdict["passed"]:
            excluded[day] = "check failed: " + "; ".join(verdict["failures"][:3])
        else:
            passed.append(day)
    return GatedPartitions(passed, excluded)
