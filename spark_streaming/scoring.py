"""Scoring of one micro-batch of raw Kafka records, free of Spark so the same code runs inside
``foreachBatch`` and in the plain-Python reference loop of the benchmark.

Every input record ends in exactly one place: a scored row, or a dead letter whose headers say
why (the ingestion validator and duplicate rule, shared via ``fraud_platform.domain.validation``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.features import FeatureSnapshot
from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import FX_TO_EUR
from fraud_platform.domain.validation import DuplicateTracker, Rejection, TransactionValidator

from spark_streaming.champion import ActiveModel

log = logging.getLogger(__name__)

DECISIONS = ("approve", "review", "block")
# Customers and cards repeat across transactions; hashing each id once saves a third of frame building.
_entity_key = lru_cache(maxsize=500_000)(entity_key)
PREDICTION_FIELDS = (
    "transaction_id", "score", "decision", "threshold", "model_name", "model_version",
    "feature_snapshot_version", "event_time", "processing_time",
)


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
        self.validator = TransactionValidator()
        self.tracker = tracker or DuplicateTracker()
        self.block_threshold = block_threshold
        self.review_threshold = review_threshold

    def thresholds(self, model: ActiveModel) -> tuple[float, float]:
        review = self.review_threshold if self.review_threshold is not None else model.info.threshold
        review = 0.5 if review is None else review
        return review, max(review, self.block_threshold)

    def score(self, batch_id: int, records: pa.Table, model: ActiveModel) -> ScoredBatch:
        keys = records.column("key").to_pylist()
        values = records.column("value").to_pylist()
        partitions = records.column("partition").to_pylist()
        offsets = records.column("offset").to_pylist()
        kafka_ts = records.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000

        events, kept, dead = [], [], []
        seen: set[str] = set()
        for i, raw in enumerate(values):
            parsed = self.validator.parse(raw)
            if not isinstance(parsed, Rejection):
                tx_id = parsed.transaction_id
                if tx_id in seen or tx_id in self.tracker:
                    parsed = DuplicateTracker.rejection(tx_id)
                else:
                    seen.add(tx_id)
                    events.append(parsed)
                    kept.append(i)
                    continue
            dead.append(DeadLetter(keys[i], raw, partitions[i], offsets[i], parsed))

        frame = processed_frame(events)
        frame["_kafka_partition"] = np.asarray([partitions[i] for i in kept], dtype="int32")
        frame["_kafka_offset"] = np.asarray([offsets[i] for i in kept], dtype="int64")
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
            kafka_timestamps_ms=kafka_ts[kept] if len(kept) else np.zeros(0, dtype="int64"),
            model=model, late_events=late, counts_by_decision={d: int(counts.get(d, 0)) for d in DECISIONS},
        )

    def remember(self, batch: ScoredBatch) -> None:
        """Called after the batch's sinks succeeded, so a failed batch leaves no duplicate memory."""
        self.tracker.update(batch.scored["transaction_id"])


def processed_frame(events: list) -> pd.DataFrame:
    """Validated events in the processed zone's shape (pseudonymised keys, EUR amounts, time parts)."""
    event_time = pd.to_datetime([e.event_time for e in events], utc=True) if events else pd.to_datetime([], utc=True)
    amount = np.asarray([float(e.amount) for e in events], dtype="float64")
    currency = [e.currency for e in events]
    hour = np.asarray(event_time.hour, dtype="int32")
    dow = np.asarray(event_time.dayofweek, dtype="int32")
    return pd.DataFrame(
        {
            "transaction_id": [e.transaction_id for e in events],
            "event_time": event_time,
            "event_date": event_time.floor("D"),  # midnight UTC: the scored zone's partition day
            "customer_key": [_entity_key(e.customer_id) for e in events],
            "card_key": [_entity_key(e.card_token) for e in events],
            "terminal_id": [e.terminal_id for e in events],
            "amount": amount,
            "currency": currency,
            "amount_eur": amount * np.asarray([FX_TO_EUR[c] for c in currency], dtype="float64"),
            "merchant_category": [e.merchant_category for e in events],
            "channel": [e.channel for e in events],
            "country": [e.country for e in events],
            "hour": hour,
            "day_of_week": dow,
            "is_weekend": dow >= 5,
            "is_night": (hour >= 22) | (hour < 6),
        }
    )


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


def _iso(values: pd.Series) -> np.ndarray:
    """ISO 8601 UTC with microseconds and 'Z', vectorised (strftime per value is the slow part)."""
    stamps = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return np.char.add(np.datetime_as_string(stamps, unit="us"), "Z")


def prediction_records(scored: pd.DataFrame) -> list[bytes]:
    """One JSON document per prediction (the ``fraud_predictions`` topic contract)."""
    out = scored[list(PREDICTION_FIELDS)].copy()
    out["event_time"] = _iso(out["event_time"])
    out["processing_time"] = _iso(out["processing_time"])
    text = out.to_json(orient="records", lines=True, double_precision=15)
    return [line.encode() for line in text.splitlines()] if len(out) else []
