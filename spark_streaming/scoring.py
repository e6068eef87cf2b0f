"""Scoring of one micro-batch of raw Kafka records, free of Spark so the same code runs inside
``foreachBatch`` and in the plain-Python reference loop of the benchmark.

Every input record ends in exactly one place: a scored row, or a dead letter whose headers say
why (the ingestion validator, applied a batch at a time by ``fraud_platform.domain.batch_validation``,
and the duplicate rule).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.catalogue import derive_processed_rows
from fraud_platform.domain.json_lines import finite_floats, iso_utc, json_strings, json_strings_or_null
from fraud_platform.domain.validation import DuplicateTracker, Rejection, TransactionValidator
from fraud_platform.settings import IngestionSettings

from spark_streaming.champion import ActiveModel

if TYPE_CHECKING:
    from spark_streaming.online import FeatureStore

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
    # transaction_id -> its reasons in full (feature, value, contribution, direction, text) for the
    # decision log; ``scored["reasons"]`` keeps the texts only (the topic and alert contract)
    reason_details: dict[str, list[dict]] = field(default_factory=dict)

    def reconcile(self) -> None:
        """Fail the batch (so it is retried, not half-committed) if any record went missing."""
        if len(self.scored) + len(self.dead_letters) != self.rows_in:
            raise RuntimeError(
                f"batch {self.batch_id}: {self.rows_in} records in but {len(self.scored)} scored + "
                f"{len(self.dead_letters)} dead-lettered"
            )

    @property
    def counts_by_decision(self) -> dict[str, int]:
        counts = self.scored["decision"].value_counts().to_dict() if len(self.scored) else {}
        return {d: int(counts.get(d, 0)) for d in DECISIONS}

    def dead_letter_failed(self, failed: dict[str, str], sink: str, records: pa.Table) -> None:
        """Move rows a sink refused (``transaction_id -> error``) from ``scored`` to the dead letters.

        The rest of the batch proceeds; the refused record keeps its original bytes and says which
        sink refused it and why (rule ``sink_failed``).
        """
        if not failed:
            return
        refused = self.scored["transaction_id"].isin(list(failed)).to_numpy()
        offsets = records.column("offset").to_numpy(zero_copy_only=False)
        position = {int(o): i for i, o in enumerate(offsets)}
        rows = self.scored[refused]
        for tx_id, partition, offset in zip(rows["transaction_id"], rows["_kafka_partition"], rows["_kafka_offset"]):
            i = position[int(offset)]
            rejection = Rejection("sink_failed", sink, str(tx_id), f"{sink} refused the record: {failed[tx_id]}")
            self.dead_letters.append(DeadLetter(records.column("key")[i].as_py(), records.column("value")[i].as_py(),
                                                int(partition), int(offset), rejection))
        self.scored = self.scored[~refused]
        self.kafka_timestamps_ms = self.kafka_timestamps_ms[~refused]


def reasons_of(model: ActiveModel, features: pd.DataFrame | None, flagged: np.ndarray,
               ids: list[str] | None = None) -> tuple[list[str], dict[str, list[dict]]]:
    """Top-3 readable reasons (JSON list of texts) for review/block rows; ``[]`` for approvals
    (explaining every approval would cost more than scoring it) and for models explain() cannot
    take apart. Also the same reasons in full by transaction id (``ids``), for the decision log."""
    reasons, details = ["[]"] * len(flagged), {}
    if features is None or model.estimator is None or not flagged.any():
        return reasons, details
    from fraud_platform.ml.explain import explain

    try:
        explained = explain(model.estimator, features[flagged], k=3)
    except TypeError:  # an estimator explain() does not support: scoring goes on without reasons
        return reasons, details
    for i, row in zip(np.flatnonzero(flagged), explained):
        reasons[i] = json.dumps([reason.text for reason in row])
        if ids is not None:
            details[ids[i]] = [reason.as_dict() for reason in row]
    return reasons, details


def decide(scores: np.ndarray, review: float, block: float) -> np.ndarray:
    """approve below ``review``, block at/above ``block``, review in between."""
    return np.select([scores >= block, scores >= review], ["block", "review"], default="approve")


def review_block(review_threshold: float | None, block_threshold: float, champion_threshold: float | None) -> tuple[float, float]:
    """(review, block) thresholds: the configured review threshold, else the champion's tag, else 0.5."""
    review = review_threshold if review_threshold is not None else champion_threshold
    review = 0.5 if review is None else review
    return review, max(review, block_threshold)


def stream_validator() -> TransactionValidator:
    """The ingestion validator with the ingestion settings: the scorer and the feature pipeline
    accept exactly what landing accepts."""
    return TransactionValidator(accept_zero_amount=IngestionSettings.from_env().accept_zero_amount)


def score_batch(
    batch_id: int, records: pa.Table, model: ActiveModel, store: "FeatureStore", token: str, review: float, block: float,
    validator: TransactionValidator | None = None,
) -> ScoredBatch:
    """Validate, deduplicate (store claims under ``token``), featurise and score raw Kafka records.

    ``token`` names the task (query, batch, partition): a replay of the task claims its ids again,
    any other task that sees an id already claimed dead-letters it as a duplicate.
    """
    values = records.column("value").to_pylist()
    partitions = records.column("partition").to_numpy(zero_copy_only=False)
    offsets = records.column("offset").to_numpy(zero_copy_only=False)
    kafka_ts = records.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000

    validated = validate_transactions(values, validator or stream_validator())
    refused = dict(validated.rejections)
    ids = validated.accepted.column("transaction_id").to_pylist()
    unique = ~pd.Series(ids, dtype=object).duplicated().to_numpy()  # a record re-sent inside this range
    if unique.any():
        claimed = np.asarray(store.claim_ids([i for i, u in zip(ids, unique) if u], token), dtype=bool)
        unique[np.flatnonzero(unique)[~claimed]] = False
    for j in np.flatnonzero(~unique):
        refused[int(validated.positions[j])] = DuplicateTracker.rejection(ids[j])
    kept = validated.positions[unique]
    keys = records.column("key")
    dead = [
        DeadLetter(keys[i].as_py(), values[i], int(partitions[i]), int(offsets[i]), rejection)
        for i, rejection in sorted(refused.items())
    ]

    frame = processed_frame(validated.accepted.filter(pa.array(unique)))
    frame["_kafka_partition"] = partitions[kept].astype("int32")
    frame["_kafka_offset"] = offsets[kept].astype("int64")
    if len(frame):
        features = store.features(frame).set_index(frame.index)
        used = list(model.info.features)
        scores = np.asarray(model.predict(features[used]), dtype="float64")
        for column in used:  # the scored zone keeps the features the model saw (drift monitoring)
            if column not in frame.columns:
                frame[column] = features[column].to_numpy()
    else:
        scores = np.zeros(0)
    frame["score"] = scores
    frame["decision"] = decide(scores, review, block) if len(frame) else np.asarray([], dtype=object)
    frame["reasons"], details = reasons_of(model, features[used] if len(frame) else None, frame["decision"].to_numpy() != "approve",
                                           frame["transaction_id"].tolist())
    frame["threshold"] = review
    frame["block_threshold"] = block
    frame["model_name"] = model.model_name
    frame["model_version"] = model.version
    frame["feature_snapshot_version"] = store.state_version() if len(frame) else ""
    frame["processing_time"] = pd.Timestamp(datetime.now(timezone.utc))
    return ScoredBatch(batch_id=batch_id, rows_in=len(values), scored=frame, dead_letters=dead,
                       kafka_timestamps_ms=kafka_ts[kept], model=model, reason_details=details)


def processed_frame(events: pa.Table) -> pd.DataFrame:
    """Validated events (``ACCEPTED_SCHEMA``) in the processed zone's shape: the catalogue's one
    raw -> processed derivation (``event_date`` is midnight UTC, the scored zone's partition day)."""
    return derive_processed_rows(events)


_PREDICTION_JSON = (
    '{"transaction_id":"%s","score":%r,"decision":"%s","threshold":%r,"model_name":"%s","model_version":"%s",'
    '"feature_snapshot_version":%s,"event_time":"%s","processing_time":"%s","reasons":%s}'
)


def prediction_records(scored: pd.DataFrame) -> list[bytes]:
    """One JSON document per prediction (the ``fraud_predictions`` topic contract)."""
    if scored.empty:
        return []
    rows = zip(
        json_strings(scored["transaction_id"]), finite_floats(scored["score"]), json_strings(scored["decision"]),
        finite_floats(scored["threshold"]), json_strings(scored["model_name"]), json_strings(scored["model_version"]),
        json_strings_or_null(scored["feature_snapshot_version"]), iso_utc(scored["event_time"]), iso_utc(scored["processing_time"]),
        scored["reasons"].tolist() if "reasons" in scored else ["[]"] * len(scored),
    )
    return [(_PREDICTION_JSON % row).encode() for row in rows]
