"""Crafted raw lake fixtures: every row states only what the test cares about, the rest defaults."""

from __future__ import annotations

from datetime import date, datetime, timezone
from itertools import count

import pyarrow as pa

from fraud_platform.domain.schema import RAW_LABELS_SCHEMA, RAW_TRANSACTIONS_SCHEMA
from fraud_platform.infra.lake import LakeStore, partition_prefix

_offsets = count(100)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def lineage(topic: str, ingested_at: str, offset: int | None = None, partition: int = 0, batch: str = "b1") -> dict:
    return {
        "_kafka_topic": topic,
        "_kafka_partition": partition,
        "_kafka_offset": next(_offsets) if offset is None else offset,
        "_ingested_at": ts(ingested_at),
        "_batch_id": batch,
    }


def tx(transaction_id: str, event_time: str, amount: float = 10.0, currency: str = "EUR", *, channel: str = "card_present",
       country: str = "FR", customer: str = "C1", card: str = "tok_card_0001", terminal: str = "T1",
       ingested_at: str | None = None, **lineage_kwargs) -> dict:
    return {
        "transaction_id": transaction_id,
        "event_time": ts(event_time),
        "customer_id": customer,
        "card_token": card,
        "terminal_id": terminal,
        "amount": float(amount),
        "currency": currency,
        "merchant_category": "5411",
        "channel": channel,
        "country": country,
        "schema_version": 1,
        **lineage("transactions", ingested_at or event_time, **lineage_kwargs),
    }


def label(transaction_id: str, known_at: str, is_fraud: bool = True, label_type: str | None = None,
          scenario: int | None = 1, **lineage_kwargs) -> dict:
    return {
        "transaction_id": transaction_id,
        "is_fraud": is_fraud,
        "label_type": label_type or ("chargeback" if is_fraud else "confirmed_legit"),
        "known_at": ts(known_at),
        "fraud_scenario": scenario if is_fraud else None,
        **lineage("labels", known_at, **lineage_kwargs),
    }


def write_raw(store: LakeStore, dataset: str, day: date | str, rows: list[dict], part: str = "0") -> str:
    """Land one raw file the way ingestion does: raw/<dataset>/date=D/part-<part>.parquet."""
    schema = RAW_TRANSACTIONS_SCHEMA if dataset == "transactions" else RAW_LABELS_SCHEMA
    key = f"{partition_prefix('raw', dataset, day)}/part-{part}.parquet"
    store.write_parquet(key, pa.Table.from_pylist(rows, schema=schema))
    return key
