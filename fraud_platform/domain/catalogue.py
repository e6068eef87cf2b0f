"""The lake's catalogue: every dataset named once, the one label-maturity rule, and the one
raw -> processed row derivation.

Pure Python (pandas/pyarrow only, no Dagster, Spark or Kafka) so landing, the Spark zones, the
quality suites, dbt sources, monitoring, features, the streaming scorer and the CLI all read the
same entries instead of repeating ``("processed", "transactions")`` string pairs. Spark applies
``derive_processed_rows`` through ``mapInPandas`` (``processing.transform``) and the scorer calls it
directly, so a row derived in the lake and in the stream is the same row by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_platform.domain.features import FEATURE_COLUMNS
from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import (
    FX_TO_EUR,
    PROCESSED_TRANSACTIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_LABELS_SCHEMA,
    RAW_TRANSACTIONS_SCHEMA,
    SANDBOX_TRANSACTIONS_SCHEMA,
)

_TS = pa.timestamp("us", tz="UTC")


# -- datasets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """One lake dataset: ``<zone>/<name>/date=YYYY-MM-DD/*.parquet`` holding rows of ``schema``.

    ``asset_key`` is the Dagster asset (and dbt source table) that materialises it; ``partition_column``
    is the column whose UTC date names the folder; ``dedupe_keys`` identify a row (duplicates of them
    are re-deliveries, not new facts)."""

    asset_key: str
    zone: str
    name: str
    schema: pa.Schema | None
    partition_column: str | None = None
    dedupe_keys: tuple[str, ...] = ()
    # Dataset this one is built from: a partition missing in both is an empty day, not a failure.
    source: "Dataset | None" = field(default=None, compare=False)

    @property
    def prefix(self) -> str:
        return f"{self.zone}/{self.name}"

    def partition_prefix(self, day: date | str) -> str:
        return f"{self.prefix}/date={day if isinstance(day, str) else day.isoformat()}"

    @property
    def manifest_prefix(self) -> str:
        """Where the landing engine commits its batches for this dataset."""
        return f"_manifests/{self.prefix}"

    @property
    def quality_prefix(self) -> str:
        """Where blocking quality checks record each partition's verdict (see ``quality.gate``)."""
        return f"_quality/{self.prefix}"

    def __str__(self) -> str:
        return self.prefix


RAW_TRANSACTIONS = Dataset("raw_transactions", "raw", "transactions", RAW_TRANSACTIONS_SCHEMA, "event_time", ("transaction_id",))
RAW_LABELS = Dataset("raw_labels", "raw", "labels", RAW_LABELS_SCHEMA, "known_at", ("transaction_id", "label_type"))
QUARANTINED_TRANSACTIONS = Dataset(
    "quarantined_transactions", "quarantine", "transactions", QUARANTINE_SCHEMA, "dead_lettered_at",
    ("source_topic", "source_partition", "source_offset"),
)
QUARANTINED_LABELS = Dataset(
    "quarantined_labels", "quarantine", "labels", QUARANTINE_SCHEMA, "dead_lettered_at",
    ("source_topic", "source_partition", "source_offset"),
)
PROCESSED_TRANSACTIONS = Dataset(
    "processed_transactions", "processed", "transactions", PROCESSED_TRANSACTIONS_SCHEMA, "event_time",
    ("transaction_id",), source=RAW_TRANSACTIONS,
)
SANDBOX_TRANSACTIONS = Dataset(
    "sandbox_transactions", "sandbox", "transactions", SANDBOX_TRANSACTIONS_SCHEMA, "event_time",
    ("transaction_id",), source=PROCESSED_TRANSACTIONS,
)
TRANSACTION_FEATURES = Dataset("transaction_features", "features", "transaction_features", None, "event_time", ("transaction_id",))
# Rows of immature days with an analyst verdict, with their features: training rows beside the
# matured matrix, kept apart so evaluation, drift references and the EDA see matured days only.
# Written by the same asset, so not in DATASETS (one entry per asset).
VERDICT_FEATURES = Dataset("transaction_features", "features", "verdict_features", None, "event_time", ("transaction_id",))
# The online snapshot is a versioned folder (features/online/version=V), not a daily dataset.
ONLINE_FEATURES_PREFIX = "features/online"
ONLINE_SNAPSHOT_POINTER = f"{ONLINE_FEATURES_PREFIX}/_latest.json"

# What the streaming scorer writes: the processed row, the features it scored with, the decision.
SCORING_COLUMNS = [
    pa.field("score", pa.float64(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("block_threshold", pa.float64(), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("feature_snapshot_version", pa.string(), nullable=True),
    pa.field("processing_time", _TS, nullable=False),
    pa.field("_kafka_partition", pa.int32(), nullable=False),
    pa.field("_kafka_offset", pa.int64(), nullable=False),
]
DERIVED_COLUMNS = [f.name for f in PROCESSED_TRANSACTIONS_SCHEMA][: PROCESSED_TRANSACTIONS_SCHEMA.get_field_index("is_account_verification") + 1]
SCORED_TRANSACTIONS_SCHEMA = pa.schema(
    [
        *(PROCESSED_TRANSACTIONS_SCHEMA.field(name) for name in DERIVED_COLUMNS),
        # The online features the model saw; nullable so files from scorers that predate them still read.
        *(pa.field(name, pa.float64(), nullable=True) for name in FEATURE_COLUMNS),
        *SCORING_COLUMNS,
    ]
)
SCORED_TRANSACTIONS = Dataset("scored_transactions", "scored", "transactions", SCORED_TRANSACTIONS_SCHEMA, "event_time", ("transaction_id",))

DATASETS: dict[str, Dataset] = {
    d.asset_key: d
    for d in (
        RAW_TRANSACTIONS, RAW_LABELS, QUARANTINED_TRANSACTIONS, QUARANTINED_LABELS, PROCESSED_TRANSACTIONS,
        SANDBOX_TRANSACTIONS, TRANSACTION_FEATURES, SCORED_TRANSACTIONS,
    )
}
ZONES = ("raw", "processed", "sandbox", "quarantine", "scored", "features")


# -- label maturity -------------------------------------------------------------------------------
def matured_at(day: date, maturity_days: int) -> datetime:
    """Moment partition ``day`` matures: ``day + 1 + maturity_days`` at 00:00 UTC.

    Every chargeback or confirmation the platform waits for has then had ``maturity_days`` full days
    to arrive; labels known later do not count (a model would learn what it cannot know live)."""
    return datetime.combine(day + timedelta(days=1 + maturity_days), time(), tzinfo=timezone.utc)


def is_matured(day: date, maturity_days: int, reference_time: datetime | None) -> bool:
    """Whether ``day``'s labels are final at ``reference_time`` (None = nothing is matured)."""
    return reference_time is not None and matured_at(day, maturity_days) <= reference_time


def split_matured(days: Iterable[date], maturity_days: int, reference_time: datetime | None) -> tuple[list[date], list[date]]:
    """(matured, immature) among ``days``, each sorted."""
    ordered = sorted(days)
    matured = [d for d in ordered if is_matured(d, maturity_days, reference_time)]
    return matured, [d for d in ordered if d not in set(matured)]


def last_matured_day(maturity_days: int, reference_time: datetime) -> date:
    """Newest day whose labels are final at ``reference_time``."""
    return (reference_time - timedelta(days=1 + maturity_days)).date()


ANALYST_LABEL_TYPES = ("analyst_confirmed", "analyst_legitimate")


def label_is_final(event_date: pd.Series, label_type: pd.Series, label_known_at: pd.Series, maturity_days: int,
                   reference_time: datetime, verdict_known_at: pd.Series | None = None) -> np.ndarray:
    """Per transaction: may training use its label at ``reference_time``?

    Yes when its partition has matured (every delayed chargeback has had time to arrive), or when an
    analyst verdict on it was known before ``reference_time``: an investigated alert is labelled at
    once (the Fraud Detection Handbook's feedback samples), which is the whole point of the feedback
    loop; waiting for maturity would make verdicts no fresher than chargebacks. A chargeback alone
    waits for maturity: taking only the frauds of an immature day would teach a fraud rate no day
    has. A later chargeback still overrides the verdict (``label_outcomes``), so the outcome seen
    here already is the chargeback's once it has arrived.

    ``verdict_known_at`` is when the row's first verdict became known (NaT: none; see
    ``first_verdicts``); by default the outcome itself, when it is a verdict - which misses a
    verdict a chargeback has since overridden."""
    days = pd.Series(pd.to_datetime(pd.Series(event_date)).dt.date.to_numpy())
    matured = days.map({d: is_matured(d, maturity_days, reference_time) for d in days.unique()}).to_numpy(dtype=bool)
    if verdict_known_at is None:
        is_verdict = pd.Series(label_type).isin(ANALYST_LABEL_TYPES).to_numpy(dtype=bool)
        verdict_known_at = pd.Series(label_known_at).where(is_verdict)
    known = pd.to_datetime(pd.Series(verdict_known_at), utc=True) < pd.Timestamp(reference_time)
    return matured | known.fillna(False).to_numpy(dtype=bool)


def first_verdicts(transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Per row of ``transactions``, when its first analyst verdict became known (NaT: none), from
    raw label rows (``transaction_id``, ``label_type``, ``known_at``), not the folded outcome: a
    chargeback that overrode a "legitimate" verdict hides it there, yet the row was reviewed.
    Verdicts before the transaction's own time do not count (as in ``label_outcomes``)."""
    verdicts = labels.loc[labels["label_type"].isin(ANALYST_LABEL_TYPES), ["transaction_id", "known_at"]]
    first = verdicts.assign(transaction_id=verdicts["transaction_id"].str.strip()).groupby("transaction_id")["known_at"].min()
    at = pd.to_datetime(transactions["transaction_id"].map(first), utc=True)
    return at.where(at >= pd.to_datetime(transactions["event_time"], utc=True))


def label_days(day: date, maturity_days: int) -> list[date]:
    """Label partitions (by known date) that can change partition ``day``: ``day .. day + maturity``."""
    return [day + timedelta(days=i) for i in range(maturity_days + 1)]


# -- raw -> processed ---------------------------------------------------------------------------
class DerivationError(ValueError):
    """A raw row the processed zone cannot represent; the message names field, value and record."""


_entity_key = lru_cache(maxsize=500_000)(entity_key)  # ids repeat: hash each once per process
_FX = pd.Series(FX_TO_EUR, dtype="float64")


def _text(events: pa.Table, column: str, case: str | None = None) -> np.ndarray:
    """Trimmed (and optionally re-cased) strings, computed in Arrow (C++), returned as numpy objects."""
    values = pc.utf8_trim_whitespace(events.column(column))
    if case == "upper":
        values = pc.utf8_upper(values)
    elif case == "lower":
        values = pc.utf8_lower(values)
    return values.to_numpy(zero_copy_only=False)


def derive_processed_rows(raw: pd.DataFrame | pa.Table, partition_dates: pd.Series | None = None) -> pd.DataFrame:
    """Validated raw transactions -> the processed zone's transaction columns (``DERIVED_COLUMNS``).

    Trimmed ids, upper-case currency/country, lower-case channel, pseudonymous customer/card keys,
    EUR amounts, UTC time parts. ``partition_dates`` (the raw folder's date per row, when reading
    the lake) must equal each row's event date: anything else is a landing bug and raises."""
    events = raw if isinstance(raw, pa.Table) else pa.Table.from_pandas(raw, preserve_index=False)
    tid = _text(events, "transaction_id")
    event_time = pd.DatetimeIndex(pd.to_datetime(events.column("event_time").to_pandas(coerce_temporal_nanoseconds=True), utc=True))
    event_date = event_time.floor("D")
    if partition_dates is not None:
        filed = pd.DatetimeIndex(pd.to_datetime(partition_dates))
        filed = filed.tz_localize("UTC") if filed.tz is None else filed
        wrong = np.asarray(filed != event_date)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise DerivationError(
                f"event_time={event_time[i].strftime('%Y-%m-%d %H:%M:%S')} of transaction_id={tid[i]} "
                f"is outside its raw partition date={filed[i].date().isoformat()}"
            )
    currency = _text(events, "currency", "upper")
    rate = _FX.reindex(currency).to_numpy()
    if np.isnan(rate).any():
        i = int(np.flatnonzero(np.isnan(rate))[0])
        raise DerivationError(f"no FX rate for currency={currency[i]} (transaction_id={tid[i]})")
    amount = events.column("amount").cast(pa.float64()).to_numpy()
    hour = np.asarray(event_time.hour, dtype="int32")
    dow = np.asarray(event_time.dayofweek, dtype="int32")
    return pd.DataFrame(
        {
            "transaction_id": tid,
            "event_time": event_time,
            "event_date": event_date,
            "customer_key": [_entity_key(c) for c in events.column("customer_id").to_pylist()],
            "card_key": [_entity_key(c) for c in events.column("card_token").to_pylist()],
            "terminal_id": _text(events, "terminal_id"),
            "amount": amount,
            "currency": currency,
            "amount_eur": amount * rate,
            "merchant_category": _text(events, "merchant_category"),
            "channel": _text(events, "channel", "lower"),
            "country": _text(events, "country", "upper"),
            "hour": hour,
            "day_of_week": dow,
            "is_weekend": dow >= 5,
            "is_night": (hour >= 22) | (hour < 6),
            "is_account_verification": amount == 0,  # a card check, no charge (accepted, see validation)
        }
    )
