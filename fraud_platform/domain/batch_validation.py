"""Validation of many transaction payloads at once, with exactly the outcome of
:meth:`TransactionValidator.parse` for every record.

A payload takes the columnar fast path (one pyarrow JSON parse and vectorised rules for the whole
batch) only when it is plainly well-formed: one JSON object on one line, every field present and
non-null, ``event_time`` in the canonical ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` form, and every rule
passed. Everything else, every rejection included, goes through ``TransactionValidator.parse``, so
reasons and edge cases (duplicate keys, defaults, escapes, odd number forms) have one implementation.
The per-record path costs ~10 us a record; the streaming scorer spends most of its time there.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from fraud_platform.domain.schema import (
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    EARLIEST_EVENT_TIME,
    FX_TO_EUR,
    MAX_AMOUNT_EUR,
    MAX_SINK_INT,
    MERCHANT_CATEGORIES,
    MIN_SINK_INT,
    TRANSACTION_FIELDS,
    TransactionEvent,
)
from fraud_platform.domain.validation import Rejection, TransactionValidator

_TS = pa.timestamp("us", tz="UTC")
# The accepted events, one column per TransactionEvent field (amounts as float, as everywhere downstream).
ACCEPTED_SCHEMA = pa.schema(
    [
        pa.field(name, _TS if name == "event_time" else pa.float64() if name == "amount" else pa.int64() if name == "schema_version" else pa.string())
        for name in TRANSACTION_FIELDS
    ]
)
_PARSE_SCHEMA = pa.schema([f.with_type(pa.string()) if f.name == "event_time" else f for f in ACCEPTED_SCHEMA])
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="error")
_CANONICAL_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
# Codes (currency, channel, ...) are checked against known sets; only these can carry arbitrary text.
_FREE_TEXT_FIELDS = ("transaction_id", "customer_id", "card_token", "terminal_id")
# A stretch of 13+ digits/separators not glued to a letter or digit: a superset of where a PAN can
# be (see domain.card_data), which hex tokens and ids practically never match.
_DIGIT_STRETCH = r"(^|[^0-9A-Za-z])[0-9][0-9 -]{11,}[0-9]($|[^0-9A-Za-z])"
_CURRENCY_CODES = pa.array(sorted(CURRENCIES))
_FX_BY_CODE = pa.array([FX_TO_EUR[c] for c in sorted(CURRENCIES)], pa.float64())
_CHANNELS, _COUNTRIES, _MCCS = pa.array(list(CHANNELS)), pa.array(sorted(COUNTRIES)), pa.array(sorted(MERCHANT_CATEGORIES))
# Below this many records a failed block parse is not split further: the slow path takes them.
_SMALLEST_BLOCK = 64
# The columnar path costs ~2 ms a call whatever the size; per record it wins from a few hundred up.
COLUMNAR_FROM = 300


@dataclass
class ValidatedBatch:
    """``accepted`` rows (``ACCEPTED_SCHEMA``) sit at input ``positions``; every other input index
    has exactly one entry in ``rejections``. Both are in input order."""

    accepted: pa.Table
    positions: np.ndarray
    rejections: list[tuple[int, Rejection]]
    fast_path_rows: int = 0


def validate_transactions(
    values: Sequence[bytes | None], validator: TransactionValidator, columnar_from: int = COLUMNAR_FROM
) -> ValidatedBatch:
    """Validate ``values`` (raw Kafka payloads) in input order; see the module docstring.

    Fewer than ``columnar_from`` values all take the per-record path (cheaper for small batches).
    """
    n = len(values)
    candidates = np.fromiter(
        (v is not None and v[:1] == b"{" and v[-1:] == b"}" and b"\n" not in v and b"\r" not in v for v in values),
        dtype=bool, count=n,
    ) if n >= columnar_from else np.zeros(n, dtype=bool)
    index = np.flatnonzero(candidates)
    fast_tables, fast_positions, slow = [], [], list(np.flatnonzero(~candidates))
    limit = validator.future_limit()
    for start, stop, table in _parsed_blocks(values, index, 0, len(index), slow):
        ok, table = _checked(table, limit, validator.accept_zero_amount)
        passed = ok.to_numpy(zero_copy_only=False)
        fast_tables.append(table.filter(ok))
        fast_positions.append(index[start:stop][passed])
        slow.extend(index[start:stop][~passed])

    slow_rows, slow_positions, rejections = [], [], []
    for i in sorted(int(i) for i in slow):
        parsed = validator.parse(values[i])
        if isinstance(parsed, Rejection):
            rejections.append((i, parsed))
        else:
            slow_rows.append(parsed)
            slow_positions.append(i)
    fast_rows = sum(len(t) for t in fast_tables)
    tables = [*fast_tables, _events_table(slow_rows)]
    positions = np.concatenate([*fast_positions, np.asarray(slow_positions, dtype=np.int64)]).astype(np.int64)
    order = np.argsort(positions, kind="stable")
    accepted = pa.concat_tables(tables).take(pa.array(order))
    return ValidatedBatch(accepted, positions[order], rejections, fast_path_rows=fast_rows)


def _parsed_blocks(values, index: np.ndarray, start: int, stop: int, slow: list):
    """Yield ``(start, stop, table)`` for parseable runs of ``index[start:stop]``.

    A block that pyarrow refuses (one bad record fails the whole parse) is halved until the bad
    records are isolated in small blocks, which go to the per-record path via ``slow``.
    """
    if stop <= start:
        return
    block = [values[i] for i in index[start:stop]]
    try:
        table = pj.read_json(io.BytesIO(b"\n".join(block)), parse_options=_PARSE_OPTIONS)
        if table.num_rows == stop - start:  # two objects on one line would make more rows
            yield start, stop, table
            return
    except (pa.ArrowException, UnicodeDecodeError):  # the parse's verdict on the block; the slow path explains
        pass
    if stop - start <= _SMALLEST_BLOCK:
        slow.extend(index[start:stop])
        return
    middle = (start + stop) // 2
    yield from _parsed_blocks(values, index, start, middle, slow)
    yield from _parsed_blocks(values, index, middle, stop, slow)


def _length_between(column: pa.ChunkedArray, low: int, high: int) -> pa.ChunkedArray:
    length = pc.utf8_length(column)
    return pc.and_(pc.greater_equal(length, low), pc.less_equal(length, high))


def _string_constraints() -> dict[str, tuple[int, int]]:
    """(min, max) length of each constrained string field, read off the pydantic model."""
    bounds = {}
    for name, info in TransactionEvent.model_fields.items():
        low = next((m.min_length for m in info.metadata if getattr(m, "min_length", None) is not None), None)
        high = next((m.max_length for m in info.metadata if getattr(m, "max_length", None) is not None), None)
        if low is not None or high is not None:
            bounds[name] = (low or 0, high if high is not None else 1 << 31)
    return bounds


_STRING_BOUNDS = _string_constraints()


def _checked(table: pa.Table, future_limit, accept_zero_amount: bool = True) -> tuple[pa.Array, pa.Table]:
    """(True where the record is complete and passes every rule of ``TransactionValidator``,
    the table in ``ACCEPTED_SCHEMA`` with the times of the other rows nulled)."""
    ok = pc.match_substring_regex(table["event_time"], _CANONICAL_TIME)
    for name in _FREE_TEXT_FIELDS:
        # What might hold a card number or a control character is decided per record: non-ASCII
        # text (other scripts' digits), anything not printable, any stretch of 13+ digits/separators.
        column = table[name]
        plain = pc.and_(pc.string_is_ascii(column), pc.utf8_is_printable(column))
        ok = pc.and_(ok, pc.and_(plain, pc.invert(pc.match_substring_regex(column, _DIGIT_STRETCH))))
    for name in TRANSACTION_FIELDS:
        ok = pc.and_(ok, pc.is_valid(table[name]))  # missing (or null): defaults and errors are pydantic's call
    for name, (low, high) in _STRING_BOUNDS.items():
        ok = pc.and_(ok, _length_between(table[name], low, high))
    fx = pc.take(_FX_BY_CODE, pc.index_in(table["currency"], _CURRENCY_CODES))
    amount = table["amount"]
    ok = pc.and_(ok, pc.is_in(table["currency"], _CURRENCY_CODES))
    ok = pc.and_(ok, (pc.greater_equal if accept_zero_amount else pc.greater)(amount, 0.0))
    version = table["schema_version"]
    ok = pc.and_(ok, pc.and_(pc.greater_equal(version, MIN_SINK_INT), pc.less_equal(version, MAX_SINK_INT)))
    ok = pc.and_(ok, pc.less_equal(pc.multiply(amount, fx), MAX_AMOUNT_EUR))
    ok = pc.and_(ok, pc.is_in(table["channel"], _CHANNELS))
    ok = pc.and_(ok, pc.is_in(table["country"], _COUNTRIES))
    ok = pc.and_(ok, pc.is_in(table["merchant_category"], _MCCS))
    ok = pc.fill_null(ok, False).combine_chunks()
    # Times last, on canonical strings only: one impossible date fails the cast of the whole array.
    times = pc.if_else(ok, table["event_time"], pa.scalar(None, pa.string()))
    try:
        event_time = times.cast(_TS)
    except pa.ArrowInvalid:
        event_time = pa.array([_cast_or_none(t) for t in times.to_pylist()], _TS)
    earliest, latest = pa.scalar(EARLIEST_EVENT_TIME, _TS), pa.scalar(future_limit, _TS)
    in_range = pc.and_(pc.greater_equal(event_time, earliest), pc.less_equal(event_time, latest))
    ok = pc.fill_null(pc.and_(ok, in_range), False)
    return ok, table.set_column(table.schema.get_field_index("event_time"), "event_time", event_time).cast(ACCEPTED_SCHEMA)


def _cast_or_none(text: str | None):
    try:
        return None if text is None else pa.scalar(text).cast(_TS).as_py()
    except pa.ArrowInvalid:
        return None


def _events_table(events: list[TransactionEvent]) -> pa.Table:
    columns = {name: [getattr(e, name) for e in events] for name in TRANSACTION_FIELDS}
    columns["amount"] = [float(a) for a in columns["amount"]]
    return pa.Table.from_pydict(columns, schema=ACCEPTED_SCHEMA)
