"""Validation rules for incoming events. A rejected record is described by a :class:`Rejection`
naming the rule, the field and the offending value, so a dead letter explains itself.

The validator is total: for any bytes ``parse`` returns an event or a rejection, never raises, and
it refuses what a sink could not store, so nothing downstream can fail on an accepted record:
``raw_pan`` (a card number anywhere, checked first; see ``domain.card_data``), ``control_character``
(NUL etc.), ``non_finite_amount``, ``integer_out_of_range`` (int32 columns) and
``timestamp_out_of_range`` (also dates that overflow in UTC). Values in rejections are PAN-masked and
control-escaped (:func:`safe_text`). ``fraud_platform_tests/data/hostile_transactions.jsonl`` lists
the hostile kinds with their verdicts.

The validator is stateless; duplicate detection needs memory of earlier ids and lives in
:class:`DuplicateTracker`, which the landing engine and the streaming scorer each own.
"""

from __future__ import annotations

import json
import logging
import math
import re
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Generic, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

from fraud_platform.domain.card_data import contains_pan, looks_like_pan, mask_pans, mask_pans_bytes
from fraud_platform.domain.schema import (
    CHANNELS,
    CURRENCIES,
    COUNTRIES,
    EARLIEST_EVENT_TIME,
    FX_TO_EUR,
    LABEL_TYPES,
    MAX_AMOUNT_EUR,
    MAX_FUTURE_SKEW_SECONDS,
    MAX_SINK_INT,
    MERCHANT_CATEGORIES,
    MIN_SINK_INT,
    LabelEvent,
    TransactionEvent,
)

__all__ = ["DuplicateTracker", "LabelValidator", "Rejection", "TransactionValidator", "looks_like_pan"]

log = logging.getLogger(__name__)

# C0 controls (NUL included: Postgres text cannot hold it), DEL and C1 controls: no identifier or
# code legitimately holds them, and several sinks either refuse or silently mangle them.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

E = TypeVar("E", bound=BaseModel)


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: ``rule`` is machine-readable, ``message`` is for people."""

    rule: str
    field: str | None
    value: str | None
    message: str


def safe_text(text: str, limit: int = 200) -> str:
    """Text safe to write anywhere: PANs masked, control characters escaped, at most ``limit`` chars."""
    text = CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", mask_pans(text))
    # Masked again after cutting: the cut can leave the head of a long digit run that is a PAN.
    return text if len(text) <= limit else mask_pans(text[: limit - 3]) + "..."


def shown_value(value: object) -> str:
    """How a rejected value is shown (repr, or the decoded bytes), made safe by :func:`safe_text`."""
    return safe_text(value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else repr(value))


def _pan_field(raw: bytes) -> tuple[str | None, str]:
    """(top-level JSON field holding a PAN, its text); (None, whole record) when not a JSON object."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (or absurdly nested): the PAN has no field name
        document = None
    if isinstance(document, dict):
        for name, value in document.items():
            text = value if isinstance(value, str) else json.dumps(value)
            if contains_pan(name) or contains_pan(text):
                return safe_text(name, 64), text
    return None, raw.decode("utf-8", "replace")


def _escaped_pan(raw: bytes) -> bool:
    try:
        return contains_pan(json.dumps(json.loads(raw), ensure_ascii=False))
    except (ValueError, RecursionError):
        return False


def _raw_pan(raw: bytes) -> Rejection:
    field, text = _pan_field(raw)
    where = f"field '{field}'" if field else "the record"
    return Rejection("raw_pan", field, safe_text(text), f"{where} holds a raw card number (PAN); only tokens may enter the platform")


def _rejection_from_pydantic(error: ValidationError, raw: bytes) -> Rejection:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    # Only the top-level field name: union members add their own loc parts (e.g. "amount.float").
    # An unexpected field's name is input too, so it is made safe like a value.
    field = safe_text(str(first["loc"][0]), 64) if first["loc"] else None
    if kind in ("json_invalid", "json_type") or (kind == "model_type" and not field):
        return Rejection("malformed_json", None, shown_value(raw), f"not a JSON object: {first['msg']}")
    if kind == "missing":
        return Rejection("missing_field", field, None, f"required field '{field}' is missing")
    if kind == "timestamp_out_of_range":  # raised by the schema's UTC conversion (year 1 / 9999 + offset)
        value = shown_value(first.get("input"))
        return Rejection(kind, field, value, f"field '{field}' = {value}: {first['msg']}")
    if kind == "extra_forbidden":
        return Rejection("unexpected_field", field, shown_value(first.get("input")), f"field '{field}' is not in the schema")
    # pydantic names type mismatches "<type>_type" / "<type>_parsing"; the rest are value constraints.
    rule = "wrong_type" if kind.endswith(("_type", "_parsing")) or kind == "int_from_float" else "invalid_value"
    value = shown_value(first.get("input"))
    return Rejection(rule, field, value, f"field '{field}' = {value}: {first['msg']}")


class _Validator(Generic[E]):
    model: type[E]

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._future_limit = datetime.min.replace(tzinfo=timezone.utc)

    def parse(self, raw: bytes | None) -> E | Rejection:
        """The event, or why not. Total: for any input this returns, it never raises."""
        try:
            return self._parse(raw)
        except Exception as error:  # a validator gap must cost one record, never the stream
            # The traceback, masked: an exception message may quote the input.
            log.error("validator failed on a record; it is dead-lettered as 'unvalidatable':\n%s", mask_pans(traceback.format_exc()))
            return Rejection("unvalidatable", None, shown_value(raw if isinstance(raw, (bytes, bytearray)) else repr(raw)),
                             f"the validator could not decide on this record ({type(error).__name__}); please report it")

    def _parse(self, raw: bytes | None) -> E | Rejection:
        if raw is None:
            return Rejection("malformed_json", None, None, "empty message (null value)")
        if not isinstance(raw, bytes):
            raw = bytes(raw) if isinstance(raw, (bytearray, memoryview)) else str(raw).encode("utf-8", "surrogatepass")
        # Checked first, so no other rule ever echoes a card number (also one spelled with \u escapes).
        if mask_pans_bytes(raw) is not raw or (b"\\" in raw and _escaped_pan(raw)):
            return _raw_pan(raw)
        try:
            event = self.model.model_validate_json(raw)
        except ValidationError as error:
            return _rejection_from_pydantic(error, raw)
        for name, value in _string_fields(event):
            if CONTROL_CHARACTERS.search(value):
                return Rejection(
                    "control_character", name, shown_value(value),
                    f"{name} contains a control character (NUL, C0/C1 control or DEL), which sinks cannot store",
                )
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


def _string_fields(event: BaseModel):
    for name in type(event).model_fields:
        value = getattr(event, name)
        if isinstance(value, str):
            yield name, value


def _integer_rejection(field: str, value: int | None) -> Rejection | None:
    """Integers must fit the sinks' 32-bit columns (Parquet int32, Postgres integer)."""
    if value is None or MIN_SINK_INT <= value <= MAX_SINK_INT:
        return None
    return Rejection("integer_out_of_range", field, shown_value(value), f"{field} {shown_value(value)} does not fit a 32-bit integer")


class TransactionValidator(_Validator[TransactionEvent]):
    """Schema + business rules for ``TransactionEvent`` payloads.

    ``accept_zero_amount``: a zero amount is an account verification (card check without a
    charge) and is accepted as such (``TransactionEvent.is_account_verification``); when off, it is
    rejected as ``non_positive_amount`` like a negative amount always is.
    """

    model = TransactionEvent

    def __init__(self, now: Callable[[], datetime] | None = None, accept_zero_amount: bool = True) -> None:
        super().__init__(now)
        self.accept_zero_amount = accept_zero_amount

    def check(self, event: TransactionEvent) -> TransactionEvent | Rejection:
        # Mirrored, vectorised, by batch_validation._checked; test_batch_validation compares the two.
        if event.currency not in CURRENCIES:
            return Rejection("unknown_currency", "currency", shown_value(event.currency), f"currency {event.currency!r} is not one of {sorted(CURRENCIES)}")
        try:
            amount = float(event.amount)
        except OverflowError:  # an integer of hundreds of digits
            amount = float("nan")
        if not math.isfinite(amount):
            return Rejection("non_finite_amount", "amount", shown_value(event.amount), f"amount {shown_value(event.amount)} is not a finite number a float64 can hold")
        if amount < 0 or (amount == 0 and not self.accept_zero_amount):
            return Rejection("non_positive_amount", "amount", shown_value(event.amount), f"amount {event.amount!r} must be > 0" + ("" if self.accept_zero_amount else " (zero-amount verifications are switched off)"))
        if amount * FX_TO_EUR[event.currency] > MAX_AMOUNT_EUR:
            return Rejection(
                "absurd_amount", "amount", shown_value(event.amount),
                f"amount {event.amount!r} {event.currency} exceeds the {MAX_AMOUNT_EUR:,.0f} EUR plausibility limit",
            )
        if event.channel not in CHANNELS:
            return Rejection("unknown_channel", "channel", shown_value(event.channel), f"channel {event.channel!r} is not one of {list(CHANNELS)}")
        if event.country not in COUNTRIES:
            return Rejection("unknown_country", "country", shown_value(event.country), f"country {event.country!r} is not a known country code")
        if event.merchant_category not in MERCHANT_CATEGORIES:
            return Rejection(
                "unknown_merchant_category", "merchant_category", shown_value(event.merchant_category),
                f"merchant_category {event.merchant_category!r} is not a known MCC",
            )
        return _integer_rejection("schema_version", event.schema_version) or self._time_rejection("event_time", event.event_time) or event


class LabelValidator(_Validator[LabelEvent]):
    """Schema + business rules for ``LabelEvent`` payloads."""

    model = LabelEvent

    def check(self, event: LabelEvent) -> LabelEvent | Rejection:
        if event.label_type not in LABEL_TYPES:
            return Rejection("unknown_label_type", "label_type", shown_value(event.label_type), f"label_type {event.label_type!r} is not one of {list(LABEL_TYPES)}")
        return _integer_rejection("fraud_scenario", event.fraud_scenario) or self._time_rejection("known_at", event.known_at) or event


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
