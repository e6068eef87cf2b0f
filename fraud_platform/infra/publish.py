"""Producing events to Kafka: the simulator's stream and imported history.

Both paths only *produce*; validation happens once, on landing (and in the streaming scorer), so
imported and simulated records face exactly the same rules and dead-letter handling.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import orjson
import pandas as pd

from fraud_platform.domain.hashing import tokenise_pan
from fraud_platform.domain.schema import LABEL_FIELDS, TRANSACTION_FIELDS
from fraud_platform.infra.kafka import ensure_topics, make_producer
from fraud_platform.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class PublishReport:
    """What was produced, per topic, plus the simulator's invalid-record injection counts."""

    produced: dict[str, int] = field(default_factory=dict)
    injected_invalid: dict[str, int] = field(default_factory=dict)
    expected_valid_transactions: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.produced.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


class RateLimitedProducer:
    """Produce (key, value) pairs at a target rate (None = as fast as possible), counting per topic."""

    def __init__(self, settings: KafkaSettings, rate: float | None = None) -> None:
        self.producer = make_producer(settings)
        self.rate = rate
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self._started = time.monotonic()
        self._sent = 0

    def _on_delivery(self, error, _msg) -> None:
        if error is not None:
            self.errors.append(str(error))

    def send(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]]) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        count = 0
        for key, value in messages:
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    poll(0.05)
            count += 1
            self._sent += 1
            if self._sent % 1000 == 0:
                poll(0)
                if self.rate:
                    ahead = self._sent / self.rate - (time.monotonic() - self._started)
                    if ahead > 0:
                        time.sleep(ahead)
        self.counts[topic] = self.counts.get(topic, 0) + count

    def close(self, timeout: float = 120.0) -> None:
        """Flush, then release the client (a live idle producer keeps reconnecting and logging)."""
        remaining = self.producer.flush(timeout)
        self.producer.close()
        self.producer = None
        if remaining or self.errors:
            raise RuntimeError(f"{remaining} message(s) not delivered; first errors: {self.errors[:3]}")


def publish_simulation(
    settings: KafkaSettings,
    simulator,
    rate: float | None = None,
    inject_invalid_rate: float = 0.0,
    seed: int = 0,
) -> PublishReport:
    """Stream a simulation window to the transactions and labels topics, day by day."""
    from fraud_platform.domain.bad_records import inject_invalid

    topics = settings.topics
    ensure_topics(settings)
    producer = RateLimitedProducer(settings, rate)
    report = PublishReport()
    started = time.monotonic()
    for day_events in simulator.iter_days():
        transactions = day_events.transactions
        if inject_invalid_rate > 0:
            transactions, injection = inject_invalid(transactions, inject_invalid_rate, seed + day_events.day.toordinal())
            for rule, count in injection.by_rule.items():
                report.injected_invalid[rule] = report.injected_invalid.get(rule, 0) + count
            report.expected_valid_transactions += injection.expected_valid
        else:
            report.expected_valid_transactions += len(transactions)
        producer.send(topics.transactions, transactions)
        producer.send(topics.labels, day_events.labels)
        log.info("simulated %s: %d transactions, %d labels", day_events.day, len(transactions), len(day_events.labels))
    producer.close()
    report.produced = dict(producer.counts)
    report.seconds = time.monotonic() - started
    return report


# -- importing history -----------------------------------------------------------------------------
FDH_COLUMNS = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "event_time",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
    "TX_FRAUD_SCENARIO": "fraud_scenario",
}


def read_table(path: Path) -> pd.DataFrame:
    """CSV or Parquet (file or folder of Parquet files), by extension."""
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt") or path.name.lower().endswith(".csv.gz"):
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise ValueError(f"cannot import {path}: expected a .csv or .parquet file (or a folder of Parquet files)")


def _json_value(name: str, value: object, assume_tz: timezone | None) -> object:
    """Best-effort coercion to the event's JSON types; anything that does not coerce is passed on
    unchanged so validation rejects it with the field and value named (never silently fixed)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        ts = pd.Timestamp(value)
        if ts.tzinfo is None and assume_tz is not None:
            ts = ts.tz_localize(assume_tz)
        return ts.isoformat()
    if name in ("event_time", "known_at") and isinstance(value, str) and assume_tz is not None:
        try:
            ts = pd.Timestamp(value)
        except ValueError:
            return value
        return (ts.tz_localize(assume_tz) if ts.tzinfo is None else ts).isoformat()
    if name == "amount":
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if name in ("is_fraud",):
        text = str(value).strip().lower()
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text, value)
    if name in ("fraud_scenario", "schema_version"):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return value
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    return str(value) if not isinstance(value, str) else value


def import_history(
    settings: KafkaSettings,
    path: Path,
    kind: str,
    column_map: dict[str, str] | None = None,
    constants: dict[str, str] | None = None,
    assume_utc: bool = True,
    label_delay_days: float = 7.0,
    tokenisation_key: str | None = None,
) -> PublishReport:
    """Produce a CSV/Parquet history to the transactions (or labels) topic for normal landing.

    ``column_map`` renames source columns to event fields (FDH column names are recognised
    automatically); ``constants`` fills fields the source lacks (e.g. currency=EUR). Histories
    without a card token (like FDH's, where the customer is the card) get one derived from the
    customer id with the platform's tokenisation key. A transactions
    file with an ``is_fraud`` column also yields label events, known ``label_delay_days`` after the
    transaction, so users can bring a labelled history in one file.
    """
    if kind not in ("transactions", "labels"):
        raise ValueError(f"kind must be 'transactions' or 'labels', got {kind!r}")
    frame = read_table(path)
    mapping = {**{k: v for k, v in FDH_COLUMNS.items() if k in frame.columns}, **(column_map or {})}
    unknown = sorted(set(mapping) - set(frame.columns))
    if unknown:
        raise ValueError(f"--map names column(s) {unknown} that are not in {path} (columns: {list(frame.columns)})")
    frame = frame.rename(columns=mapping)
    for name, value in (constants or {}).items():
        frame[name] = value
    if kind == "transactions" and "card_token" not in frame.columns and "customer_id" in frame.columns and tokenisation_key:
        frame["card_token"] = [tokenise_pan(f"customer-card:{c}", tokenisation_key) for c in frame["customer_id"].astype(str)]
    fields: Sequence[str] = TRANSACTION_FIELDS if kind == "transactions" else LABEL_FIELDS
    tz = timezone.utc if assume_utc else None
    present = [f for f in fields if f in frame.columns and f != "schema_version"]
    records = frame[present].to_dict("records")
    topics = settings.topics
    ensure_topics(settings)
    producer = RateLimitedProducer(settings)
    started = time.monotonic()
    key_field = "card_token" if kind == "transactions" and "card_token" in present else "transaction_id"

    def encode(record: dict) -> tuple[bytes | None, bytes]:
        payload = {name: _json_value(name, record[name], tz) for name in present}
        payload = {k: v for k, v in payload.items() if v is not None or k == "fraud_scenario"}
        key = payload.get(key_field)
        return (str(key).encode() if key is not None else None), orjson.dumps(payload)

    producer.send(topics.transactions if kind == "transactions" else topics.labels, (encode(r) for r in records))
    if kind == "transactions" and "is_fraud" in frame.columns:
        producer.send(topics.labels, _labels_from_transactions(frame, tz, label_delay_days))
    producer.close()
    return PublishReport(produced=dict(producer.counts), expected_valid_transactions=0, seconds=time.monotonic() - started)


def _labels_from_transactions(frame: pd.DataFrame, tz: timezone | None, delay_days: float) -> Iterable[tuple[bytes, bytes]]:
    for record in frame[[c for c in ("transaction_id", "event_time", "is_fraud", "fraud_scenario") if c in frame.columns]].to_dict("records"):
        if _json_value("is_fraud", record["is_fraud"], tz) is not True:
            continue
        event_time = pd.Timestamp(record["event_time"])
        if event_time.tzinfo is None:
            event_time = event_time.tz_localize(tz or timezone.utc)
        scenario = _json_value("fraud_scenario", record.get("fraud_scenario"), tz)
        payload = {
            "transaction_id": str(record["transaction_id"]),
            "is_fraud": True,
            "label_type": "chargeback",
            "known_at": (event_time + timedelta(days=delay_days)).isoformat(),
            "fraud_scenario": scenario if isinstance(scenario, int) else None,
        }
        yield str(record["transaction_id"]).encode(), orjson.dumps(payload)
