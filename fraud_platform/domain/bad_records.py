"""Deliberately broken transaction messages, so the dead-letter path is exercised with every kind
of bad input a real producer fleet sends (truncated JSON, schema drift, bad codes, clock skew, raw
card numbers, re-sends), and ingestion can be reconciled: produced = landed + dead-lettered.

Each injection kind breaks exactly one thing, so the validator's verdict is predictable
(:data:`EXPECTED_RULE`). Pure domain code: no Kafka client.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

import numpy as np
import orjson

from fraud_platform.domain.simulator import luhn_complete

# Injection kind -> the TransactionValidator / DuplicateTracker rule that must reject it.
EXPECTED_RULE: Mapping[str, str] = {
    "malformed_json": "malformed_json",
    "null_value": "malformed_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "unexpected_field": "unexpected_field",
    "negative_amount": "non_positive_amount",
    "absurd_amount": "absurd_amount",
    "control_character": "control_character",
    "integer_out_of_range": "integer_out_of_range",
    "unknown_currency": "unknown_currency",
    "unknown_channel": "unknown_channel",
    "unknown_country": "unknown_country",
    "unknown_merchant_category": "unknown_merchant_category",
    "future_timestamp": "future_timestamp",
    "timestamp_out_of_range": "timestamp_out_of_range",
    "raw_pan": "raw_pan",
    "duplicate_transaction_id": "duplicate_transaction_id",
}
INJECTION_KINDS: tuple[str, ...] = tuple(EXPECTED_RULE)

_REQUIRED_FIELDS = (
    "transaction_id", "event_time", "customer_id", "card_token", "terminal_id",
    "amount", "currency", "merchant_category", "channel", "country",
)
_CENTURY = timedelta(days=36_525)
_INJECTION_STREAM = 0xBAD

Message = tuple[bytes, bytes | None]


@dataclass(frozen=True)
class InjectionReport:
    """What was broken, so tests and reconciliation know the expected outcome of ingestion.

    ``injected`` maps a position in the returned stream to its injection kind; every other
    position holds an untouched, valid message.
    """

    by_kind: Mapping[str, int]
    by_rule: Mapping[str, int]
    injected: Mapping[int, str] = field(repr=False)
    total: int
    expected_valid: int
    expected_invalid: int

    def expected_rule(self, position: int) -> str | None:
        """Rule that must reject the message at ``position`` (None = it must be accepted)."""
        kind = self.injected.get(position)
        return EXPECTED_RULE[kind] if kind else None


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _shift_event_time(event: dict, delta: timedelta) -> None:
    event["event_time"] = _iso(datetime.fromisoformat(event["event_time"]) + delta)


def _wrong_type(event: dict, rng: np.random.Generator) -> None:
    name = ("amount", "customer_id", "terminal_id", "schema_version")[rng.integers(4)]
    if name == "amount":
        event["amount"] = str(event["amount"])  # a string where a number belongs
    elif name == "schema_version":
        event["schema_version"] = str(event.get("schema_version", 1))
    else:
        event[name] = int(rng.integers(1, 10**6))  # a number where a string belongs


def _raw_pan(rng: np.random.Generator) -> str:
    return luhn_complete("4" + "".join(str(d) for d in rng.integers(0, 10, size=14)))


# Field-level corruptions of a decoded event; each breaks exactly one rule.
_EVENT_MUTATIONS: dict[str, Callable[[dict, np.random.Generator], None]] = {
    "missing_field": lambda e, rng: e.pop(_REQUIRED_FIELDS[rng.integers(len(_REQUIRED_FIELDS))]),
    "wrong_type": _wrong_type,
    "unexpected_field": lambda e, rng: e.update({("promo_code", "device_id", "ip_address")[rng.integers(3)]: "x"}),
    "negative_amount": lambda e, rng: e.update(amount=-abs(e["amount"])),
    "absurd_amount": lambda e, rng: e.update(amount=1e9),  # above the EUR limit in every currency
    "control_character": lambda e, rng: e.update(customer_id=e["customer_id"] + "\x00"),  # Postgres text refuses NUL
    "integer_out_of_range": lambda e, rng: e.update(schema_version=2**31),  # wider than the int32 column
    "unknown_currency": lambda e, rng: e.update(currency="ZZZ"),
    "unknown_channel": lambda e, rng: e.update(channel="telepathy"),
    "unknown_country": lambda e, rng: e.update(country="ZZ"),
    "unknown_merchant_category": lambda e, rng: e.update(merchant_category="0000"),
    "future_timestamp": lambda e, rng: _shift_event_time(e, _CENTURY),
    "timestamp_out_of_range": lambda e, rng: _shift_event_time(e, -_CENTURY),
    "raw_pan": lambda e, rng: e.update(card_token=_raw_pan(rng)),
}


def _corrupt(value: bytes, kind: str, rng: np.random.Generator) -> bytes | None:
    if kind == "null_value":
        return None
    if kind == "malformed_json":
        return value[: max(1, len(value) // 2)]  # a truncated write
    event = orjson.loads(value)
    _EVENT_MUTATIONS[kind](event, rng)
    return orjson.dumps(event)


def inject_invalid(messages: list[tuple[bytes, bytes]], rate: float, seed: int) -> tuple[list[Message], InjectionReport]:
    """Break ``round(rate * len(messages))`` transaction messages, cycling through every kind.

    A ``duplicate_transaction_id`` leaves its original valid and re-sends an exact copy later in
    the stream, so the stream grows by the number of duplicates. Deterministic for ``seed``.
    """
    if not 0 <= rate <= 1:
        raise ValueError("rate must be in [0, 1]")
    n = len(messages)
    n_bad = round(rate * n)
    rng = np.random.default_rng([seed, _INJECTION_STREAM])
    slots = rng.choice(n, size=n_bad, replace=False).tolist()
    # Every kind equally often (counts differ by at most one), in random positions. The cycle starts
    # at a seeded offset so that many small calls (one per simulated day) still cover every kind.
    offset = int(rng.integers(len(INJECTION_KINDS)))
    kinds = [INJECTION_KINDS[(offset + i) % len(INJECTION_KINDS)] for i in range(n_bad)]
    kind_at = dict(zip(slots, (kinds[i] for i in rng.permutation(n_bad))))

    resend_after: dict[int, list[int]] = {}
    for slot in sorted(kind_at):
        if kind_at[slot] == "duplicate_transaction_id":
            resend_after.setdefault(int(rng.integers(slot, n)), []).append(slot)

    out: list[Message] = []
    injected: dict[int, str] = {}
    for position, (key, value) in enumerate(messages):
        kind = kind_at.get(position)
        if kind is not None and kind != "duplicate_transaction_id":
            injected[len(out)] = kind
            value = _corrupt(value, kind, rng)
        out.append((key, value))
        for original in resend_after.get(position, ()):
            injected[len(out)] = "duplicate_transaction_id"
            out.append(messages[original])

    by_kind = Counter(injected.values())
    by_rule = Counter(EXPECTED_RULE[kind] for kind in injected.values())
    report = InjectionReport(
        by_kind=dict(by_kind),
        by_rule=dict(by_rule),
        injected=injected,
        total=len(out),
        expected_valid=len(out) - len(injected),
        expected_invalid=len(injected),
    )
    return out, report
