"""In-memory sandbox-shaped data straight from the simulator, for the benchmark and ML tests.

The lake builds the sandbox zone with Spark from Kafka-landed events; the FDH benchmark and unit
tests need the same columns without a broker or Spark, so this maps simulator output onto
``SANDBOX_TRANSACTIONS_SCHEMA`` (pseudonymous keys via ``entity_key``, EUR amounts via
``FX_TO_EUR``, earliest fraud label's ``known_at`` as ``label_known_at``).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pandas as pd
import pyarrow as pa

from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import FX_TO_EUR, SANDBOX_TRANSACTIONS_SCHEMA
from fraud_platform.domain.simulator import TransactionSimulator
from fraud_platform.domain.splits import SplitConfig, plan_time_splits


def simulated_sandbox_frame(simulator: TransactionSimulator, split_config: SplitConfig = SplitConfig()) -> pd.DataFrame:
    """Every simulated transaction with its final label, in sandbox column order and dtypes."""
    config = simulator.config
    tx = simulator.transactions()
    start = datetime.combine(config.start, time(), timezone.utc)
    end = datetime.combine(config.end, time(), timezone.utc) + timedelta(days=config.label_delay_days + 1)
    labels = simulator.labels_for_window(start, end)
    labels = labels[labels["is_fraud"]].sort_values("known_at").drop_duplicates("transaction_id")
    frame = tx.merge(
        labels[["transaction_id", "label_type", "known_at"]].rename(columns={"known_at": "label_known_at"}),
        on="transaction_id", how="left",
    )
    ts = frame["event_time"]
    frame["event_date"] = ts.dt.date
    frame["customer_key"] = frame["customer_id"].map(entity_key)
    frame["card_key"] = frame["card_token"].map(entity_key)
    frame["amount_eur"] = frame["amount"] * frame["currency"].map(FX_TO_EUR)
    frame["hour"] = ts.dt.hour.astype("int32")
    frame["day_of_week"] = ts.dt.dayofweek.astype("int32")
    frame["is_weekend"] = frame["day_of_week"] >= 5
    frame["is_night"] = (frame["hour"] >= 22) | (frame["hour"] < 6)
    frame["is_account_verification"] = frame["amount"] == 0
    # Truth is final here; the lake only knows frauds whose label arrived before maturity.
    known = frame["label_known_at"].notna()
    frame["is_fraud"] = known.astype("int32")
    frame["fraud_scenario"] = frame["fraud_scenario"].where(known).astype("Int32")
    frame["matured_at"] = pd.Timestamp(end)
    splits = plan_time_splits(simulator.days(), split_config)
    frame["split"] = [splits.split_of(d) for d in frame["event_date"]]
    return frame[SANDBOX_TRANSACTIONS_SCHEMA.names].sort_values("event_time", kind="stable").reset_index(drop=True)


def sandbox_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table conforming to the sandbox contract."""
    return pa.Table.from_pandas(frame[SANDBOX_TRANSACTIONS_SCHEMA.names], schema=SANDBOX_TRANSACTIONS_SCHEMA,
                                preserve_index=False)

