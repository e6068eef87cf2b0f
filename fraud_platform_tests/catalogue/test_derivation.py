"""The one raw -> processed derivation: Spark (the lake), the streaming scorer and the in-memory
datasets produce the same rows from the same raw records."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pytest

from fraud_platform.domain.catalogue import DERIVED_COLUMNS, derive_processed_rows
from fraud_platform.domain.schema import RAW_TRANSACTIONS_SCHEMA
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.processing.zones import read_partitions
from fraud_platform.domain.catalogue import RAW_TRANSACTIONS
from fraud_platform.processing.transform import normalise_transactions


def _raw(days: int = 2) -> pd.DataFrame:
    sim = TransactionSimulator(SimulationConfig(start=date(2026, 1, 5), days=days, n_customers=60, n_terminals=30, seed=3))
    raw = sim.transactions().head(400).copy()
    # Messy but valid spellings the derivation must normalise the same way everywhere.
    raw.loc[raw.index[:20], "currency"] = raw["currency"].iloc[:20].str.lower()
    raw.loc[raw.index[20:40], "channel"] = " " + raw["channel"].iloc[20:40].str.upper() + " "
    raw.loc[raw.index[40:60], "terminal_id"] = raw["terminal_id"].iloc[40:60] + "  "
    return raw


def _write_raw(store: LocalLakeStore, raw: pd.DataFrame) -> None:
    frame = raw.assign(
        schema_version=1, _kafka_topic="transactions", _kafka_partition=0,
        _kafka_offset=range(len(raw)), _ingested_at=raw["event_time"], _batch_id="b1",
    )
    for day, part in frame.groupby(frame["event_time"].dt.date):
        table = pa.Table.from_pandas(part[RAW_TRANSACTIONS_SCHEMA.names], schema=RAW_TRANSACTIONS_SCHEMA, preserve_index=False)
        store.write_parquet(RAW_TRANSACTIONS.partition_prefix(day) + "/part-b1.parquet", table)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[DERIVED_COLUMNS].sort_values("transaction_id").reset_index(drop=True)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).astype("datetime64[us, UTC]")
    frame["event_date"] = pd.to_datetime(frame["event_date"]).dt.date
    for column in ("hour", "day_of_week"):
        frame[column] = frame[column].astype("int32")
    return frame


@pytest.mark.slow
def test_spark_and_pandas_derive_identical_rows(spark, tmp_path):
    raw = _raw()
    store = LocalLakeStore(tmp_path / "lake")
    _write_raw(store, raw)
    frame, days = read_partitions(spark, store, RAW_TRANSACTIONS, sorted({d for d in raw["event_time"].dt.date}))
    assert len(days) == 2
    spark_rows = _sorted(normalise_transactions(frame).toPandas())
    pandas_rows = _sorted(derive_processed_rows(raw))
    assert len(spark_rows) == len(raw)
    assert set(pandas_rows["channel"]) <= {"card_present", "contactless", "ecommerce", "atm", "moto"}
    pd.testing.assert_frame_equal(spark_rows, pandas_rows, check_exact=True)


def test_scorer_and_datasets_use_the_same_derivation():
    from spark_streaming.scoring import processed_frame

    raw = _raw(days=1)
    accepted = pa.Table.from_pandas(raw, preserve_index=False)
    pd.testing.assert_frame_equal(_sorted(processed_frame(accepted)), _sorted(derive_processed_rows(raw)), check_exact=True)
