"""The GX suites on crafted partitions: a clean partition passes, and each kind of bad partition
fails with the offending values and transaction_ids in the result (real GX, no Spark needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import pandas as pd
import pyarrow as pa
import pytest

from fraud_platform.infra.lake import LocalLakeStore, partition_prefix
from fraud_platform.quality import DATASETS, QualityBounds
from fraud_platform.quality.runner import validate_partition, validate_partitions
from fraud_platform_tests.lake.fixtures import D1, label_rows, raw_rows, scenario_labels
from fraud_platform_tests.lake.reference import expected_processed, expected_sandbox

PROCESSED_AT = datetime(2026, 1, 20, tzinfo=timezone.utc)
LENIENT = QualityBounds(fraud_rate_max=0.6)  # the crafted day is half fraud on purpose
LABEL_DAY = D1 + timedelta(days=1)


def good_frame(dataset: str) -> pd.DataFrame:
    contract = DATASETS[dataset].contract
    if dataset == "raw_transactions":
        return pa.Table.from_pylist(raw_rows(D1), schema=contract).to_pandas()
    if dataset == "raw_labels":
        return pa.Table.from_pylist(scenario_labels()[LABEL_DAY], schema=contract).to_pandas()
    if dataset == "processed_transactions":
        return expected_processed(raw_rows(D1), label_rows(), 7, PROCESSED_AT)
    return expected_sandbox(raw_rows(D1), label_rows(), 7, split="train")


def land(store, dataset: str, frame: pd.DataFrame, day=None, schema: pa.Schema | None = None) -> None:
    suite = DATASETS[dataset]
    day = day or (LABEL_DAY if dataset == "raw_labels" else D1)
    table = pa.Table.from_pandas(frame, schema=schema or suite.contract, preserve_index=False)
    store.write_parquet(f"{partition_prefix(suite.zone, suite.dataset, day)}/part-0.parquet", table)


def validate(store, dataset: str, bounds: QualityBounds = LENIENT):
    return validate_partition(store, DATASETS[dataset], LABEL_DAY if dataset == "raw_labels" else D1, bounds)


@pytest.fixture()
def store(tmp_path):
    return LocalLakeStore(tmp_path / "lake")


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_clean_partition_passes(store, dataset):
    land(store, dataset, good_frame(dataset))
    outcome = validate(store, dataset)
    assert outcome.success, [f.describe() for f in outcome.failures]
    assert outcome.rows == len(good_frame(dataset)) and outcome.evaluated > 20


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[row, column] = value
        return df
    return mutate


def _duplicate_first_row(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df.iloc[[0]]], ignore_index=True)


# (dataset, mutation, expectation that must fail, column, offending value shown, offending transaction_id)
BAD_PARTITIONS = [
    ("raw_transactions", _set("currency", 1, "XYZ"), "expect_column_values_to_be_in_set", "currency", "XYZ", "tx000002"),
    ("raw_transactions", _set("channel", 2, "telepathy"), "expect_column_values_to_be_in_set", "channel", "telepathy", "tx000003"),
    ("raw_transactions", _set("amount", 0, -5.0), "expect_column_values_to_be_between", "amount", "-5.0", "tx000001"),
    ("raw_transactions", _set("event_time", 3, pd.Timestamp("2026-01-06T00:00:00Z")), "expect_column_values_to_be_between", "event_time", "2026-01-06 00:00:00+00:00", "tx000004"),
    ("raw_labels", _set("label_type", 0, "rumour"), "expect_column_values_to_be_in_set", "label_type", "rumour", "tx000004"),
    ("raw_labels", _set("known_at", 1, pd.Timestamp("2026-01-05T08:00:00Z")), "expect_column_values_to_be_between", "known_at", "2026-01-05 08:00:00+00:00", "tx000004"),
    ("processed_transactions", _duplicate_first_row, "expect_column_values_to_be_unique", "transaction_id", "tx000001", "tx000001"),
    ("processed_transactions", _set("amount_eur", 4, 60_000.0), "expect_column_values_to_be_between", "amount_eur", "60000.0", "tx000005"),
    ("processed_transactions", _set("label_known_at", 1, pd.Timestamp("2026-01-05T11:00:00Z")), "expect_column_pair_values_a_to_be_greater_than_b", "label_known_at,event_time", None, "tx000002"),
    ("sandbox_transactions", _set("label_known_at", 1, pd.Timestamp("2026-01-13T00:00:00Z")), "expect_column_pair_values_a_to_be_greater_than_b", "matured_at,label_known_at", None, "tx000002"),
    ("sandbox_transactions", _set("split", 0, "holdout"), "expect_column_values_to_be_in_set", "split", "holdout", "tx000001"),
]


@pytest.mark.parametrize(("dataset", "mutate", "expectation", "column", "value", "transaction_id"), BAD_PARTITIONS,
                         ids=[f"{b[0]}-{b[2]}-{b[3]}" for b in BAD_PARTITIONS])
def test_bad_partition_fails_naming_rows_and_values(store, dataset, mutate, expectation, column, value, transaction_id):
    land(store, dataset, mutate(good_frame(dataset)))
    outcome = validate(store, dataset)
    assert not outcome.success
    failure = next(f for f in outcome.failures if f.expectation == expectation and f.column == column)
    assert transaction_id in failure.transaction_ids
    if value is not None:
        assert value in failure.unexpected_values


def test_schema_drift_fails_on_columns_and_types(store):
    frame = good_frame("raw_transactions").drop(columns=["country"])
    frame["amount"] = frame["amount"].astype(str)
    schema = pa.schema([f if f.name != "amount" else pa.field("amount", pa.string()) for f in DATASETS["raw_transactions"].contract if f.name != "country"])
    land(store, "raw_transactions", frame, schema=schema)
    failed = {(f.expectation, f.column) for f in validate(store, "raw_transactions").failures}
    assert ("expect_table_columns_to_match_ordered_list", None) in failed
    assert ("expect_column_values_to_be_of_type", "amount") in failed


def test_sandbox_fraud_rate_outside_configured_bounds_fails(store):
    land(store, "sandbox_transactions", good_frame("sandbox_transactions"))  # 3 of 6 are fraud
    failure = next(f for f in validate(store, "sandbox_transactions", QualityBounds(fraud_rate_max=0.05)).failures)
    assert failure.expectation == "expect_column_mean_to_be_between" and failure.observed_value == "0.5"


def test_row_count_is_checked_against_previous_partition(store):
    big = pd.concat([good_frame("processed_transactions")] * 5, ignore_index=True)
    big["transaction_id"] = [f"tx{i:06d}" for i in range(len(big))]
    big["event_date"] = (D1 - timedelta(days=1))
    big["event_time"] = big["event_time"] - pd.Timedelta(days=1)
    land(store, "processed_transactions", big, day=D1 - timedelta(days=1))
    land(store, "processed_transactions", good_frame("processed_transactions"))  # 6 rows after 30

    outcomes = validate_partitions(store, DATASETS["processed_transactions"], [D1 - timedelta(days=1), D1], LENIENT)
    assert outcomes[0].success
    assert [f.expectation for f in outcomes[1].failures] == ["expect_table_row_count_to_be_between"]
    assert outcomes[1].failures[0].observed_value == "6"


def test_missing_partition_fails_unless_its_source_is_missing_too(store):
    assert validate(store, "processed_transactions").success  # no raw, no processed: an empty day
    land(store, "raw_transactions", good_frame("raw_transactions"))
    outcome = validate(store, "processed_transactions")
    assert not outcome.success and "no parquet files under processed/transactions/date=2026-01-05" in outcome.failures[0].error
    assert validate(store, "raw_labels").success  # no label became known that day: an empty day
    assert not validate_partition(store, DATASETS["raw_transactions"], LABEL_DAY, LENIENT).success  # raw tx: a failure


def test_raw_labels_accept_scenario_zero_on_legitimate_rows_only(store):
    frame = good_frame("raw_labels")  # legitimate labels (is_fraud False)
    land(store, "raw_labels", frame.assign(fraud_scenario=pd.array([0] * len(frame), dtype="Int64")))
    assert validate(store, "raw_labels").success  # real histories mark "no scenario" as 0
    land(store, "raw_labels", frame.assign(fraud_scenario=pd.array([5] * len(frame), dtype="Int64")))
    failure = next(f for f in validate(store, "raw_labels").failures if f.column == "fraud_scenario")
    assert failure.unexpected_values == ["5"] and "tx000004" in failure.transaction_ids
    land(store, "raw_labels", frame.assign(is_fraud=True, fraud_scenario=pd.array([0] * len(frame), dtype="Int64")))
    assert any(f.column == "fraud_scenario" for f in validate(store, "raw_labels").failures)  # a fraud needs 1-3


def test_check_summary_says_what_it_leaves_out():
    from fraud_platform.defs.lake.checks import check_summary
    from fraud_platform.quality.runner import FailedExpectation, ValidationOutcome

    failing = [FailedExpectation(f"expect_{i}", "amount", 1) for i in range(5)]
    outcomes = [ValidationOutcome("raw_labels", D1 + timedelta(days=i), 10, 5, failing if i < 4 else []) for i in range(5)]
    summary = check_summary(outcomes)
    assert summary.startswith("4 of 5 partitions failed: 2026-01-05: expect_0(amount) 1 unexpected")
    assert "(+2 more failed expectations)" in summary and "+1 more failed partitions" in summary
    assert summary.endswith("(all in metadata 'failures').")
    assert check_summary(outcomes[4:]) == "1 partitions passed"


def _on_day(frame: pd.DataFrame, offset: int) -> pd.DataFrame:
    """The crafted processed partition moved ``offset`` days later (same transaction_ids)."""
    shift = pd.Timedelta(days=offset)
    return frame.assign(event_time=frame["event_time"] + shift, label_known_at=frame["label_known_at"] + shift,
                        event_date=D1 + timedelta(days=offset))


def test_partitions_validated_together_report_exactly_what_each_validated_alone_reports(store):
    """One GX run covers a range of partitions; every failure must still land on its own partition,
    with its own rows, exactly as when each partition is validated on its own."""
    good = good_frame("processed_transactions")
    days = [D1 + timedelta(days=i) for i in range(5)]
    land(store, "processed_transactions", _on_day(good, 0), day=days[0])  # clean (and shares ids with every other day)
    land(store, "processed_transactions", _set("amount_eur", 4, 60_000.0)(_on_day(good, 1)), day=days[1])
    land(store, "processed_transactions", _duplicate_first_row(_on_day(good, 2)), day=days[2])
    land(store, "processed_transactions", _set("event_time", 3, pd.Timestamp(days[4]).tz_localize("UTC"))(_on_day(good, 3)), day=days[3])
    drifted = _on_day(good, 4).astype({"hour": "float64"})
    land(store, "processed_transactions", drifted, day=days[4],
         schema=pa.schema([pa.field("hour", pa.float64()) if f.name == "hour" else f for f in DATASETS["processed_transactions"].contract]))

    together = validate_partitions(store, DATASETS["processed_transactions"], days, LENIENT)
    alone = validate_partitions(store, DATASETS["processed_transactions"], days, LENIENT, max_rows=1)  # one GX run each

    def report(outcomes):
        return [(o.day, o.rows, o.evaluated, sorted(f.describe() for f in o.failures)) for o in outcomes]

    assert report(together) == report(alone)
    failed = {o.day: {(f.expectation, f.column): f for f in o.failures} for o in together}
    assert failed[days[0]] == {}
    assert set(failed[days[1]]) == {("expect_column_values_to_be_between", "amount_eur")}
    assert failed[days[1]]["expect_column_values_to_be_between", "amount_eur"].transaction_ids == ["tx000005"]
    assert set(failed[days[2]]) == {("expect_column_values_to_be_unique", "transaction_id")}
    assert failed[days[2]]["expect_column_values_to_be_unique", "transaction_id"].unexpected_count == 2
    assert set(failed[days[3]]) == {("expect_column_values_to_be_between", "event_time")}
    assert failed[days[3]]["expect_column_values_to_be_between", "event_time"].transaction_ids == ["tx000004"]
    assert ("expect_column_values_to_be_of_type", "hour") in failed[days[4]]
