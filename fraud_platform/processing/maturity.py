"""What a partition's maturity is judged against (the rule itself is ``catalogue.matured_at``).

Maturity is judged against the labels watermark (newest ``known_at`` that landed) so a stalled label
feed never makes a partition look final; ``now`` is the alternative for feeds that are known live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Literal

import pyarrow.compute as pc

from fraud_platform.domain.catalogue import RAW_LABELS, matured_at, split_matured
from fraud_platform.infra.lake import LakeStore

__all__ = ["MaturityPolicy", "labels_watermark", "matured_at"]


def labels_watermark(store: LakeStore) -> datetime | None:
    """Newest ``known_at`` in the raw labels zone (read from the newest partition only)."""
    for day in reversed(store.partition_dates(RAW_LABELS)):
        table = store.read_partition(RAW_LABELS, day, columns=["known_at"])
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
        return split_matured(days, self.maturity_days, reference_time)
