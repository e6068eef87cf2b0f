"""The validator is total: for ANY bytes it returns an event or a rejection naming rule, field and
value, never raises; the per-record and the columnar path agree on every record; and every
accepted record can be written to Parquet and inserted into PostgreSQL (so no sink can fail on
it). Property-based over arbitrary bytes and arbitrary JSON, plus the hostile corpus."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.card_data import contains_pan
from fraud_platform.domain.schema import RAW_TRANSACTIONS_SCHEMA, TRANSACTION_FIELDS
from fraud_platform.domain.validation import Rejection, TransactionValidator
from fraud_platform.infra.lake import parquet_bytes
from fraud_platform_tests.hostile import hostile_records
from fraud_platform_tests.ingestion.test_batch_validation import GOOD, NOW, assert_same_as_per_record

PG_DSN = os.environ.get("FRAUD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
EVENT_SCHEMA = pa.schema([RAW_TRANSACTIONS_SCHEMA.field(name) for name in TRANSACTION_FIELDS])
CORPUS_NOW = datetime(2026, 1, 3, tzinfo=timezone.utc)  # the corpus' valid records are from 2026-01-02


@pytest.fixture(scope="module")
def postgres_table():
    """A real PostgreSQL table shaped like the raw zone, in a schema unique to this run."""
    import psycopg

    schema = f"t16a_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(PG_DSN, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.raw_transactions (transaction_id TEXT, event_time TIMESTAMPTZ, customer_id TEXT, "
        "card_token TEXT, terminal_id TEXT, amount DOUBLE PRECISION, currency TEXT, merchant_category TEXT, "
        "channel TEXT, country TEXT, schema_version INTEGER)"
    )
    yield conn, f"{schema}.raw_transactions"
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def _rows(values: list[bytes | None], now: datetime) -> tuple[list[dict], list[Rejection]]:
    """Accepted rows (both paths agree, asserted) and rejections of ``values``."""
    assert_same_as_per_record(values, now=now)
    batch = validate_transactions(values, TransactionValidator(now=lambda: now), columnar_from=1)
    return batch.accepted.to_pylist(), [r for _, r in batch.rejections]


def _assert_storable(rows: list[dict], rejections: list[Rejection], postgres_table) -> None:
    """Accepted rows round-trip through Parquet and PostgreSQL; rejections are safe to write."""
    table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
    assert pq.read_table(pa.BufferReader(parquet_bytes(table))).equals(table)
    conn, name = postgres_table
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(TRANSACTION_FIELDS))})",
                        [tuple(r[f] for f in TRANSACTION_FIELDS) for r in rows])
    for rejection in rejections:
        assert rejection.rule != "unvalidatable", rejection  # the safety net must never be what decides
        for text in (rejection.field, rejection.value, rejection.message):
            assert text is None or ("\x00" not in text and not contains_pan(text)), rejection


def test_hostile_corpus_gets_its_documented_verdict_on_both_paths(postgres_table) -> None:
    corpus = hostile_records()
    assert len(corpus) >= 75
    validator = TransactionValidator(now=lambda: CORPUS_NOW)
    for record in corpus:
        verdict = validator.parse(record.payload)
        got = (verdict.rule, verdict.field) if isinstance(verdict, Rejection) else ("accept", None)
        assert got == (record.expect, record.field), record.reason
    rows, rejections = _rows([r.payload for r in corpus], CORPUS_NOW)
    assert len(rows) == sum(r.accepted for r in corpus)
    _assert_storable(rows, rejections, postgres_table)
    conn, name = postgres_table
    verifications = conn.execute(f"SELECT count(*) FROM {name} WHERE amount = 0").fetchone()[0]
    assert verifications >= 2  # zero-amount account verifications are stored as such


def test_zero_amount_verifications_can_be_switched_off() -> None:
    zero = GOOD.replace(b'"amount":12.5', b'"amount":0')
    assert TransactionValidator(now=lambda: NOW).parse(zero).is_account_verification
    refused = TransactionValidator(now=lambda: NOW, accept_zero_amount=False).parse(zero)
    assert (refused.rule, refused.field) == ("non_positive_amount", "amount")
    assert_same_as_per_record([zero] * 3, accept_zero_amount=False)
    negative = TransactionValidator(now=lambda: NOW).parse(GOOD.replace(b'"amount":12.5', b'"amount":-0.01'))
    assert negative.rule == "non_positive_amount"


def test_a_validator_bug_costs_one_record_not_the_stream(monkeypatch) -> None:
    def broken(self, event):
        raise ZeroDivisionError("a gap in a rule")

    monkeypatch.setattr(TransactionValidator, "check", broken)
    verdict = TransactionValidator(now=lambda: NOW).parse(GOOD)
    assert isinstance(verdict, Rejection) and verdict.rule == "unvalidatable" and "ZeroDivisionError" in verdict.message


# -- property-based --------------------------------------------------------------------------
_PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_digits_and_separators = st.from_regex(r"[0-9][0-9 -]{11,22}[0-9]", fullmatch=True)
_text = st.one_of(st.text(max_size=40), _digits_and_separators, st.sampled_from(["EUR", "FR", "5411", "ecommerce", "HUF"]))
_timestamps = st.builds(
    lambda dt, minutes, z: (dt.isoformat() + ("Z" if z else f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59), st.booleans(),
)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**400), 10**400), st.floats(allow_nan=True, allow_infinity=True),
    _text, _timestamps,
)
_json_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)), max_leaves=6)


_ids = st.one_of(st.text(min_size=1, max_size=70), _digits_and_separators, st.from_regex(r"tx-[0-9a-f]{24}", fullmatch=True))
# Values of the right JSON type but hostile content: what a schema check alone lets through.
_TYPED = {
    "transaction_id": _ids, "customer_id": _ids, "terminal_id": _ids, "card_token": _ids,
    "amount": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**400), 10**400), st.just(0)),
    "schema_version": st.integers(-(2**70), 2**70), "event_time": _timestamps,
    "currency": st.sampled_from(["EUR", "HUF", "JPY", "eur"]), "country": st.sampled_from(["FR", "JP", "ZZ"]),
}


@st.composite
def _documents(draw) -> bytes:
    """A valid record with fields given hostile values of the right type or arbitrary JSON,
    maybe one dropped, maybe one added."""
    record = json.loads(GOOD)
    record["transaction_id"] = f"tx-{draw(st.integers(0, 10**12)):012d}"
    for name in draw(st.lists(st.sampled_from(list(_TYPED)), max_size=3, unique=True)):
        record[name] = draw(_TYPED[name])
    if draw(st.integers(0, 4)) == 0:
        record[draw(st.sampled_from(list(record)))] = draw(_json_values)
    if draw(st.integers(0, 9)) == 0:
        record.pop(draw(st.sampled_from(list(record))))
    if draw(st.integers(0, 9)) == 0:
        record[draw(_text)] = draw(_json_values)
    return json.dumps(record, allow_nan=True, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@_PROPERTY
@given(values=st.lists(st.one_of(st.binary(max_size=300), st.none(), _documents().map(lambda d: d[: len(d) // 2])), min_size=1, max_size=4))
def test_any_bytes_are_decided_never_raised_and_both_paths_agree(values, postgres_table) -> None:
    rows, rejections = _rows([GOOD, *values], NOW)
    _assert_storable(rows, rejections, postgres_table)


@_PROPERTY
@given(values=st.lists(_documents(), min_size=1, max_size=4))
def test_any_json_is_decided_never_raised_and_both_paths_agree(values, postgres_table) -> None:
    rows, rejections = _rows([GOOD, *values], NOW)
    _assert_storable(rows, rejections, postgres_table)
    for row in rows:  # what is accepted is storable as the raw zone types say
        assert -(2**31) <= row["schema_version"] < 2**31 and row["amount"] >= 0
        assert EARLIEST <= row["event_time"] <= NOW + timedelta(hours=1)


EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
