"""Validate lake partitions with GX Core 1.x in an ephemeral context (nothing written to disk) and
reduce GX's result to what an on-call engineer needs, per partition: which expectation failed, on
which column, with which values and which transaction_ids."""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa

from fraud_platform.infra.lake import LakeStore
from fraud_platform.quality.suites import DatasetSuite, PartitionContext, QualityBounds, previous_day

MAX_REPORTED = 20
# Offending rows whose values and ids are read back from the frame (the report keeps MAX_REPORTED distinct ones).
MAX_ROWS_READ_BACK = 1_000
# Rows per GX run when partitions are validated together (bounds the concatenated frame's memory).
MAX_ROWS_PER_RUN = 500_000
# A partition waiting to be validated: its day, the previous partition's row count, its rows.
PendingPartition = tuple[date, int | None, pd.DataFrame]
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


def _failure(result: Any, frame: pd.DataFrame, id_column: str, positions: list[int] | None = None) -> FailedExpectation:
    """One failed GX result as a report. Offending rows come from GX's ``unexpected_index_list``
    (row positions in ``frame``, or only those of ``positions`` when a result over several partitions
    is split between them); their values and ids are read back from the frame."""
    config = result.expectation_config
    details = result.result or {}
    kwargs = config.kwargs
    pair = ("column_A" in kwargs) and [kwargs["column_A"], kwargs["column_B"]]
    column = kwargs.get("column") or (",".join(pair) if pair else None)
    if positions is None:
        positions = list(details.get("unexpected_index_list") or [])
    shown = positions[:MAX_ROWS_READ_BACK]
    if shown and (kwargs.get("column") or pair):
        rows = frame.iloc[shown]
        raw_values = rows[kwargs["column"]].tolist() if kwargs.get("column") else list(zip(rows[pair[0]], rows[pair[1]]))
    else:
        raw_values = list(details.get("partial_unexpected_list") or [])
    values = list(dict.fromkeys(_short(v) for v in raw_values))
    ids = list(dict.fromkeys(str(t) for t in frame[id_column].iloc[shown] if pd.notna(t))) if id_column in frame.columns else []
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = _short(result.exception_info.get("exception_message"))
    observed = details.get("observed_value")
    return FailedExpectation(
        expectation=config.type,
        column=column,
        unexpected_count=len(positions) if positions else details.get("unexpected_count"),
        unexpected_values=values[:MAX_REPORTED],
        transaction_ids=ids[:MAX_REPORTED],
        observed_value=None if observed is None else _short(observed),
        error=error,
    )


def run_expectations(df: pd.DataFrame, expectations: list, name: str = "partition") -> list:
    """Run ``expectations`` on ``df`` in an ephemeral GX context; returns GX's results, whose
    ``unexpected_index_list`` holds row positions (``df`` must have a RangeIndex)."""
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
    return list(batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format).results)


def _validate_together(suite: DatasetSuite, bounds: QualityBounds, parts: list[PendingPartition]) -> list[ValidationOutcome]:
    """Validate partitions of one shape, given as (day, previous partition's row count, frame), in a
    single GX run: GX's cost is per run (it builds a metric graph of the ~70 expectations, seconds
    each time) far more than per row. Row-level expectations run once over the concatenated rows and
    their failures are split by row position; each partition's own expectations run on its rows
    only (``PartitionContext.scope``)."""
    frame = pd.concat([df for _, _, df in parts], ignore_index=True)
    ends = list(itertools.accumulate(len(df) for _, _, df in parts))
    contexts = [PartitionContext(day, (end - len(df), end), previous) for (day, previous, df), end in zip(parts, ends)]
    expectations = [*suite.rows(), *(e for ctx in contexts for e in suite.partition(ctx, bounds))]
    days = [day for day, _, _ in parts]
    evaluated = dict.fromkeys(days, 0)
    failures: dict[date, list[FailedExpectation]] = {day: [] for day in days}
    for result in run_expectations(frame, expectations, name=suite.name):
        own_day = (result.expectation_config.meta or {}).get("partition")
        if own_day is not None:
            day = date.fromisoformat(own_day)
            evaluated[day] += 1
            if not result.success:
                failures[day].append(_failure(result, frame, suite.id_column))
            continue
        for day in days:
            evaluated[day] += 1
        if result.success:
            continue
        positions = (result.result or {}).get("unexpected_index_list")
        if not positions:  # a table-level fact (columns, types) or an error: true of every partition here
            for day in days:
                failures[day].append(_failure(result, frame, suite.id_column))
            continue
        by_partition: dict[int, list[int]] = {}
        for position in positions:
            by_partition.setdefault(bisect.bisect_right(ends, position), []).append(position)
        for index, owned in by_partition.items():
            failures[days[index]].append(_failure(result, frame, suite.id_column, owned))
    return [ValidationOutcome(suite.name, day, len(df), evaluated[day], failures[day]) for day, _, df in parts]


def validate_partitions(store: LakeStore, suite: DatasetSuite, days: list[date], bounds: QualityBounds,
                        max_rows: int = MAX_ROWS_PER_RUN) -> list[ValidationOutcome]:
    """Validate daily partitions, each against its own day and its predecessor's row count. A
    missing partition is a failure unless its source is missing too or the dataset may have empty
    days (labels). Partitions are validated together, up to ``max_rows`` rows per GX run."""
    days = sorted(set(days))
    outcomes: dict[date, ValidationOutcome] = {}
    rows_of: dict[date, int] = {}
    batch: list[PendingPartition] = []

    def flush() -> None:
        shapes: dict[tuple, list[PendingPartition]] = {}
        for day, previous, df in batch:  # a partition whose columns or types differ is validated apart
            shapes.setdefault(tuple(zip(df.columns, map(str, df.dtypes))), []).append((day, previous, df))
        for parts in shapes.values():
            outcomes.update((o.day, o) for o in _validate_together(suite, bounds, parts))
        batch.clear()

    for day in days:
        df = load_partition_frame(store, suite, day)
        if df is None:
            outcomes[day] = _missing_partition(store, suite, day)
            continue
        if batch and sum(len(f) for _, _, f in batch) + len(df) > max_rows:
            flush()
        before = previous_day(day)
        previous_rows = rows_of[before] if before in rows_of else partition_row_count(store, suite, before)
        rows_of[day] = len(df)
        batch.append((day, previous_rows, df))
    flush()
    return [outcomes[day] for day in days]


def validate_partition(store: LakeStore, suite: DatasetSuite, day: date, bounds: QualityBounds) -> ValidationOutcome:
    """Validate one daily partition (see ``validate_partitions``)."""
    return validate_partitions(store, suite, [day], bounds)[0]


def _missing_partition(store: LakeStore, suite: DatasetSuite, day: date) -> ValidationOutcome:
    if suite.may_be_missing or (suite.source and not store.parquet_keys(suite.source, day)):
        return ValidationOutcome(suite.name, day, 0, 0, [])
    missing = FailedExpectation("partition_exists", None, error=f"no parquet files under {suite.target.partition_prefix(day)}")
    return ValidationOutcome(suite.name, day, 0, 1, [missing])
