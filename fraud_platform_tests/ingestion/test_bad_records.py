"""Bad-record injection: every rejection class is produced, each is refused by the validator with
the expected rule, and the counts reconcile (produced = valid + dead-lettered)."""

from __future__ import annotations

from collections import Counter
from datetime import date

import orjson
import pytest

from fraud_platform.domain.bad_records import EXPECTED_RULE, INJECTION_KINDS, inject_invalid
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator, encode_transactions
from fraud_platform.domain.validation import DuplicateTracker, Rejection, TransactionValidator

# Every rule TransactionValidator (plus DuplicateTracker) can return for a transaction message.
TRANSACTION_RULES = {
    "malformed_json", "missing_field", "wrong_type", "unexpected_field", "non_positive_amount", "absurd_amount",
    "unknown_currency", "unknown_channel", "unknown_country", "unknown_merchant_category", "future_timestamp",
    "timestamp_out_of_range", "raw_pan", "duplicate_transaction_id", "control_character", "integer_out_of_range",
}


@pytest.fixture(scope="module")
def messages() -> list[tuple[bytes, bytes]]:
    sim = TransactionSimulator(SimulationConfig(start=date(2025, 3, 1), days=2, n_customers=400, n_terminals=800))
    return encode_transactions(sim.transactions())


def _ingest(stream: list[tuple[bytes, bytes | None]]) -> list[str | None]:
    """What the landing engine does per message: validate, then reject re-sent ids."""
    validator, seen = TransactionValidator(), DuplicateTracker()
    verdicts: list[str | None] = []
    for _, value in stream:
        result = validator.parse(value)
        if not isinstance(result, Rejection):
            if result.transaction_id in seen:
                result = DuplicateTracker.rejection(result.transaction_id)
            else:
                seen.add(result.transaction_id)
        verdicts.append(result.rule if isinstance(result, Rejection) else None)
    return verdicts


def test_every_kind_is_rejected_with_its_rule_and_counts_reconcile(messages: list[tuple[bytes, bytes]]) -> None:
    assert all(rule is None for rule in _ingest(messages))  # the clean stream is all valid
    stream, report = inject_invalid(messages, rate=0.2, seed=11)

    verdicts = _ingest(stream)
    assert verdicts == [report.expected_rule(i) for i in range(len(stream))]

    assert set(report.by_kind) == set(INJECTION_KINDS) and min(report.by_kind.values()) >= 10
    assert set(report.by_rule) == TRANSACTION_RULES
    assert Counter(v for v in verdicts if v) == report.by_rule
    assert report.expected_invalid == round(0.2 * len(messages)) == sum(report.by_rule.values())
    assert report.total == len(stream) == len(messages) + report.by_kind["duplicate_transaction_id"]
    assert verdicts.count(None) == report.expected_valid == report.total - report.expected_invalid


def test_negative_amounts_and_null_values_are_injected_but_zero_amounts_are_valid(messages: list[tuple[bytes, bytes]]) -> None:
    stream, report = inject_invalid(messages, rate=0.2, seed=3)
    amounts = [orjson.loads(stream[i][1])["amount"] for i, k in report.injected.items() if k == "negative_amount"]
    assert amounts and all(a < 0 for a in amounts)
    assert "zero_amount" not in report.by_kind  # account verifications are a valid class, not a defect
    nulls = [i for i, k in report.injected.items() if k == "null_value"]
    assert nulls and all(stream[i][1] is None for i in nulls)
    assert all(stream[i][0] for i in nulls)  # the key survives, so the dead letter can be traced


def test_duplicates_are_later_exact_resends_of_messages_that_stay_valid(messages: list[tuple[bytes, bytes]]) -> None:
    stream, report = inject_invalid(messages, rate=0.2, seed=5)
    verdicts = _ingest(stream)
    duplicates = [i for i, k in report.injected.items() if k == "duplicate_transaction_id"]
    assert duplicates
    for i in duplicates:
        originals = [j for j in range(i) if stream[j] == stream[i]]
        assert len(originals) == 1 and verdicts[originals[0]] is None


def test_kinds_are_spread_evenly_and_corrupt_only_their_own_message(messages: list[tuple[bytes, bytes]]) -> None:
    stream, report = inject_invalid(messages, rate=0.1, seed=9)
    counts = report.by_kind.values()
    assert max(counts) - min(counts) <= 1
    in_place = [i for i in range(len(stream)) if report.injected.get(i) != "duplicate_transaction_id"]
    assert len(in_place) == len(messages)
    for i, original in zip(in_place, messages):
        if i in report.injected:
            assert stream[i] != original and stream[i][0] == original[0]
        else:
            assert stream[i] == original
    assert all(EXPECTED_RULE[k] == report.expected_rule(i) for i, k in report.injected.items())


def test_injection_is_deterministic_for_a_seed(messages: list[tuple[bytes, bytes]]) -> None:
    first = inject_invalid(messages, rate=0.05, seed=1)
    assert inject_invalid(messages, rate=0.05, seed=1) == first
    assert inject_invalid(messages, rate=0.05, seed=2)[0] != first[0]


def test_zero_rate_changes_nothing_and_bad_rates_are_refused(messages: list[tuple[bytes, bytes]]) -> None:
    stream, report = inject_invalid(messages, rate=0.0, seed=1)
    assert stream == messages and report.expected_invalid == 0 and report.expected_valid == report.total == len(messages)
    with pytest.raises(ValueError):
        inject_invalid(messages, rate=1.5, seed=1)


def test_small_daily_injections_cover_every_kind_across_days() -> None:
    """The CLI injects per simulated day; a few bad records a day must still exercise every kind."""
    from datetime import date

    from fraud_platform.domain.bad_records import INJECTION_KINDS, inject_invalid
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator, encode_transactions

    simulator = TransactionSimulator(SimulationConfig(date(2026, 1, 1), 1, n_customers=300, n_terminals=600))
    messages = encode_transactions(simulator.transactions_for_day(date(2026, 1, 1)))[:500]
    seen: set[str] = set()
    for day in range(40):
        _, report = inject_invalid(messages, 0.01, seed=1000 + day)
        seen |= set(report.by_kind)
    assert seen == set(INJECTION_KINDS)
