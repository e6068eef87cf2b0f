"""The datasets the platform lands from Kafka: validated transactions and labels into the raw
zone, and dead letters into the quarantine zone. One place that ties topic, validator, schema,
partition date and duplicate identity together."""

from __future__ import annotations

from datetime import datetime, timezone

from fraud_platform.domain.catalogue import QUARANTINED_LABELS, QUARANTINED_TRANSACTIONS, RAW_LABELS, RAW_TRANSACTIONS
from fraud_platform.domain.schema import LABEL_FIELDS, TRANSACTION_FIELDS
from fraud_platform.domain.card_data import mask_pans
from fraud_platform.domain.validation import LabelValidator, Rejection, TransactionValidator
from fraud_platform.infra.dead_letters import masked_payload, parse_dead_letter_headers
from fraud_platform.infra.landing import Decoded, LandingSpec
from fraud_platform.settings import IngestionSettings, TopicNames


def _decoder(validator, fields: tuple[str, ...], day_field: str):
    """Validate a message into a row of ``fields``, partitioned by the date of ``day_field``."""

    def decode(msg) -> Decoded | Rejection:
        event = validator.parse(msg.value())
        if isinstance(event, Rejection):
            return event
        row = {name: getattr(event, name) for name in fields}
        if "amount" in row:
            row["amount"] = float(row["amount"])  # JSON integers are valid amounts too
        return Decoded(row, getattr(event, day_field).date())

    return decode


def _int_header(headers: dict[str, str], name: str, default: int | None) -> int | None:
    value = headers.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else default


def _decode_dead_letter(msg) -> Decoded:
    """Dead letters are never rejected again: a record without our headers is kept as 'unknown'.
    Everything is PAN-masked again here, so a DLQ written by any other producer cannot leak one."""
    headers = {name: mask_pans(value) for name, value in parse_dead_letter_headers(msg.headers()).items()}
    try:
        failed_at = datetime.fromisoformat(headers["failed_at"])
    except (KeyError, ValueError):
        failed_at = datetime.fromtimestamp(msg.timestamp()[1] / 1000, tz=timezone.utc)
    row = {
        "source_topic": headers.get("source.topic", msg.topic()),
        "source_partition": _int_header(headers, "source.partition", msg.partition()),
        "source_offset": _int_header(headers, "source.offset", msg.offset()),
        "rule": headers.get("error.rule", "unknown"),
        "field": headers.get("error.field") or None,
        "value": headers.get("error.value") or None,
        "message": headers.get("error.message", "dead letter without error headers"),
        "original_value": masked_payload(msg.value()),
        "original_key": masked_payload(msg.key()),
        "dead_lettered_at": failed_at,
        "original_size": _int_header(headers, "original.size", None),
        "original_sha256": headers.get("original.sha256"),
    }
    return Decoded(row, failed_at.date())


def transactions_spec(topics: TopicNames, ingestion: IngestionSettings | None = None) -> LandingSpec:
    ingestion = ingestion or IngestionSettings.from_env()
    return LandingSpec(
        name=RAW_TRANSACTIONS.asset_key, topic=topics.transactions, dlq_topic=topics.transactions_dlq,
        zone=RAW_TRANSACTIONS.zone, dataset=RAW_TRANSACTIONS.name, schema=RAW_TRANSACTIONS.schema,
        decode=_decoder(TransactionValidator(accept_zero_amount=ingestion.accept_zero_amount), TRANSACTION_FIELDS, RAW_TRANSACTIONS.partition_column),
        dedupe_columns=RAW_TRANSACTIONS.dedupe_keys,
    )


def labels_spec(topics: TopicNames) -> LandingSpec:
    return LandingSpec(
        name=RAW_LABELS.asset_key, topic=topics.labels, dlq_topic=topics.labels_dlq,
        zone=RAW_LABELS.zone, dataset=RAW_LABELS.name, schema=RAW_LABELS.schema,
        decode=_decoder(LabelValidator(), LABEL_FIELDS, RAW_LABELS.partition_column),
        dedupe_columns=RAW_LABELS.dedupe_keys,
    )


def quarantine_spec(topics: TopicNames, source: str = "transactions") -> LandingSpec:
    """Dead letters of ``source`` ('transactions' or 'labels') into quarantine/<source>/."""
    dlq = topics.transactions_dlq if source == "transactions" else topics.labels_dlq
    target = QUARANTINED_TRANSACTIONS if source == "transactions" else QUARANTINED_LABELS
    return LandingSpec(
        name=target.asset_key, topic=dlq, dlq_topic=None,
        zone=target.zone, dataset=target.name, schema=target.schema,
        decode=_decode_dead_letter, dedupe_columns=target.dedupe_keys,
    )
