"""Scoring of one micro-batch of raw Kafka records, free of Spark so the same code runs inside
``foreachBatch`` and in the plain-Python reference loop of the benchmark.

Every input record ends in exactly one place: a scored row, or a dead letter whose headers say
why (the ingestion validator, applied a batch at a time by ``fraud_platform.domain.batch_validation``,
and the duplicate rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.features import FeatureSnapshot
from fraud_platform.domain.catalogue import derive_processed_rows
from fraud_platform.domain.json_lines import finite_floats, iso_utc, json_strings, json_strings_or_null
from fraud_platform.domain.validation import DuplicateTracker, Rejection, TransactionValidator
from fraud_platform.settings import IngestionSettings

from spark_streaming.champion import ActiveModel

log = logging.getLogger(__name__)

DECISIONS = ("approve", "review", "block")


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    rejection: Rejection


@dataclass
class ScoredBatch:
    """Result of one micro-batch: ``scored`` has the transaction, its prediction and Kafka lineage."""

    batch_id: int
    rows_in: int
    scored: pd.DataFrame
    dead_letters: list[DeadLetter]
    kafka_timestamps_ms: np.ndarray
    model: ActiveModel | None
    late_events: int = 0
    counts_by_decision: dict[str, int] = field(default_factory=dict)

    def reconcile(self) -> None:
        """Fail the batch (so it is retried, not half-committed) if any record went missing."""
        if len(self.scored) + len(self.dead_letters) != self.rows_in:
            raise RuntimeError(
                f"batch {self.batch_id}: {self.rows_in} records in but {len(self.scored)} scored + "
                f"{len(self.dead_letters)} dead-lettered"
            )


def decide(scores: np.ndarray, review: float, block: float) -> np.ndarray:
    """approve below ``review``, block at/above ``block``, review in between."""
    return np.select([scores >= block, scores >= review], ["block", "review"], default="approve")


class BatchScorer:
    """Validate, deduplicate, featurise and score raw records; holds the duplicate memory."""

    def __init__(self, block_threshold: float, review_threshold: float | None = None, tracker: DuplicateTracker | None = None) -> None:
        self.validator = TransactionValidator(accept_zero_amount=IngestionSettings.from_env().accept_zero_amount)
        self.tracker = tracker or DuplicateTracker()
        self.block_threshold = block_threshold
        self.review_threshold = review_threshold

    def thresholds(self, model: ActiveModel) -> tuple[float, float]:
        review = self.review_threshold if self.review_threshold is not None else model.info.threshold
        review = 0.5 if review is None else review
        return review, max(review, self.block_threshold)

    def score(self, batch_id: int, records: pa.Table, model: ActiveModel) -> ScoredBatch:
        values = records.column("value").to_pylist()
        partitions = records.column("partition").to_numpy(zero_copy_only=False)
        offsets = records.column("offset").to_numpy(zero_copy_only=False)
        kafka_ts = records.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000

        validated = validate_transactions(values, self.validator)
        refused = dict(validated.rejections)
        unique = np.ones(len(validated.positions), dtype=bool)
        seen: set[str] = set()
        for j, tx_id in enumerate(validated.accepted.column("transaction_id").to_pylist()):
            if tx_id in seen or tx_id in self.tracker:
                unique[j] = False
                refused[int(validated.positions[j])] = DuplicateTracker.rejection(tx_id)
            else:
                seen.add(tx_id)
        kept = validated.positions[unique]
        keys = records.column("key")
        dead = [
            DeadLetter(keys[i].as_py(), values[i], int(partitions[i]), int(offsets[i]), rejection)
            for i, rejection in sorted(refused.items())
        ]

        frame = processed_frame(validated.accepted.filter(pa.array(unique)))
        frame["_kafka_partition"] = partitions[kept].astype("int32")
        frame["_kafka_offset"] = offsets[kept].astype("int64")
        late = 0
        if len(frame):
            features, late = online_features(model.snapshot, frame)
            scores = np.asarray(model.predict(features[list(model.info.features)]), dtype="float64")
        else:
            scores = np.zeros(0)
        review, block = self.thresholds(model)
        frame["score"] = scores
        frame["decision"] = decide(scores, review, block) if len(frame) else np.asarray([], dtype=object)
        frame["threshold"] = review
        frame["block_threshold"] = block
        frame["model_name"] = model.model_name
        frame["model_version"] = model.version
        frame["feature_snapshot_version"] = model.snapshot_version
        frame["processing_time"] = pd.Timestamp(datetime.now(timezone.utc))
        counts = frame["decision"].value_counts().to_dict() if len(frame) else {}
        return ScoredBatch(
            batch_id=batch_id, rows_in=len(values), scored=frame, dead_letters=dead,
            kafka_timestamps_ms=kafka_ts[kept],
            model=model, late_events=late, counts_by_decision={d: int(counts.get(d, 0)) for d in DECISIONS},
        )

    def remember(self, batch: ScoredBatch) -> None:
        """Called after the batch's sinks succeeded, so a failed batch leaves no duplicate memory."""
        self.tracker.update(batch.scored["transaction_id"])


def processed_frame(events: pa.Table) -> pd.DataFrame:
    """Validated events (``ACCEPTED_SCHEMA``) in the processed zone's shape: the catalogue's one
    raw -> processed derivation (``event_date`` is midnight UTC, the scored zone's partition day)."""
    return derive_processed_rows(events)


def online_features(snapshot: FeatureSnapshot, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Shared online features; events older than the snapshot are scored as of the snapshot time.

    Partitions interleave, so an event can be older than the state it is scored against. It is
    still scored (never dropped) with its time clamped to the snapshot; the count is reported.
    """
    batch = frame[["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]]
    late = batch["event_time"] < snapshot.as_of
    if late.any():
        batch = batch.assign(event_time=batch["event_time"].where(~late, snapshot.as_of))
    return snapshot.features(batch), int(late.sum())


def roll_snapshot(snapshot: FeatureSnapshot, frame: pd.DataFrame) -> FeatureSnapshot:
    """The snapshot advanced with a scored batch (late events included at their clamped time)."""
    if frame.empty:
        return snapshot
    batch = frame[["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]]
    batch = batch.assign(event_time=batch["event_time"].where(batch["event_time"] >= snapshot.as_of, snapshot.as_of))
    return snapshot.update(batch)


_PREDICTION_JSON = (
    '{"transaction_id":"%s","score":%r,"decision":"%s","threshold":%r,"model_name":"%s","model_version":"%s",'
    '"feature_snapshot_version":%s,"event_time":"%s","processing_time":"%s"}'
)


def prediction_records(scored: pd.DataFrame) -> list[bytes]:
    """One JSON document per prediction (the ``fraud_predictions`` topic contract)."""
    if scored.empty:
        return []
    rows = zip(
        json_strings(scored["transaction_id"]), finite_floats(scored["score"]), json_strings(scored["decision"]),
        finite_floats(scored["threshold"]), json_strings(scored["model_name"]), json_strings(scored["model_version"]),
        json_strings_or_null(scored["feature_snapshot_version"]), iso_utc(scored["event_time"]), iso_utc(scored["processing_time"]),
    )
    return [(_PREDICTION_JSON % row).encode() for row in rows]
