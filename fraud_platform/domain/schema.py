"""The transaction and label event contracts: one source of truth for Kafka payloads, the raw lake
zone's Parquet schema and the validation rules applied on ingestion and in the streaming scorer."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

# Static reference FX rates into the reporting currency (EUR). A production deployment would load a
# daily rates table; the contract (one reporting currency, known currency set) is the same.
FX_TO_EUR: dict[str, float] = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CHF": 1.04,
    "SEK": 0.087,
    "NOK": 0.086,
    "DKK": 0.134,
    "PLN": 0.23,
    "CZK": 0.040,
    "HUF": 0.0025,
    "JPY": 0.0061,
    "CAD": 0.68,
}
CURRENCIES = frozenset(FX_TO_EUR)

# Country -> local currency; the simulator places terminals in these countries.
COUNTRY_CURRENCY: dict[str, str] = {
    "FR": "EUR", "DE": "EUR", "NL": "EUR", "BE": "EUR", "ES": "EUR", "IT": "EUR", "PT": "EUR",
    "GB": "GBP", "CH": "CHF", "SE": "SEK", "NO": "NOK", "DK": "DKK", "PL": "PLN", "CZ": "CZK",
    "HU": "HUF", "US": "USD", "JP": "JPY", "CA": "CAD",
}
COUNTRIES = frozenset(COUNTRY_CURRENCY)

CHANNELS = ("card_present", "contactless", "ecommerce", "atm", "moto")
ChannelLiteral = Literal["card_present", "contactless", "ecommerce", "atm", "moto"]

# ISO 18245 merchant category codes the platform knows about.
MERCHANT_CATEGORIES: dict[str, str] = {
    "5411": "grocery_stores",
    "5812": "restaurants",
    "5541": "service_stations",
    "5311": "department_stores",
    "5732": "electronics",
    "5999": "misc_retail",
    "4111": "transport",
    "4814": "telecom",
    "5944": "jewelry",
    "6011": "atm_cash",
    "7011": "hotels",
    "4722": "travel_agencies",
    "5816": "digital_goods",
    "5912": "pharmacies",
}

# Amounts above this (in EUR) are rejected as absurd: well above any card limit in the simulated market.
MAX_AMOUNT_EUR = 50_000.0
# Events stamped further in the future than this are rejected (producer clock skew tolerance).
MAX_FUTURE_SKEW_SECONDS = 3600
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
# Integer fields land in 32-bit columns (Parquet int32, Postgres integer); wider values are rejected.
MIN_SINK_INT, MAX_SINK_INT = -(2**31), 2**31 - 1

# analyst_*: verdicts from the analyst console (fraud_platform.console.labels); a chargeback overrides them.
LABEL_TYPES = ("chargeback", "confirmed_fraud", "confirmed_legit", "analyst_confirmed", "analyst_legitimate")


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a timezone (ISO 8601 with offset or Z)")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00
        raise PydanticCustomError("timestamp_out_of_range", "{name} is outside the representable date range in UTC", {"name": name}) from None


class TransactionEvent(BaseModel):
    """A card transaction as produced to the ``transactions`` topic (JSON).

    Fraud labels are deliberately *not* part of this event: they arrive later on the ``labels``
    topic, as chargebacks do in real card fraud. ``card_token`` is a keyed hash of the PAN; a raw
    PAN is rejected on ingestion so it can never reach the lake.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: StrictStr = Field(min_length=8, max_length=64)
    event_time: datetime
    customer_id: StrictStr = Field(min_length=1, max_length=64)
    card_token: StrictStr = Field(min_length=8, max_length=128)
    terminal_id: StrictStr = Field(min_length=1, max_length=64)
    amount: StrictFloat | StrictInt
    currency: StrictStr
    merchant_category: StrictStr
    channel: StrictStr
    country: StrictStr
    schema_version: StrictInt = SCHEMA_VERSION

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value, "event_time")

    @property
    def is_account_verification(self) -> bool:
        """A zero-amount authorisation: the card is checked, nothing is charged (accepted by default)."""
        return self.amount == 0


class LabelEvent(BaseModel):
    """A fraud outcome for an earlier transaction, published on the ``labels`` topic when it
    becomes known (chargeback or analyst confirmation). ``fraud_scenario`` is only set by the
    simulator (1 = amount, 2 = compromised terminal, 3 = compromised card, 4 = compromised card
    used the drifted way, only with ``SimulationConfig.drift_start``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: StrictStr = Field(min_length=8, max_length=64)
    is_fraud: bool
    label_type: StrictStr
    known_at: datetime
    fraud_scenario: StrictInt | None = None

    @field_validator("known_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value, "known_at")


TRANSACTION_FIELDS = tuple(TransactionEvent.model_fields)
LABEL_FIELDS = tuple(LabelEvent.model_fields)

_TS = pa.timestamp("us", tz="UTC")

# Lineage columns every raw record carries: where in Kafka it came from and which landing batch wrote it.
KAFKA_LINEAGE_FIELDS = [
    pa.field("_kafka_topic", pa.string(), nullable=False),
    pa.field("_kafka_partition", pa.int32(), nullable=False),
    pa.field("_kafka_offset", pa.int64(), nullable=False),
    pa.field("_ingested_at", _TS, nullable=False),
    pa.field("_batch_id", pa.string(), nullable=False),
]

RAW_TRANSACTIONS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("card_token", pa.string(), nullable=False),
        pa.field("terminal_id", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        *KAFKA_LINEAGE_FIELDS,
    ]
)

RAW_LABELS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("label_type", pa.string(), nullable=False),
        pa.field("known_at", _TS, nullable=False),
        pa.field("fraud_scenario", pa.int32(), nullable=True),
        *KAFKA_LINEAGE_FIELDS,
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=True),
        pa.field("value", pa.string(), nullable=True),
        pa.field("message", pa.string(), nullable=False),
        pa.field("original_value", pa.binary(), nullable=True),
        pa.field("original_key", pa.binary(), nullable=True),
        pa.field("dead_lettered_at", _TS, nullable=False),
        # Set when the dead letter was cut to the broker's size limit: the original's size and hash.
        pa.field("original_size", pa.int64(), nullable=True),
        pa.field("original_sha256", pa.string(), nullable=True),
        *KAFKA_LINEAGE_FIELDS,
    ]
)

# Processed zone (processed/transactions/date=YYYY-MM-DD/*.parquet): deduplicated, typed, amounts in
# the reporting currency, identifiers pseudonymised (domain.hashing.entity_key), labels that had
# arrived when the partition was built joined with the time they became known.
PROCESSED_TRANSACTIONS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("customer_key", pa.string(), nullable=False),
        pa.field("card_key", pa.string(), nullable=False),
        pa.field("terminal_id", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("amount_eur", pa.float64(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("hour", pa.int32(), nullable=False),
        pa.field("day_of_week", pa.int32(), nullable=False),  # 0 = Monday
        pa.field("is_weekend", pa.bool_(), nullable=False),
        pa.field("is_night", pa.bool_(), nullable=False),  # 22:00-05:59 UTC
        pa.field("is_account_verification", pa.bool_(), nullable=False),  # amount 0: a card check, no charge
        pa.field("is_fraud", pa.int32(), nullable=True),  # null = no label arrived yet
        pa.field("label_type", pa.string(), nullable=True),
        pa.field("label_known_at", _TS, nullable=True),
        pa.field("fraud_scenario", pa.int32(), nullable=True),
        pa.field("processed_at", _TS, nullable=False),
    ]
)

# Sandbox zone (sandbox/transactions/date=YYYY-MM-DD/*.parquet): only partitions whose label window
# has matured. ``is_fraud`` is final (1 if a fraud label became known within the maturity window,
# else 0) and ``label_known_at`` is kept so features never use a label before it was known.
SANDBOX_TRANSACTIONS_SCHEMA = pa.schema(
    [
        *(f for f in PROCESSED_TRANSACTIONS_SCHEMA if f.name not in ("is_fraud", "processed_at")),
        pa.field("is_fraud", pa.int32(), nullable=False),
        pa.field("matured_at", _TS, nullable=False),
        # train | validation | test, or excluded for the label-delay gap before test (see domain.splits)
        pa.field("split", pa.string(), nullable=False),
    ]
)
