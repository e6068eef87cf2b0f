"""A small, hand-crafted lake (processed + sandbox zones) in the exact layout and schemas the lake
assets write, so warehouse tests exercise dbt on real Parquet without running the pipeline."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fraud_platform.domain.schema import PROCESSED_TRANSACTIONS_SCHEMA, SANDBOX_TRANSACTIONS_SCHEMA

DAYS = (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3))
OLD_DAY = date(2026, 1, 20)  # outside the 28-day risk window of the newest day
CHANNELS = ("card_present", "ecommerce", "contactless")
COUNTRIES = ("FR", "DE")
CATEGORIES = ("5411", "5732")
HOURS = (3, 14, 23)


@dataclass(frozen=True)
class LakeFixture:
    """Rows per zone as plain dicts (pandas would turn null timestamps/ints into NaT/NaN)."""

    processed: list[dict]
    sandbox: list[dict]

    def frame(self, zone: str) -> pd.DataFrame:
        return pd.DataFrame(getattr(self, zone))


def crafted_transactions() -> list[dict]:
    """36 transactions over 3 days plus one old fraud on T2/C2 (outside the 28-day risk window):
    terminal T1 is compromised on the last day, customer C3 is a compromised card; day 1 and the
    old day are matured (in the sandbox), later labels are partly unknown."""
    rows = [_row(OLD_DAY, 0, hour=14, terminal="T2", customer="C2", fraud=True, is_fraud=1, scenario=1)]
    for d, day in enumerate(DAYS):
        for i in range(12):
            hour = HOURS[i % 3]
            terminal = f"T{(i % 4) + 1}"
            customer = f"C{(i % 5) + 1}"
            # tx 4 of day 1 is a late chargeback: only the sandbox (matured labels) knows it.
            fraud = (terminal == "T1" and d == 2) or (customer == "C3" and i % 2 == 0) or (d == 0 and i == 4)
            # Labels: day 1 fully labelled in processed except two that only the sandbox knows;
            # later days only know fraud labels (legit ones have not arrived).
            if d == 0:
                is_fraud = None if i in (4, 9) else int(fraud)
            else:
                is_fraud = 1 if fraud else None
            rows.append(
                _row(day, i, hour=hour, terminal=terminal, customer=customer, fraud=fraud, is_fraud=is_fraud,
                     scenario=(2 if terminal == "T1" and d == 2 else 3) if fraud and is_fraud else None, d=d)
            )
    return rows


def _row(day: date, i: int, *, hour: int, terminal: str, customer: str, fraud: bool, is_fraud: int | None,
         scenario: int | None, d: int = 0) -> dict:
    event_time = datetime(day.year, day.month, day.day, hour, i, tzinfo=timezone.utc)
    return {
        "transaction_id": f"tx-{day:%Y%m%d}-{i:04d}",
        "event_time": event_time,
        "event_date": day,
        "customer_key": customer,
        "card_key": f"K{customer}-{i % 2}",
        "terminal_id": terminal,
        "amount": 10.0 + 7.5 * i + d,
        "currency": "EUR",
        "amount_eur": 10.0 + 7.5 * i + d,
        "merchant_category": CATEGORIES[i % 2],
        "channel": CHANNELS[i % 3 if i < 9 else 1],
        "country": COUNTRIES[(i // 2) % 2],
        "hour": hour,
        "day_of_week": event_time.weekday(),
        "is_weekend": event_time.weekday() >= 5,
        "is_night": hour >= 22 or hour < 6,
        "is_account_verification": False,
        "is_fraud": is_fraud,
        "label_type": None if is_fraud is None else ("chargeback" if is_fraud else "confirmed_legit"),
        "label_known_at": None if is_fraud is None else event_time + timedelta(days=1),
        "fraud_scenario": scenario,
        "processed_at": datetime(2026, 3, 4, tzinfo=timezone.utc),
        "_true_fraud": int(fraud),
    }


def crafted_fixture() -> LakeFixture:
    transactions = crafted_transactions()
    processed = [{k: v for k, v in row.items() if k != "_true_fraud"} for row in transactions]
    matured_at = datetime(2026, 4, 1, tzinfo=timezone.utc)
    sandbox = [
        {**row, "is_fraud": row["_true_fraud"], "matured_at": matured_at, "split": "train"}
        for row in transactions
        if row["event_date"] in (OLD_DAY, DAYS[0])
    ]
    return LakeFixture(processed=processed, sandbox=sandbox)


def write_zone(lake_root: Path, zone: str, rows: list[dict], schema: pa.Schema) -> None:
    """Write one Parquet file per event date under <zone>/transactions/date=D/ (us timestamps)."""
    by_day: dict[date, list[dict]] = defaultdict(list)
    for row in rows:
        by_day[row["event_date"]].append({f.name: row[f.name] for f in schema})
    for day, records in by_day.items():
        folder = lake_root / zone / "transactions" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(records, schema=schema)
        pq.write_table(table, folder / "part-00000.parquet", coerce_timestamps="us")


def write_fixture(lake_root: Path, fixture: LakeFixture) -> None:
    write_zone(lake_root, "processed", fixture.processed, PROCESSED_TRANSACTIONS_SCHEMA)
    write_zone(lake_root, "sandbox", fixture.sandbox, SANDBOX_TRANSACTIONS_SCHEMA)
