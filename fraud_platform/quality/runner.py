"""Validate one lake partition with GX Core 1.x in an ephemeral context (nothing written to disk)
and reduce GX's result to what an on-call engineer needs: which expectation failed, on which column,
with which values and which transaction_ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa

from fraud_platform.infra.lake import LakeStore
from fraud_platform.quality.suites import DatasetSuite, PartitionContext, QualityBounds, previous_day

MAX_REPORTED = 20
# Nullable pandas dtypes keep int/bool columns typed even when they contain nulls.
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


@dataclass
class FailedExpectation:
    expectation: str
    column: str | None
    unexpected_count: int | None = None
    unexpected_values: list[str] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)
    observed_value: str | None = None
    error: str | None = None

    def describe(self) -> str:
        parts = [f"{self.expectation}({self.column or 'table'})"]
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} unexpected")
        if self.unexpected_values:
            parts.append(f"values={self.unexpected_values[:5]}")
        if self.transaction_ids:
            parts.append(f"transaction_ids={self.transaction_ids[:5]}")
        if self.observed_value is not None:
            parts.append(f"observed={self.observed_value}")
        if self.error:
            parts.append(f"error={self.error}")
        return " ".join(parts)


@dataclass
class ValidationOutcome:
    dataset: str
    day: date
    rows: int
    evaluated: int
    failures: list[FailedExpectation]

    @property
    def success(self) -> bool:
        return not self.failures


def load_partition_frame(store: LakeStore, suite: DatasetSuite, day: date) -> pd.DataFrame | None:
    table = store.read_partition(suite.target, day)
    return None if table is None else table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def partition_row_count(store: LakeStore, suite: DatasetSuite, day: date) -> int | None:
    """Row count from Parquet footers only (no data read)."""
    keys = store.parquet_keys(suite.target, day)
    if not keys:
        return None
    return sum(store.parquet_rows(k) for k in keys)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _failure(result: Any, id_column: str) -> FailedExpectation:
    config = result.expectation_config
    details = result.result or {}
    kwargs = config.kwargs
    column = kwargs.get("column") or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None)
    ids: list[str] = []
    for row in details.get("unexpected_index_list") or []:
        if isinstance(row, dict) and row.get(id_column) is not None and str(row[id_column]) not in ids:
            ids.append(str(row[id_column]))
    values = list(dict.fromkeys(_short(v) for v in (details.get("partial_unexpected_list") or [])))
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = _short(result.exception_info.get("exception_message"))
    observed = details.get("observed_value")
    return FailedExpectation(
        expectation=config.type,
        column=column,
        unexpected_count=details.get("unexpected_count"),
        unexpected_values=values[:MAX_REPORTED],
        transaction_ids=ids[:MAX_REPORTED],
        observed_value=None if observed is None else _short(observed),
        error=error,
    )


def validate_frame(df: pd.DataFrame, expectations: list, id_column: str = "transaction_id", name: str = "partition") -> tuple[int, list[FailedExpectation]]:
    """Run ``expectations`` on ``df``; returns (evaluated count, failures)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("lake").add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("partition")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "partial_unexpected_count": MAX_REPORTED}
    if id_column in df.columns:
        result_format["unexpected_index_column_names"] = [id_column]
    result = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format)
    return len(result.results), [_failure(r, id_column) for r in result.results if not r.success]


def validate_partition(store: LakeStore, suite: DatasetSuite, day: date, bounds: QualityBounds, previous_row_count: int | None = None) -> ValidationOutcome:
    """Validate one daily partition; a missing partition is a failure unless its source is missing
    too or the dataset may have empty days (labels)."""
    df = load_partition_frame(store, suite, day)
    if df is None and (suite.may_be_missing or (suite.source and not store.parquet_keys(suite.source, day))):
        return ValidationOutcome(suite.name, day, 0, 0, [])
    if df is None:
        missing = FailedExpectation("partition_exists", None, error=f"no parquet files under {suite.target.partition_prefix(day)}")
        return ValidationOutcome(suite.name, day, 0, 1, [missing])
    if previous_row_count is None:
        previous_row_count = partition_row_count(store, suite, previous_day(day))
    ctx = PartitionContext(day, previous_row_count)
    evaluated, failures = validate_frame(df, suite.build(ctx, bounds), suite.id_column, name=suite.name)
    return ValidationOutcome(suite.name, day, len(df), evaluated, failures)


def validate_partitions(store: LakeStore, suite: DatasetSuite, days: list[date], bounds: QualityBounds) -> list[ValidationOutcome]:
    """Validate consecutive partitions, each against its predecessor's row count."""
    outcomes: list[ValidationOutcome] = []
    previous: int | None = None
    for i, day in enumerate(sorted(days)):
        prior = previous if i and outcomes and outcomes[-1].day == previous_day(day) else None
        outcome = validate_partition(store, suite, day, bounds, prior)
        outcomes.append(outcome)
        previous = outcome.rows or None
    return outcomes
