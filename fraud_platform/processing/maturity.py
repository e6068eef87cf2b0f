"""When a daily partition's labels are final.

A partition D *matures* at ``D + 1 day + maturity_days`` (00:00 UTC): by then every chargeback or
confirmation the platform waits for has had ``maturity_days`` full days to arrive. Labels known
later do not count (a model trained on them would use information it cannot have in production).
Maturity is judged against the labels watermark (newest ``known_at`` that landed) so a stalled label
feed never makes a partition look final; ``now`` is the alternative for feeds that are known live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal

import pyarrow.compute as pc

from fraud_platform.infra.lake import LakeStore


def matured_at(day: date, maturity_days: int) -> datetime:
    """Moment partition ``day`` matures (labels known before this instant are final)."""
    return datetime.combine(day + timedelta(days=1 + maturity_days), time(), tzinfo=timezone.utc)


def labels_watermark(store: LakeStore) -> datetime | None:
    """Newest ``known_at`` in the raw labels zone (read from the newest partition only)."""
    for day in reversed(store.partition_dates("raw", "labels")):
        table = store.read_partition("raw", "labels", day, columns=["known_at"])
        if table is not None and table.num_rows:
            return pc.max(table["known_at"]).as_py()
    return None


@dataclass(frozen=True)
class MaturityPolicy:
    maturity_days: int = 7
    reference: Literal["labels_watermark", "now"] = "labels_watermark"

    def reference_time(self, store: LakeStore, now: datetime | None = None) -> datetime | None:
        if self.reference == "now":
            return now or datetime.now(timezone.utc)
        return labels_watermark(store)

    def split_matured(self, days: list[date], reference_time: datetime | None) -> tuple[list[date], list[date]]:
        """(matured, immature) days given the reference time (None = nothing is matured)."""
        matured = [d for d in days if reference_time is not None and matured_at(d, self.maturity_days) <= reference_time]
        return matured, [d for d in days if d not in matured]
