"""Expectation suites per lake dataset, derived from the pyarrow contracts in ``domain.schema`` so
a contract change updates its checks. A suite has two halves: expectations on every row whatever its
day (contract, value sets, ranges, pair orderings), and expectations bound to one partition (its day
bounds the event times, the previous partition's size bounds the row count, ids are unique within
it, its fraud rate is bounded). ``runner`` evaluates the first half once over several partitions and
the second half per partition, restricted to that partition's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column
import pandas as pd
import pyarrow as pa

from fraud_platform.domain import catalogue
from fraud_platform.domain.catalogue import Dataset
from fraud_platform.domain.schema import (
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    FX_TO_EUR,
    LABEL_TYPES,
    MAX_AMOUNT_EUR,
    PROCESSED_TRANSACTIONS_SCHEMA,
    RAW_LABELS_SCHEMA,
    RAW_TRANSACTIONS_SCHEMA,
    SANDBOX_TRANSACTIONS_SCHEMA,
)

# How GX's pandas engine names a column's type once the partition is loaded by ``runner``.
_GX_TYPE = {
    pa.string(): "str",
    pa.float64(): "float64",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.bool_(): "bool",
    pa.date32(): "date",
}
SPLIT_NAMES = ("train", "validation", "test", "excluded")
# Largest plausible raw amount in any local currency (the EUR cap in the weakest currency).
MAX_RAW_AMOUNT = MAX_AMOUNT_EUR / min(FX_TO_EUR.values())


@dataclass(frozen=True)
class QualityBounds:
    fraud_rate_min: float = 0.0
    fraud_rate_max: float = 0.05
    row_count_tolerance: float = 0.5


@dataclass(frozen=True)
class PartitionContext:
    day: date
    rows: tuple[int, int]  # [first, end) row positions of this partition in the validated frame
    previous_row_count: int | None = None

    @property
    def scope(self) -> dict:
        """Keyword arguments restricting a partition's expectation to its own rows; ``meta`` names
        the partition so results map back to it."""
        first, end = self.rows
        return {"row_condition": (Column("index") >= first) & (Column("index") < end), "meta": {"partition": self.day.isoformat()}}

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(datetime.combine(self.day, time(), tzinfo=timezone.utc))

    @property
    def last_instant(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


def _gx_type(arrow_type: pa.DataType) -> str:
    return "Timestamp" if pa.types.is_timestamp(arrow_type) else _GX_TYPE[arrow_type]


def contract_expectations(contract: pa.Schema) -> list:
    """Exact column list and order, each column's type, and non-null for required columns."""
    out: list = [gxe.ExpectTableColumnsToMatchOrderedList(column_list=contract.names)]
    out += [gxe.ExpectColumnValuesToBeOfType(column=f.name, type_=_gx_type(f.type)) for f in contract]
    out += [gxe.ExpectColumnValuesToNotBeNull(column=f.name) for f in contract if not f.nullable]
    return out


def _within_day(column: str, ctx: PartitionContext) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=ctx.start, max_value=ctx.last_instant, **ctx.scope)


def _row_count(ctx: PartitionContext, bounds: QualityBounds) -> list:
    if not ctx.previous_row_count:
        return []
    prev = ctx.previous_row_count
    return [gxe.ExpectTableRowCountToBeBetween(
        min_value=int(prev * (1 - bounds.row_count_tolerance)), max_value=int(prev * (1 + bounds.row_count_tolerance)) + 1,
        **ctx.scope,
    )]


def _transaction_values() -> list:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(CURRENCIES)),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=list(CHANNELS)),
        gxe.ExpectColumnValuesToBeInSet(column="country", value_set=sorted(COUNTRIES)),
    ]


def raw_transactions_rows() -> list:
    return [
        *contract_expectations(RAW_TRANSACTIONS_SCHEMA),
        *_transaction_values(),
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True, max_value=MAX_RAW_AMOUNT),
    ]


def raw_transactions_partition(ctx: PartitionContext, bounds: QualityBounds) -> list:
    return [_within_day("event_time", ctx), *_row_count(ctx, bounds)]


def raw_labels_rows() -> list:
    return [
        *contract_expectations(RAW_LABELS_SCHEMA),
        gxe.ExpectColumnValuesToBeInSet(column="label_type", value_set=list(LABEL_TYPES)),
        # Scenarios 1-4 on frauds (4: the simulator's optional drift); real histories also put 0
        # ("none") on legitimate rows.
        gxe.ExpectColumnValuesToBeInSet(column="fraud_scenario", value_set=[1, 2, 3, 4],
                                        row_condition=Column("is_fraud") == True),  # noqa: E712 (a GX condition, not a comparison)
        gxe.ExpectColumnValuesToBeInSet(column="fraud_scenario", value_set=[0],
                                        row_condition=Column("is_fraud") == False),  # noqa: E712
    ]


def raw_labels_partition(ctx: PartitionContext, bounds: QualityBounds) -> list:
    return [_within_day("known_at", ctx)]


def _curated_rows(contract: pa.Schema) -> list:
    return [
        *contract_expectations(contract),
        *_transaction_values(),
        gxe.ExpectColumnValuesToBeBetween(column="amount_eur", min_value=0, strict_min=True, max_value=MAX_AMOUNT_EUR),
        gxe.ExpectColumnValuesToBeBetween(column="hour", min_value=0, max_value=23),
        gxe.ExpectColumnValuesToBeBetween(column="day_of_week", min_value=0, max_value=6),
        gxe.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[0, 1]),
        # A label can never be known before the transaction happened.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="label_known_at", column_B="event_time", or_equal=True, ignore_row_if="either_value_is_missing"
        ),
    ]


def curated_partition(ctx: PartitionContext, bounds: QualityBounds) -> list:
    return [
        gxe.ExpectColumnValuesToBeUnique(column="transaction_id", **ctx.scope),
        gxe.ExpectColumnValuesToBeBetween(column="event_date", min_value=ctx.day, max_value=ctx.day, **ctx.scope),
        _within_day("event_time", ctx),
        *_row_count(ctx, bounds),
    ]


def processed_transactions_rows() -> list:
    return _curated_rows(PROCESSED_TRANSACTIONS_SCHEMA)


def sandbox_transactions_rows() -> list:
    return [
        *_curated_rows(SANDBOX_TRANSACTIONS_SCHEMA),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLIT_NAMES)),
        # The sandbox's promise: every label it carries was known before the partition matured.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="matured_at", column_B="label_known_at", ignore_row_if="either_value_is_missing"
        ),
    ]


def sandbox_transactions_partition(ctx: PartitionContext, bounds: QualityBounds) -> list:
    return [
        *curated_partition(ctx, bounds),
        gxe.ExpectColumnMeanToBeBetween(column="is_fraud", min_value=bounds.fraud_rate_min, max_value=bounds.fraud_rate_max,
                                        **ctx.scope),
    ]


@dataclass(frozen=True)
class DatasetSuite:
    """The expectations of one catalogue dataset (its contract is the catalogue's schema)."""

    target: Dataset
    rows: Callable[[], list]  # on every row, whatever its partition
    partition: Callable[[PartitionContext, QualityBounds], list]  # bound to one partition's day and size
    id_column: str = "transaction_id"

    @property
    def name(self) -> str:
        return self.target.asset_key

    @property
    def zone(self) -> str:
        return self.target.zone

    @property
    def dataset(self) -> str:
        return self.target.name

    @property
    def contract(self) -> pa.Schema:
        return self.target.schema

    @property
    def source(self) -> Dataset | None:
        """Dataset this one is built from: a partition missing in both is an empty day, not a failure."""
        return self.target.source
    # True when a day may legitimately have no partition at all (no label became known that day,
    # e.g. the first week of a history, before any chargeback arrived).
    may_be_missing: bool = False


DATASETS: dict[str, DatasetSuite] = {
    s.name: s
    for s in (
        DatasetSuite(catalogue.RAW_TRANSACTIONS, raw_transactions_rows, raw_transactions_partition),
        DatasetSuite(catalogue.RAW_LABELS, raw_labels_rows, raw_labels_partition, may_be_missing=True),
        DatasetSuite(catalogue.PROCESSED_TRANSACTIONS, processed_transactions_rows, curated_partition),
        DatasetSuite(catalogue.SANDBOX_TRANSACTIONS, sandbox_transactions_rows, sandbox_transactions_partition),
    )
}


def previous_day(day: date) -> date:
    return day - timedelta(days=1)
