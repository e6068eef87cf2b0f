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


# --- The crafted scenario ------------------------------------------------------------------------
# D1 (Mon 2026-01-05) matures at 2026-01-13T00:00 with the default 7-day window; D2 (Sat 2026-01-10)
# matures at 2026-01-18T00:00. The newest label lands 2026-01-14T10:00, so D1 is matured, D2 is not.
D1 = date(2026, 1, 5)
D2 = date(2026, 1, 10)


def scenario_transactions() -> dict[date, list[list[dict]]]:
    """Raw transaction files per day (a list of files, each a list of rows)."""
    first = [
        tx("tx000001", "2026-01-05T01:30:00", 10, "EUR", ingested_at="2026-01-05T02:00:00", batch="b1"),
        tx("tx000002", "2026-01-05T12:00:00", 100, "USD", customer="C2", card="tok_card_0002", ingested_at="2026-01-05T13:00:00", batch="b1"),
        tx("tx000003", "2026-01-05T23:00:00", 50, "GBP", country="GB", ingested_at="2026-01-05T23:10:00", batch="b1"),
        tx("tx000004", "2026-01-05T07:00:00", 5000, "JPY", channel="ecommerce", country="JP", ingested_at="2026-01-05T08:00:00", offset=40, batch="b1"),
        tx("tx000005", "2026-01-05T22:30:00", 20, "EUR", channel="contactless", ingested_at="2026-01-05T22:40:00", batch="b1"),
        tx("tx000006", "2026-01-05T09:00:00", 80, "CHF", country="CH", terminal="T2", ingested_at="2026-01-05T09:05:00", batch="b1"),
    ]
    redelivered = [  # late re-deliveries: later landing, or same landing but later Kafka offset
        tx("tx000001", "2026-01-05T01:30:00", 11, "EUR", ingested_at="2026-01-06T00:10:00", batch="b2"),
        tx("tx000002", "2026-01-05T12:00:00", 100, "USD", customer="C2", card="tok_card_0002", ingested_at="2026-01-06T00:10:00", batch="b2"),
        tx("tx000004", "2026-01-05T07:00:00", 6000, "JPY", channel="ecommerce", country="JP", ingested_at="2026-01-05T08:00:00", offset=41, batch="b1"),
    ]
    second = [
        tx("tx000007", "2026-01-10T14:00:00", 30, "EUR", customer="C3", card="tok_card_0003"),
        tx("tx000008", "2026-01-10T05:59:00", 20000, "HUF", country="HU"),
        tx("tx000009", "2026-01-10T06:00:00", 300, "SEK", channel="moto", country="SE"),
    ]
    return {D1: [first, redelivered], D2: [second]}


def scenario_labels() -> dict[date, list[dict]]:
    """Raw label partitions keyed by known_at date."""
    return {
        date(2026, 1, 5): [label("tx000005", "2026-01-05T22:00:00")],  # before its transaction: ignored
        date(2026, 1, 6): [label("tx000004", "2026-01-06T08:00:00", is_fraud=False),
                           label("tx000004", "2026-01-06T08:00:00", is_fraud=False, batch="b9")],  # re-delivered
        date(2026, 1, 7): [label("tx000002", "2026-01-07T10:00:00", scenario=1)],
        date(2026, 1, 8): [label("tx000001", "2026-01-08T10:00:00", is_fraud=False)],
        date(2026, 1, 9): [label("tx000004", "2026-01-09T10:00:00", label_type="confirmed_fraud", scenario=3)],
        date(2026, 1, 12): [label("tx000006", "2026-01-12T23:00:00", scenario=2),  # last day inside D1's window
                            label("tx000007", "2026-01-12T09:00:00", scenario=1)],
        date(2026, 1, 14): [label("tx000003", "2026-01-14T10:00:00")],  # after D1 matured: never counts
    }


def land_scenario(store: LakeStore, label_days: set[date] | None = None) -> None:
    for day, files in scenario_transactions().items():
        for i, rows in enumerate(files):
            write_raw(store, "transactions", day, rows, part=str(i))
    for day, rows in scenario_labels().items():
        if label_days is None or day in label_days:
            write_raw(store, "labels", day, rows)



def raw_rows(day: date) -> list[dict]:
    return [row for rows in scenario_transactions()[day] for row in rows]


def label_rows() -> list[dict]:
    return [row for rows in scenario_labels().values() for row in rows]
