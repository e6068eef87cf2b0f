"""The warehouse's KPIs computed independently in pandas from the fixture rows, to compare the
dbt marts against (same business rules, written again from their documentation)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from fraud_platform_tests.warehouse.lake_fixture import LakeFixture

GRAIN = ["event_date", "channel", "country", "merchant_category", "hour"]
RISK_WINDOW_DAYS = 28
HIGH_RISK_RATE = 0.2


def best_known_transactions(fixture: LakeFixture) -> pd.DataFrame:
    """Sandbox's final label if matured, else the processed label, else 0."""
    final = {row["transaction_id"]: row["is_fraud"] for row in fixture.sandbox}
    rows = []
    for row in fixture.processed:
        matured = row["transaction_id"] in final
        label = final[row["transaction_id"]] if matured else row["is_fraud"]
        rows.append({**row, "is_fraud": 0 if label is None else int(label), "matured": matured})
    return pd.DataFrame(rows)


def daily_kpis(fixture: LakeFixture) -> pd.DataFrame:
    tx = best_known_transactions(fixture)
    tx["fraud_amount_eur"] = tx["amount_eur"].where(tx["is_fraud"] == 1, 0.0)
    out = tx.groupby(GRAIN).agg(
        transaction_count=("transaction_id", "size"),
        amount_eur=("amount_eur", "sum"),
        fraud_count=("is_fraud", "sum"),
        fraud_amount_eur=("fraud_amount_eur", "sum"),
        matured_count=("matured", "sum"),
    ).reset_index()
    out["fraud_rate"] = out["fraud_count"] / out["transaction_count"]
    return out


def _tier(fraud_28d: int, tx_28d: int) -> str:
    if fraud_28d > 0 and fraud_28d / tx_28d >= HIGH_RISK_RATE:
        return "high"
    return "medium" if fraud_28d > 0 else "low"


def risk(fixture: LakeFixture, key: str) -> pd.DataFrame:
    """Lifetime and trailing-28-day fraud per ``key`` (terminal_id or customer_key) with the tier."""
    tx = best_known_transactions(fixture)
    window_start = tx["event_date"].max() - timedelta(days=RISK_WINDOW_DAYS - 1)
    tx["recent"] = tx["event_date"] >= window_start
    tx["recent_fraud"] = tx["recent"] & (tx["is_fraud"] == 1)
    out = tx.groupby(key).agg(
        transaction_count=("transaction_id", "size"),
        fraud_count=("is_fraud", "sum"),
        transaction_count_28d=("recent", "sum"),
        fraud_count_28d=("recent_fraud", "sum"),
    ).reset_index()
    out["risk_tier"] = [_tier(f, t) for f, t in zip(out["fraud_count_28d"], out["transaction_count_28d"])]
    return out.sort_values(key).reset_index(drop=True)


def normalise(frame: pd.DataFrame, keys: list[str], counts: list[str] = (), floats: list[str] = (),
              texts: list[str] = ()) -> pd.DataFrame:
    """Chosen columns with plain dtypes, sorted by ``keys``, so a mart read from DuckDB or Postgres
    (HUGEINT, Decimal, datetime64 dates) compares cell by cell with the pandas expectation."""
    out = frame[[*keys, *counts, *floats, *texts]].copy()
    for column in keys:
        if column == "event_date":
            out[column] = pd.to_datetime(out[column]).dt.date
        elif column == "hour":
            out[column] = out[column].astype("int64")
        else:
            out[column] = out[column].astype(str)
    out[list(counts)] = out[list(counts)].astype("int64")
    out[list(floats)] = out[list(floats)].astype("float64")
    out[list(texts)] = out[list(texts)].astype(str)
    return out.sort_values(keys).reset_index(drop=True)
