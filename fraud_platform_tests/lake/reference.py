"""An independent pandas statement of what processed and sandbox must contain, used to check the
Spark code. Deliberately written from the contract's wording, not from the Spark code."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pyarrow as pa

from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import FX_TO_EUR, PROCESSED_TRANSACTIONS_SCHEMA, SANDBOX_TRANSACTIONS_SCHEMA

TYPES = {pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}
ARRIVAL = ["_ingested_at", "_kafka_topic", "_kafka_partition", "_kafka_offset", "_batch_id"]


def normalised(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=TYPES.get).sort_values("transaction_id").reset_index(drop=True)


def _labels(tx: pd.DataFrame, labels: list[dict], maturity_days: int) -> pd.DataFrame:
    lab = pd.DataFrame(labels)
    cutoff = pd.to_datetime(tx["event_date"]).dt.tz_localize("UTC") + pd.Timedelta(days=1 + maturity_days)
    keys = tx[["transaction_id", "event_time"]].assign(cutoff=cutoff)
    m = keys.merge(lab, on="transaction_id")
    m = m[(m["known_at"] >= m["event_time"]) & (m["known_at"] < m["cutoff"])]
    m = m.sort_values(["transaction_id", "is_fraud", "known_at", *ARRIVAL], ascending=[True, False, True] + [True] * len(ARRIVAL))
    first = m.drop_duplicates("transaction_id")
    return pd.DataFrame({
        "transaction_id": first["transaction_id"],
        "is_fraud": first["is_fraud"].astype(int),
        "label_type": first["label_type"],
        "label_known_at": first["known_at"],
        "fraud_scenario": first["fraud_scenario"],
    })


def _transactions(raw: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(raw).sort_values(ARRIVAL).drop_duplicates("transaction_id", keep="first")
    t = df["event_time"]
    out = pd.DataFrame({
        "transaction_id": df["transaction_id"],
        "event_time": t,
        "event_date": t.dt.date,
        "customer_key": df["customer_id"].map(entity_key),
        "card_key": df["card_token"].map(entity_key),
        "terminal_id": df["terminal_id"],
        "amount": df["amount"],
        "currency": df["currency"],
        "amount_eur": df["amount"] * df["currency"].map(FX_TO_EUR),
        "merchant_category": df["merchant_category"],
        "channel": df["channel"],
        "country": df["country"],
        "hour": t.dt.hour,
        "day_of_week": t.dt.dayofweek,
        "is_weekend": t.dt.dayofweek >= 5,
        "is_night": (t.dt.hour >= 22) | (t.dt.hour < 6),
        "is_account_verification": df["amount"] == 0,
    })
    return out


def expected_processed(raw: list[dict], labels: list[dict], maturity_days: int, processed_at: datetime) -> pd.DataFrame:
    tx = _transactions(raw)
    out = tx.merge(_labels(tx, labels, maturity_days), on="transaction_id", how="left").assign(processed_at=processed_at)
    return normalised(pa.Table.from_pandas(out[PROCESSED_TRANSACTIONS_SCHEMA.names], schema=PROCESSED_TRANSACTIONS_SCHEMA, preserve_index=False))


def expected_sandbox(raw: list[dict], labels: list[dict], maturity_days: int, split: str) -> pd.DataFrame:
    tx = _transactions(raw)
    out = tx.merge(_labels(tx, labels, maturity_days), on="transaction_id", how="left")
    out["is_fraud"] = out["is_fraud"].fillna(0).astype(int)
    out["matured_at"] = pd.to_datetime(out["event_date"]).dt.tz_localize("UTC") + pd.Timedelta(days=1 + maturity_days)
    out["split"] = split
    return normalised(pa.Table.from_pandas(out[SANDBOX_TRANSACTIONS_SCHEMA.names], schema=SANDBOX_TRANSACTIONS_SCHEMA, preserve_index=False))
