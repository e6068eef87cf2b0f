"""Importing a CSV/Parquet history: map columns to event fields, validate every row with the same
validators landing uses, summarise what would be dead-lettered and why, then produce to Kafka.

Validation runs here first so a user learns *before* anything is produced that, say, every label
was rejected because the file says ``reported_at`` where the platform expects ``known_at``; a file
rejected above the allowed share is not produced at all (nothing half-imported). Landing validates
again (one rule set, one place for dead letters), so the summary predicts the landing counts.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import orjson
import pandas as pd

from fraud_platform.domain.hashing import tokenise_pan
from fraud_platform.domain.schema import LABEL_FIELDS, LABEL_TYPES, TRANSACTION_FIELDS
from fraud_platform.domain.validation import LabelValidator, Rejection, TransactionValidator
from fraud_platform.infra.publish import PublishReport, RateLimitedProducer
from fraud_platform.settings import KafkaSettings

FDH_COLUMNS = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "event_time",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
    "TX_FRAUD_SCENARIO": "fraud_scenario",
}
# Columns a transactions file may carry besides the event's fields (they become label events).
LABEL_SOURCE_COLUMNS = ("is_fraud", "fraud_scenario")


def read_table(path: Path) -> pd.DataFrame:
    """CSV or Parquet (file or folder of Parquet files), by extension."""
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt") or path.name.lower().endswith(".csv.gz"):
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise ValueError(f"cannot import {path}: expected a .csv or .parquet file (or a folder of Parquet files)")


def parse_label_type_rule(text: str | None) -> dict[bool, str]:
    """``fraud=chargeback,legit=confirmed_legit`` -> {True: "chargeback", False: "confirmed_legit"}:
    each row's label type from its ``is_fraud``."""
    if not text:
        return {}
    rule: dict[bool, str] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if name not in ("fraud", "legit") or value not in LABEL_TYPES:
            raise ValueError(f"--label-type-rule expects fraud=TYPE,legit=TYPE with TYPE in {list(LABEL_TYPES)}, got {part!r}")
        rule[name == "fraud"] = value
    return rule


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


@dataclass
class ImportSummary:
    """What validation says about a file: rows per topic, rejections per (rule, field), and the
    source columns that map to no event field (they would be dropped)."""

    path: Path
    kind: str
    rows: dict[str, int] = field(default_factory=dict)  # per topic
    rejected: Counter = field(default_factory=Counter)  # (topic, rule, field) -> count
    examples: dict[tuple[str, str, str | None], str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    missing_fields: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def rejected_share(self) -> float:
        return self.total_rejected / self.total if self.total else 0.0

    def lines(self) -> list[str]:
        out = [f"import summary for {self.path} (kind {self.kind}):"]
        for topic, rows in self.rows.items():
            bad = sum(n for (t, _, _), n in self.rejected.items() if t == topic)
            out.append(f"  {topic}: {rows:,} rows, {rows - bad:,} valid, {bad:,} to be dead-lettered"
                       + (f" ({bad / rows:.1%})" if rows else ""))
        for (topic, rule, name), count in self.rejected.most_common():
            out.append(f"    {topic}: rule {rule}, field {name or '-'}: {count:,} rows, e.g. {self.examples[(topic, rule, name)]}")
        if self.missing_fields:
            out.append(f"  fields no column provides: {', '.join(self.missing_fields)}")
        return out

    def warnings(self) -> list[str]:
        fields = ", ".join(TRANSACTION_FIELDS if self.kind == "transactions" else LABEL_FIELDS)
        return [f"warning: column '{c}' maps to no {self.kind} field and is dropped "
                f"(use --map '{c}=FIELD'; fields: {fields})" for c in self.unmapped]


@dataclass
class PreparedImport:
    """Encoded events per topic, ready to validate and produce."""

    messages: dict[str, list[tuple[bytes | None, bytes]]]
    summary: ImportSummary


def prepare_import(
    path: Path,
    kind: str,
    topics,
    column_map: Mapping[str, str] | None = None,
    constants: Mapping[str, str] | None = None,
    assume_utc: bool = True,
    label_delay_days: float = 7.0,
    tokenisation_key: str | None = None,
    label_type_rule: Mapping[bool, str] | None = None,
) -> PreparedImport:
    """Read, map and encode ``path``; ``column_map`` renames source columns to event fields (FDH
    names are recognised automatically; a column with per-row label types is mapped like any
    other, e.g. ``status=label_type``), ``constants`` fills fields the source lacks, and
    ``label_type_rule`` ({is_fraud: type}) derives each row's label type from its ``is_fraud``.
    Histories without a card token (like FDH's, where the customer is the card) get one derived
    from the customer id with the platform's tokenisation key. A transactions file with an
    ``is_fraud`` column also yields label events, known ``label_delay_days`` after the transaction."""
    if kind not in ("transactions", "labels"):
        raise ValueError(f"kind must be 'transactions' or 'labels', got {kind!r}")
    frame = read_table(path)
    mapping = {**{k: v for k, v in FDH_COLUMNS.items() if k in frame.columns}, **(column_map or {})}
    unknown = sorted(set(mapping) - set(frame.columns))
    if unknown:
        raise ValueError(f"--map names column(s) {unknown} that are not in {path} (columns: {list(frame.columns)})")
    fields: Sequence[str] = TRANSACTION_FIELDS if kind == "transactions" else LABEL_FIELDS
    used = set(fields) | (set(LABEL_SOURCE_COLUMNS) if kind == "transactions" else set())
    unmapped = [c for c in frame.columns if mapping.get(c, c) not in used]
    frame = frame.rename(columns=mapping)
    for name, value in (constants or {}).items():
        frame[name] = value
    tz = timezone.utc if assume_utc else None
    if kind == "labels" and label_type_rule and "is_fraud" in frame.columns:
        frame["label_type"] = [label_type_rule.get(_json_value("is_fraud", v, tz)) for v in frame["is_fraud"]]
    if kind == "transactions" and "card_token" not in frame.columns and "customer_id" in frame.columns and tokenisation_key:
        frame["card_token"] = [tokenise_pan(f"customer-card:{c}", tokenisation_key) for c in frame["customer_id"].astype(str)]
    present = [f for f in fields if f in frame.columns and f != "schema_version"]
    optional = {"schema_version", "fraud_scenario"}
    summary = ImportSummary(path, kind, unmapped=unmapped,
                            missing_fields=[f for f in fields if f not in frame.columns and f not in optional])
    key_field = "card_token" if kind == "transactions" and "card_token" in present else "transaction_id"

    def encode(record: dict) -> tuple[bytes | None, bytes]:
        payload = {name: _json_value(name, record[name], tz) for name in present}
        payload = {k: v for k, v in payload.items() if v is not None or k == "fraud_scenario"}
        key = payload.get(key_field)
        return (str(key).encode() if key is not None else None), orjson.dumps(payload)

    topic = topics.transactions if kind == "transactions" else topics.labels
    messages = {topic: [encode(r) for r in frame[present].to_dict("records")]}
    if kind == "transactions" and "is_fraud" in frame.columns:
        fraud_type = (label_type_rule or {}).get(True, "chargeback")
        messages[topics.labels] = list(_labels_from_transactions(frame, tz, label_delay_days, fraud_type))
    return PreparedImport(messages, summary)


def validate_import(prepared: PreparedImport, topics) -> ImportSummary:
    """Run every encoded event through the landing validators; fill the summary's counts."""
    summary = prepared.summary
    validators = {topics.transactions: TransactionValidator(), topics.labels: LabelValidator()}
    for topic, messages in prepared.messages.items():
        summary.rows[topic] = len(messages)
        validator = validators[topic]
        for _, value in messages:
            outcome = validator.parse(value)
            if isinstance(outcome, Rejection):
                key = (topic, outcome.rule, outcome.field)
                summary.rejected[key] += 1
                summary.examples.setdefault(key, outcome.message)
    return summary


def produce_import(settings: KafkaSettings, prepared: PreparedImport) -> PublishReport:
    """Produce the prepared events (landing validates and dead-letters them as usual)."""
    from fraud_platform.infra.kafka import ensure_topics

    ensure_topics(settings)
    producer = RateLimitedProducer(settings)
    started = time.monotonic()
    for topic, messages in prepared.messages.items():
        producer.send(topic, messages)
    producer.close()
    return PublishReport(produced=dict(producer.counts), expected_valid_transactions=0, seconds=time.monotonic() - started)


def _labels_from_transactions(frame: pd.DataFrame, tz: timezone | None, delay_days: float,
                              label_type: str = "chargeback") -> Iterable[tuple[bytes, bytes]]:
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
            "label_type": label_type,
            "known_at": (event_time + timedelta(days=delay_days)).isoformat(),
            "fraud_scenario": scenario if isinstance(scenario, int) else None,
        }
        yield str(record["transaction_id"]).encode(), orjson.dumps(payload)
