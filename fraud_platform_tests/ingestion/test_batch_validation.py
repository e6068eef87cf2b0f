"""The columnar validator must decide every record exactly as the per-record validator does:
same accepted values, same rejection (rule, field, value, message), same input positions; and
clean records must actually take the fast path."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from fraud_platform.domain.bad_records import inject_invalid
from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.schema import TRANSACTION_FIELDS
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator, encode_transactions
from fraud_platform.domain.validation import Rejection, TransactionValidator

NOW = datetime(2025, 3, 5, 12, 0, tzinfo=timezone.utc)
GOOD = (
    b'{"transaction_id":"tx-00000001","event_time":"2025-03-02T10:00:00.250000Z","customer_id":"C1",'
    b'"card_token":"tok_12345678","terminal_id":"T1","amount":12.5,"currency":"EUR","merchant_category":"5411",'
    b'"channel":"ecommerce","country":"FR","schema_version":1}'
)


def _variant(old: bytes, new: bytes) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


# Records on the edge of what the JSON parser and the rules accept: each must end up as parse() says.
EDGE_CASES = [
    GOOD,
    b" " + GOOD + b" ",  # surrounding whitespace
    GOOD[:-1] + b',"amount":13}',  # duplicate key
    GOOD + GOOD,  # two objects in one message
    GOOD.replace(b",", b",\n"),  # pretty-printed over lines
    GOOD.replace(b',"schema_version":1', b""),  # default schema_version
    _variant(b'"schema_version":1', b'"schema_version":null'),
    _variant(b'"schema_version":1', b'"schema_version":1.0'),
    _variant(b'"schema_version":1', b'"schema_version":true'),
    _variant(b'"amount":12.5', b'"amount":12'),
    _variant(b'"amount":12.5', b'"amount":1.25e1'),
    _variant(b'"amount":12.5', b'"amount":12.500000000000000000001'),
    _variant(b'"amount":12.5', b'"amount":NaN'),
    _variant(b'"amount":12.5', b'"amount":Infinity'),
    _variant(b'"amount":12.5', b'"amount":123456789012345678901234567890'),
    _variant(b'"amount":12.5', b'"amount":"12.5"'),
    _variant(b'"amount":12.5', b'"amount":true'),
    _variant(b'"amount":12.5', b'"amount":-0.0'),
    _variant(b'"amount":12.5', b'"amount":50000'),
    _variant(b'"amount":12.5', b'"amount":50000.01'),
    _variant(b'"currency":"EUR"', b'"currency":"HUF"'),
    _variant(b'"currency":"EUR"', b'"currency":"eur"'),
    _variant(b'.250000Z', b'.25Z'),
    _variant(b'.250000Z', b'Z'),
    _variant(b'.250000Z', b'.2500001Z'),
    _variant(b'.250000Z', b'+00:00'),
    _variant(b'.250000Z', b'+02:00'),
    _variant(b'.250000Z', b'z'),
    _variant(b'.250000Z', b''),
    _variant(b'T10:00:00', b' 10:00:00'),
    _variant(b'2025-03-02T10', b'2025-02-30T10'),
    _variant(b'2025-03-02T10:00:00', b'2025-03-02T23:59:60'),
    _variant(b'2025-03-02T10', b'2025-03-02T24'),
    _variant(b'2025-03-02T10:00', b'2025-03-02T10:60'),
    _variant(b'2025-03-02', b'2023-02-29'),
    _variant(b'2025-03-02', b'2024-02-29'),
    _variant(b'2025-03-02', b'0000-01-01'),
    _variant(b'2025-03-02', b'1999-12-31'),
    _variant(b'2025-03-02', b'2025-03-05'),  # 10:00, before NOW
    _variant(b'2025-03-02T10', b'2025-03-05T12:59'),  # within the skew
    _variant(b'2025-03-02T10', b'2025-03-05T13:01'),  # beyond it
    _variant(b'"event_time":"2025-03-02T10:00:00.250000Z"', b'"event_time":1741000000'),
    _variant(b'"tx-00000001"', b'"tx-0001"'),  # too short
    _variant(b'"tx-00000001"', "\"\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\"".encode()),
    _variant(b'"tx-00000001"', b'"tx-\\u00e9\\u00e9\\u00e9\\u00e9"'),
    _variant(b'"tx-00000001"', b'"tx-\\ud800abcd"'),  # lone surrogate
    _variant(b'"tx-00000001"', b'"tx-0000\\u00000001"'),
    _variant(b'"tx-00000001"', b'12345678'),
    _variant(b'"C1"', b'""'),
    _variant(b'"tok_12345678"', b'"4539 1488 0343 6467"'),  # Luhn-valid PAN
    _variant(b'"tok_12345678"', b'"4539-1488-0343-6468"'),  # PAN-shaped, not Luhn-valid: a token
    _variant(b'"tok_12345678"', b'"\\u0664\\u0665\\u0663\\u0669\\u0661\\u0664\\u0668\\u0668\\u0660\\u0663\\u0664\\u0663\\u0666\\u0664\\u0666\\u0667"'),  # same PAN, Arabic-Indic digits as JSON escapes
    _variant(b'"tok_12345678"', "\"\u0664\u0665\u0663\u0669\u0661\u0664\u0668\u0668\u0660\u0663\u0664\u0663\u0666\u0664\u0666\u0667\"".encode()),  # unescaped UTF-8
    _variant(b'"channel":"ecommerce"', b'"channel":"pigeon"'),
    _variant(b'"country":"FR"', b'"country":"XX"'),
    _variant(b'"merchant_category":"5411"', b'"merchant_category":5411'),
    _variant(b'"merchant_category":"5411"', b'"merchant_category":"0000"'),
    _variant(b'"terminal_id":"T1"', b'"terminal_id":"T1","extra":1'),
    _variant(b',"terminal_id":"T1"', b""),
    b"[" + GOOD + b"]",
    b"{}",
    b"",
    b"   ",
    b"\xff\xfe",
    GOOD[:-1],
    None,
]


def assert_same_as_per_record(values: list[bytes | None], now: datetime = NOW, **options) -> int:
    """Compare with ``parse`` record by record; return how many took the fast path."""
    batch = validate_transactions(values, TransactionValidator(now=lambda: now, **options), columnar_from=1)
    covered = sorted([*batch.positions.tolist(), *(i for i, _ in batch.rejections)])
    assert covered == list(range(len(values)))  # every record in exactly one place
    reference = TransactionValidator(now=lambda: now, **options)
    accepted = dict(zip(batch.positions.tolist(), batch.accepted.to_pylist()))
    rejected = dict(batch.rejections)
    for i, value in enumerate(values):
        expected = reference.parse(value)
        if isinstance(expected, Rejection):
            assert rejected.get(i) == expected, (value, rejected.get(i), accepted.get(i))
        else:
            row = {name: getattr(expected, name) for name in TRANSACTION_FIELDS}
            row["amount"] = float(row["amount"])
            assert accepted.get(i) == row, (value, accepted.get(i), rejected.get(i))
    assert list(batch.positions) == sorted(batch.positions) and [i for i, _ in batch.rejections] == sorted(rejected)
    return batch.fast_path_rows


def test_edge_cases_decided_exactly_as_the_per_record_validator() -> None:
    assert len(EDGE_CASES) > 50
    assert_same_as_per_record(EDGE_CASES)
    # Each alone too: a bad neighbour must not change a record's outcome.
    for value in EDGE_CASES:
        assert_same_as_per_record([GOOD.replace(b"00000001", b"00000002"), value])


@pytest.fixture(scope="module")
def messages() -> list[tuple[bytes, bytes]]:
    sim = TransactionSimulator(SimulationConfig(start=date(2025, 3, 1), days=2, n_customers=400, n_terminals=800))
    return encode_transactions(sim.transactions())


def test_clean_stream_takes_the_fast_path_entirely(messages) -> None:
    values = [value for _, value in messages]
    assert assert_same_as_per_record(values) == len(values)


@pytest.mark.parametrize("seed", [1, 2])
def test_injected_bad_records_decided_exactly_as_the_per_record_validator(messages, seed: int) -> None:
    stream, report = inject_invalid(messages, rate=0.05, seed=seed)
    values = [value for _, value in stream]
    fast = assert_same_as_per_record(values)
    # Bad records are isolated in small blocks: most good records still take the fast path.
    assert fast >= 0.5 * report.expected_valid


def test_future_limit_follows_the_clock() -> None:
    clock = [NOW - timedelta(hours=2)]
    validator = TransactionValidator(now=lambda: clock[0])
    at_now = [_variant(b'2025-03-02T10:00:00.250000Z', NOW.strftime("%Y-%m-%dT%H:%M:%SZ").encode())]
    assert validate_transactions(at_now, validator, columnar_from=1).rejections[0][1].rule == "future_timestamp"
    clock[0] = NOW
    assert validate_transactions(at_now, validator, columnar_from=1).fast_path_rows == 1


def test_small_batches_take_the_per_record_path(messages) -> None:
    values = [value for _, value in messages[:10]]
    small = validate_transactions(values, TransactionValidator(now=lambda: NOW), columnar_from=11)
    assert small.fast_path_rows == 0 and small.positions.tolist() == list(range(10))
    assert small.accepted.equals(validate_transactions(values, TransactionValidator(now=lambda: NOW), columnar_from=10).accepted)
