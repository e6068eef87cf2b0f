"""Processed and sandbox zones built by the real Spark code on a crafted raw lake, compared with an
independent pandas statement of the rules (``reference``)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_platform.domain.schema import PROCESSED_TRANSACTIONS_SCHEMA, SANDBOX_TRANSACTIONS_SCHEMA
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.processing import MaturityPolicy, labels_watermark, matured_at, run_processed, run_sandbox
from fraud_platform.processing.zones import SPLITS_KEY, ImmaturePartitionsError
from fraud_platform_tests.lake.fixtures import D1, D2, label, label_rows, land_scenario, raw_rows, tx, write_raw
from fraud_platform_tests.lake.reference import expected_processed, expected_sandbox, normalised

pytestmark = pytest.mark.slow
PROCESSED_AT = datetime(2026, 1, 20, 3, 0, tzinfo=timezone.utc)


def _read(store, zone: str, day: date, contract: pa.Schema) -> pd.DataFrame:
    keys = store.parquet_keys(zone, "transactions", day)
    assert len(keys) == 1, f"expected one file in {zone} {day}, found {keys}"
    assert pq.read_schema(store.uri(keys[0])).remove_metadata() == contract
    return normalised(store.read_parquet(keys))


@pytest.fixture(scope="module")
def lifecycle(spark, tmp_path_factory):
    """One lake through a partition's life: processed built before most labels landed, then the
    labels arrive, the sandbox is built, and processed D1 is rebuilt (D2 left alone)."""
    store = LocalLakeStore(tmp_path_factory.mktemp("lake"))
    land_scenario(store, label_days={date(2026, 1, 6)})
    early = run_processed(spark, store, [D1, D2], maturity_days=7, processed_at=PROCESSED_AT)
    d2_files = store.parquet_keys("processed", "transactions", D2)
    land_scenario(store)
    sandbox = run_sandbox(spark, store, [D1], MaturityPolicy(maturity_days=7))
    rebuilt = run_processed(spark, store, [D1], maturity_days=7, processed_at=PROCESSED_AT)
    return {"store": store, "early": early, "sandbox": sandbox, "rebuilt": rebuilt, "d2_files": d2_files}


def test_processed_equals_independent_pandas_expectation(lifecycle):
    store = lifecycle["store"]
    early_labels = [r for r in label_rows() if r["known_at"].date() == date(2026, 1, 6)]
    pd.testing.assert_frame_equal(
        _read(store, "processed", D1, PROCESSED_TRANSACTIONS_SCHEMA), expected_processed(raw_rows(D1), label_rows(), 7, PROCESSED_AT)
    )
    pd.testing.assert_frame_equal(
        _read(store, "processed", D2, PROCESSED_TRANSACTIONS_SCHEMA), expected_processed(raw_rows(D2), early_labels, 7, PROCESSED_AT)
    )
    got = _read(store, "processed", D1, PROCESSED_TRANSACTIONS_SCHEMA).set_index("transaction_id")
    assert got.loc["tx000001", "amount"] == 10.0  # first landed copy wins over the re-delivery
    assert got.loc["tx000004", "amount"] == 5000.0  # same landing: lower Kafka offset wins
    assert got.loc["tx000004", "is_fraud"] == 1 and got.loc["tx000004", "label_type"] == "confirmed_fraud"
    assert pd.isna(got.loc["tx000003", "is_fraud"])  # its label arrived after maturity
    assert pd.isna(got.loc["tx000005", "is_fraud"])  # "label" known before the transaction
    assert got.loc["tx000002", "amount_eur"] == pytest.approx(92.0)
    stats = lifecycle["rebuilt"].partitions.set_index("date")
    assert stats.loc["2026-01-05", ["raw_rows", "processed_rows", "duplicates_removed", "labelled_rows", "fraud_labels"]].tolist() == [9, 6, 3, 4, 3]


def test_processed_rebuild_overwrites_only_its_partition_and_picks_up_late_labels(lifecycle):
    store = lifecycle["store"]
    early = lifecycle["early"].partitions.set_index("date")
    assert early.loc["2026-01-05", "fraud_labels"] == 0 and early.loc["2026-01-05", "labelled_rows"] == 1
    assert lifecycle["rebuilt"].totals()["fraud_labels"] == 3
    assert store.parquet_keys("processed", "transactions", D2) == lifecycle["d2_files"]  # untouched


def test_sandbox_has_final_labels_for_matured_partitions_only(spark, lifecycle):
    store, run = lifecycle["store"], lifecycle["sandbox"]
    assert labels_watermark(store) == datetime(2026, 1, 14, 10, tzinfo=timezone.utc)
    # Processed D1 was built before these labels landed; the sandbox still has them, and no later ones.
    got = _read(store, "sandbox", D1, SANDBOX_TRANSACTIONS_SCHEMA)
    pd.testing.assert_frame_equal(got, expected_sandbox(raw_rows(D1), label_rows(), 7, split="test"))
    assert (got["label_known_at"].dropna() < matured_at(D1, 7)).all()
    assert got.set_index("transaction_id").loc["tx000003", "is_fraud"] == 0  # label came after maturity
    assert got["is_fraud"].sum() == 3
    plan = store.read_json(SPLITS_KEY)
    assert plan["splits"] == run.splits.as_dict() and plan["maturity_days"] == 7

    with pytest.raises(ImmaturePartitionsError, match=r"2026-01-10 .*matures at 2026-01-18T00:00:00\+00:00"):
        run_sandbox(spark, store, [D1, D2], MaturityPolicy(maturity_days=7))
    assert store.partition_dates("sandbox", "transactions") == ["2026-01-05"]


def test_sandbox_with_no_labels_landed_matures_nothing(spark, lake_root):
    store = LocalLakeStore(lake_root)
    land_scenario(store, label_days=set())
    with pytest.raises(ImmaturePartitionsError, match="no labels landed"):
        run_sandbox(spark, store, [D1], MaturityPolicy(maturity_days=7))
    assert store.partition_dates("sandbox", "transactions") == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (tx("tx900001", "2026-01-05T10:00:00", 5, "XYZ"), "no FX rate for currency=XYZ (transaction_id=tx900001)"),
        (tx("tx900002", "2026-01-06T10:00:00", 5), "event_time=2026-01-06 10:00:00 of transaction_id=tx900002 is outside its raw partition date=2026-01-05"),
    ],
    ids=["unknown-currency", "misfiled-event"],
)
def test_bad_raw_record_fails_naming_field_and_value(spark, lake_root, row, message):
    store = LocalLakeStore(lake_root)
    write_raw(store, "transactions", D1, [tx("tx000001", "2026-01-05T01:00:00"), row])
    write_raw(store, "labels", D1, [label("tx000001", "2026-01-05T02:00:00")])
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        run_processed(spark, store, [D1], maturity_days=7)
    assert store.partition_dates("processed", "transactions") == []  # nothing half-written


def test_s3_lake_without_s3a_in_spark_fails_clearly(spark):
    from fraud_platform.infra.lake import S3LakeStore

    store = S3LakeStore(client=None, bucket="fraud-lake", prefix="lake")
    with pytest.raises(RuntimeError, match=r"lake backend is S3 \(s3://fraud-lake/lake\) but this Spark has no s3a filesystem \(hadoop-aws jar missing\)"):
        run_processed(spark, store, [D1], maturity_days=7)


def test_zero_amount_account_verifications_are_kept_and_marked(spark, tmp_path):
    store = LocalLakeStore(tmp_path / "lake")
    write_raw(store, "transactions", D1, [tx("tx800001", "2026-01-05T09:00:00", 0), tx("tx800002", "2026-01-05T09:30:00", 12)])
    write_raw(store, "labels", D1, [label("tx800002", "2026-01-05T10:00:00")])
    run_processed(spark, store, [D1], maturity_days=7, processed_at=PROCESSED_AT)
    got = _read(store, "processed", D1, PROCESSED_TRANSACTIONS_SCHEMA).set_index("transaction_id")
    assert got["is_account_verification"].to_dict() == {"tx800001": True, "tx800002": False}
    assert got.loc["tx800001", "amount_eur"] == 0.0
