"""Validation rules for incoming events. A rejected record is described by a :class:`Rejection`
naming the rule, the field and the offending value, so a dead letter explains itself.

The validator is stateless; duplicate detection needs memory of earlier ids and lives in
:class:`DuplicateTracker`, which the landing engine and the streaming scorer each own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Generic, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

from fraud_platform.domain.schema import (
    CHANNELS,
    CURRENCIES,
    COUNTRIES,
    EARLIEST_EVENT_TIME,
    FX_TO_EUR,
    LABEL_TYPES,
    MAX_AMOUNT_EUR,
    MAX_FUTURE_SKEW_SECONDS,
    MERCHANT_CATEGORIES,
    LabelEvent,
    TransactionEvent,
)

_PAN_PATTERN = re.compile(r"^\d{13,19}$")

E = TypeVar("E", bound=BaseModel)


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: ``rule`` is machine-readable, ``message`` is for people."""

    rule: str
    field: str | None
    value: str | None
    message: str


def _shown(value: object) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def looks_like_pan(value: str) -> bool:
    """True for a 13-19 digit, Luhn-valid number: a raw card number that must never be stored."""
    compact = value.replace(" ", "").replace("-", "")
    return bool(_PAN_PATTERN.match(compact)) and _luhn_ok(compact)


_PAN_IN_TEXT = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")


def mask_pans(text: str) -> str:
    """``text`` with every embedded card number (13-19 digits, spaces/dashes allowed, Luhn-valid)
    replaced: what a service may echo or log about a payload it could not even parse."""
    def masked(match: re.Match) -> str:
        return "<redacted PAN>" if looks_like_pan(match.group(0)) else match.group(0)

    return _PAN_IN_TEXT.sub(masked, text)


def _rejection_from_pydantic(error: ValidationError, raw: bytes) -> Rejection:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    # Only the top-level field name: union members add their own loc parts (e.g. "amount.float").
    field = str(first["loc"][0]) if first["loc"] else None
    if kind in ("json_invalid", "json_type") or (kind == "model_type" and not field):
        return Rejection("malformed_json", None, _shown(raw), f"not a JSON object: {first['msg']}")
    if kind == "missing":
        return Rejection("missing_field", field, None, f"required field '{field}' is missing")
    if kind == "extra_forbidden":
        return Rejection("unexpected_field", field, _shown(first.get("input")), f"field '{field}' is not in the schema")
    # pydantic names type mismatches "<type>_type" / "<type>_parsing"; the rest are value constraints.
    rule = "wrong_type" if kind.endswith(("_type", "_parsing")) or kind == "int_from_float" else "invalid_value"
    value = _shown(first.get("input"))
    return Rejection(rule, field, value, f"field '{field}' = {value}: {first['msg']}")


class _Validator(Generic[E]):
    model: type[E]

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._future_limit = datetime.min.replace(tzinfo=timezone.utc)

    def parse(self, raw: bytes | None) -> E | Rejection:
        if raw is None:
            return Rejection("malformed_json", None, None, "empty message (null value)")
        try:
            event = self.model.model_validate_json(raw)
        except ValidationError as error:
            return _rejection_from_pydantic(error, raw)
        return self.check(event)

    def check(self, event: E) -> E | Rejection:  # pragma: no cover - overridden
        return event

    def future_limit(self) -> datetime:
        """The latest acceptable event time right now: the clock plus the allowed producer skew."""
        self._future_limit = self._now() + timedelta(seconds=MAX_FUTURE_SKEW_SECONDS)
        return self._future_limit

    def _time_rejection(self, field: str, value: datetime) -> Rejection | None:
        if value < EARLIEST_EVENT_TIME:
            return Rejection("timestamp_out_of_range", field, value.isoformat(), f"{field} {value.isoformat()} is before {EARLIEST_EVENT_TIME.date()}")
        if value <= self._future_limit:
            return None
        # The cached limit trails the clock, so it only ever under-estimates: the clock is read
        # again just for events beyond it (a fraction of a microsecond per record saved otherwise).
        if value > self.future_limit():
            return Rejection(
                "future_timestamp", field, value.isoformat(),
                f"{field} {value.isoformat()} is more than {MAX_FUTURE_SKEW_SECONDS}s in the future",
            )
        return None


class TransactionValidator(_Validator[TransactionEvent]):
    """Schema + business rules for ``TransactionEvent`` payloads."""

    model = TransactionEvent

    def check(self, event: TransactionEvent) -> TransactionEvent | Rejection:
        # Mirrored, vectorised, by batch_validation._checked; test_batch_validation compares the two.
        if looks_like_pan(event.card_token):
            return Rejection("raw_pan", "card_token", "<redacted PAN>", "card_token holds a raw card number; only tokens may enter the lake")
        if event.currency not in CURRENCIES:
            return Rejection("unknown_currency", "currency", _shown(event.currency), f"currency {event.currency!r} is not one of {sorted(CURRENCIES)}")
        amount = float(event.amount)
        if not amount > 0:
            return Rejection("non_positive_amount", "amount", _shown(event.amount), f"amount {event.amount!r} must be > 0")
        if amount * FX_TO_EUR[event.currency] > MAX_AMOUNT_EUR or amount != amount:
            return Rejection(
                "absurd_amount", "amount", _shown(event.amount),
                f"amount {event.amount!r} {event.currency} exceeds the {MAX_AMOUNT_EUR:,.0f} EUR plausibility limit",
            )
        if event.channel not in CHANNELS:
            return Rejection("unknown_channel", "channel", _shown(event.channel), f"channel {event.channel!r} is not one of {list(CHANNELS)}")
        if event.country not in COUNTRIES:
            return Rejection("unknown_country", "country", _shown(event.country), f"country {event.country!r} is not a known country code")
        if event.merchant_category not in MERCHANT_CATEGORIES:
            return Rejection(
                "unknown_merchant_category", "merchant_category", _shown(event.merchant_category),
                f"merchant_category {event.merchant_category!r} is not a known MCC",
            )
        return self._time_rejection("event_time", event.event_time) or event


class LabelValidator(_Validator[LabelEvent]):
    """Schema + business rules for ``LabelEvent`` payloads."""

    model = LabelEvent

    def check(self, event: LabelEvent) -> LabelEvent | Rejection:
        if event.label_type not in LABEL_TYPES:
            return Rejection("unknown_label_type", "label_type", _shown(event.label_type), f"label_type {event.label_type!r} is not one of {list(LABEL_TYPES)}")
        return self._time_rejection("known_at", event.known_at) or event


class DuplicateTracker:
    """Remembers ids already accepted so a re-sent event is dead-lettered, not landed twice."""

    def __init__(self, known_ids: Iterable[str] = ()) -> None:
        self._seen: set[str] = set(known_ids)

    def __contains__(self, transaction_id: str) -> bool:
        return transaction_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, transaction_id: str) -> None:
        self._seen.add(transaction_id)

    def update(self, ids: Iterable[str]) -> None:
        self._seen.update(ids)

    @staticmethod
    def rejection(transaction_id: str) -> Rejection:
        return Rejection(
            "duplicate_transaction_id", "transaction_id", transaction_id,
            f"transaction_id {transaction_id!r} was already ingested",
        )
